"""The object store's limits at one network setting (issue 24), probed like the device: what
no format can beat when it reads from this server through this round trip and link.

With a minimal client that is no format's library (:class:`imgbench.stores.s3.S3Client`):
small-object GETs per second for each (readers, requests in flight) pair the epochs use
(``readers`` forked processes, each with that many threads), large-object GET bandwidth (the
better of one stream of whole-object GETs and :data:`STREAMS` streams of 8 MiB ranges), one
small GET's round trip, and the proxy's own cost: the same
numbers going direct and through the proxy at 0 ms and unlimited bandwidth, back to back.
The small objects are the size of one stored image; every GET is checked for its size.
"""

from __future__ import annotations

import contextlib
from typing import Any

from imgbench.core.job import Job
from imgbench.core.names import Cache, Op
from imgbench.experiments.s3 import direct_client, s3_row
from imgbench.measure.results import Result
from imgbench.stores import s3probe
from imgbench.stores.s3 import Proxy

#: small objects uploaded for the probe, and the large object's size (MB = 10**6 bytes)
N_SMALL = 256
LARGE_BYTES = 64 * 10**6
#: parallel streams of 8 MiB ranges in the second bandwidth probe (a reader's pool, a
#: staging download in parts); 16 x 8 MiB in flight bounds the probe's memory to 128 MiB
STREAMS = 16


def s3_probe(job: Job) -> dict[str, Any]:
    """Probe the limits through the job's proxy; options: readers, depths, seconds,
    small_bytes (one image's stored size)."""
    o = job.options
    seconds, small = float(o["seconds"]), int(o["small_bytes"])
    sizes = {"n_small": N_SMALL, "small_bytes": small, "large_bytes": LARGE_BYTES}
    res: Result = s3_row(job, Op.READ_MANY, "object")
    res.cache = str(Cache.NONE)
    direct = direct_client(job)
    direct.create_bucket()
    s3probe.prepare(direct, **sizes)
    https = direct.endpoint.startswith("https://")  # read directly: its own network
    try:
        with contextlib.ExitStack() as stack:
            if https:
                via = direct
            else:
                proxy = stack.enter_context(
                    Proxy(direct.endpoint, job.latency_ms, job.bandwidth_mbps)
                )
                via = direct.with_endpoint(proxy.endpoint)
            rates = {
                f"r{r}_q{q}": round(
                    s3probe.small_rate_procs(via, int(r), int(q), seconds, N_SMALL, small), 1
                )
                for r in o["readers"]
                for q in o["depths"]
            }
            large = s3probe.large_bandwidth(via, seconds, LARGE_BYTES)
            large_par = s3probe.large_bandwidth_parallel(via, STREAMS, seconds, LARGE_BYTES)
            rtt = s3probe.one_get_ms(via, small)
        overhead = [] if https else s3probe.proxy_overhead(direct, seconds, **sizes)
    finally:
        s3probe.remove(direct, N_SMALL)
    res.verified = True  # every GET was checked for its size
    res.extra.update(
        small_get_per_s=rates,
        # the limit of whole-object and large-range reads: the better of one stream and
        # STREAMS parallel 8 MiB ranges
        large_get_mb_s=round(max(large, large_par), 1),
        large_get_mb_s_1=round(large, 1),
        **{f"large_get_mb_s_{STREAMS}": round(large_par, 1)},
        one_get_ms=round(rtt, 2),
        proxy_overhead=overhead,
        seconds=seconds,
        **sizes,
    )
    return res.save(job.result)
