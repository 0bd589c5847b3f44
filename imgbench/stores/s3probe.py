"""The object store's limits, probed like the device (imgbench/measure/device.py): what no
format can beat when it reads from S3 through a network of a given round trip and bandwidth.

* small-object GET rate (objects/s) at 1 and 64 requests in flight: the ceiling of one
  object per image (PNG) at that depth; each GET is one round trip plus the server's time;
* large-object GET bandwidth (MB/s, one stream of whole-object GETs): the ceiling of
  sharded and columnar formats that stream or read large ranges.

The client is :class:`imgbench.stores.s3.S3Client` (requests with SigV4, one keep-alive
connection per thread), no format's library; every GET is checked for its size. It runs in
this process, so at 64 in flight on a small machine the rate may be bounded by the client's
CPU rather than the server: the numbers are what this client reaches, stated as such.

:func:`proxy_overhead` measures the same three numbers through the proxy at 0 ms and
unlimited bandwidth and going direct, back to back, so a run shows that the proxy is not
the bottleneck. MB is 10**6 bytes.

``python -m imgbench.stores.s3probe DIR`` starts a SeaweedFS server with its data in DIR
and prints the probe at each ``--latency-ms`` and ``--bandwidth-mbps`` as JSON lines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imgbench.core.errors import StoreError
from imgbench.stores.s3 import DURABILITY, Proxy, S3Client, SeaweedServer

__all__ = ["one_get_ms", "prepare", "probe", "proxy_overhead", "remove", "small_rate_procs"]

DEPTHS = (1, 64)
SMALL = "probe/small/"
LARGE = "probe/large"


def prepare(client: S3Client, n_small: int, small_bytes: int, large_bytes: int) -> None:
    """Upload the probe's objects: ``n_small`` small ones and one large one (random bytes)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put(f"{SMALL}{i}", os.urandom(small_bytes)), range(n_small)))
    client.put(LARGE, os.urandom(large_bytes))


def remove(client: S3Client, n_small: int) -> None:
    """Delete what :func:`prepare` uploaded (an external bucket is left as it was found)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client.delete, [f"{SMALL}{i}" for i in range(n_small)] + [LARGE]))


def small_rate(client: S3Client, depth: int, seconds: float, n_small: int, size: int) -> float:
    """Small-object GETs per second with ``depth`` requests in flight (one thread each)."""
    keys = itertools.count()
    lock = threading.Lock()
    done = [0] * depth
    client.get(f"{SMALL}0", size)  # the connections are opened in the timed loop, once each

    def worker(w: int) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            with lock:
                i = next(keys) % n_small
            client.get(f"{SMALL}{i}", size)
            done[w] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(depth) as pool:
        list(pool.map(worker, range(depth)))
    return sum(done) / (time.perf_counter() - start)


def small_rate_procs(
    client: S3Client, procs: int, depth: int, seconds: float, n_small: int, size: int
) -> float:
    """Small-object GETs per second from ``procs`` forked processes with ``depth`` requests
    in flight each (as ``procs`` data-loader readers would): the sum of their rates, over
    windows that start together."""
    if procs <= 1:
        return small_rate(client, depth, seconds, n_small, size)
    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    start = ctx.Barrier(procs)

    def child() -> None:
        try:
            start.wait(30)  # connections open inside small_rate, in each child
            results.put(small_rate(client.with_endpoint(client.endpoint), depth, seconds,
                                   n_small, size))  # fmt: skip
        except BaseException as exc:
            results.put(f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(0)

    kids = [ctx.Process(target=child) for _ in range(procs)]
    try:
        for k in kids:
            k.start()
        deadline = time.monotonic() + seconds + 120  # barrier, window, the last requests
        for k in kids:  # a child that dies without a word (killed) ends the wait too
            k.join(max(0.0, deadline - time.monotonic()))
        rates = [results.get() for _ in kids if not results.empty()]
    finally:
        for k in kids:
            if k.is_alive():
                k.kill()
                k.join()
    bad = [r for r in rates if isinstance(r, str)]
    if bad or len(rates) < procs:
        why = bad[0] if bad else f"exit codes {[k.exitcode for k in kids]}"
        raise StoreError(f"probe of {client.uri()}: a reader process failed: {why}")
    return float(sum(rates))


def one_get_ms(client: S3Client, size: int, n: int = 20) -> float:
    """The median time of one small GET, one after another (the round trip a request pays)."""
    client.get(f"{SMALL}0", size)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.get(f"{SMALL}{i}", size)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def large_bandwidth(client: S3Client, seconds: float, size: int) -> float:
    """MB/s of whole-object GETs of the large object, one after another, at least one."""
    start = time.perf_counter()
    n = 0
    while n == 0 or time.perf_counter() - start < seconds:
        client.get(LARGE, size)
        n += 1
    return n * size / (time.perf_counter() - start) / 1e6


def large_bandwidth_parallel(
    client: S3Client, streams: int, seconds: float, size: int, part: int = 8 << 20
) -> float:
    """MB/s of ``streams`` threads each GETting 8 MiB ranges of the large object, one after
    another (what a reader with many requests in flight, or a download in parts, can get)."""
    parts = max(1, size // part)
    done = [0] * streams
    client.get(LARGE, part, start=0)  # connections open in the timed loop, once each

    def worker(w: int) -> None:
        end = time.perf_counter() + seconds
        k = w
        while time.perf_counter() < end:
            client.get(LARGE, part, start=(k % parts) * part)
            done[w] += part
            k += streams

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(worker, range(streams)))
    return sum(done) / (time.perf_counter() - start) / 1e6


def _measure(client: S3Client, seconds: float, sizes: dict[str, int]) -> dict[str, float]:
    out = {
        f"small_get_per_s_qd{d}": round(
            small_rate(client, d, seconds, sizes["n_small"], sizes["small_bytes"]), 1
        )
        for d in DEPTHS
    }
    out["large_get_mb_s"] = round(large_bandwidth(client, seconds, sizes["large_bytes"]), 1)
    return out


def probe(
    client: S3Client, latency_ms: float, bandwidth_mbps: float, seconds: float, **sizes: int
) -> dict[str, Any]:
    """The limits through the proxy at ``latency_ms`` round trip and ``bandwidth_mbps``
    (0 = unlimited); the probe's objects must be uploaded (:func:`prepare`) with ``sizes``."""
    with Proxy(client.endpoint, latency_ms, bandwidth_mbps) as proxy:
        row = _measure(client.with_endpoint(proxy.endpoint), seconds, sizes)
    return {"path": "proxy", "latency_ms": latency_ms, "bandwidth_mbps": bandwidth_mbps,
            **row, **sizes, "seconds": seconds}  # fmt: skip


def proxy_overhead(client: S3Client, seconds: float, **sizes: int) -> list[dict[str, Any]]:
    """Direct and through the proxy at 0 ms and unlimited bandwidth, each number back to back."""
    rows: dict[str, dict[str, Any]] = {}
    with Proxy(client.endpoint, 0.0, 0.0) as proxy:
        via = client.with_endpoint(proxy.endpoint)
        for path in ("direct", "proxy"):
            rows[path] = {"path": path, "latency_ms": 0.0, "bandwidth_mbps": 0.0}
        for d in DEPTHS:
            for path, c in (("direct", client), ("proxy", via)):
                rate = small_rate(c, d, seconds, sizes["n_small"], sizes["small_bytes"])
                rows[path][f"small_get_per_s_qd{d}"] = round(rate, 1)
        for path, c in (("direct", client), ("proxy", via)):
            mb_s = large_bandwidth(c, seconds, sizes["large_bytes"])
            rows[path]["large_get_mb_s"] = round(mb_s, 1)
    return [{**r, **sizes, "seconds": seconds} for r in rows.values()]


def main(argv: list[str] | None = None) -> None:
    """Command line: start a server in DIR, probe, print JSON lines, stop it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path, nargs="?", help="server data directory (default: a temp)")
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--bandwidth-mbps", type=float, nargs="+", default=[0.0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--n-small", type=int, default=256)
    ap.add_argument("--small-bytes", type=int, default=4096)
    ap.add_argument("--large-bytes", type=int, default=64 * 10**6)
    args = ap.parse_args(argv)
    sizes = {"n_small": args.n_small, "small_bytes": args.small_bytes,
             "large_bytes": args.large_bytes}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, SeaweedServer(Path(tmp)) as server:
        client = server.client()
        prepare(client, **sizes)
        print(json.dumps({"durability": DURABILITY}), flush=True)
        for row in proxy_overhead(client, args.seconds, **sizes):
            print(json.dumps(row), flush=True)
        for lat, bw in itertools.product(args.latency_ms, args.bandwidth_mbps):
            print(json.dumps(probe(client, lat, bw, args.seconds, **sizes)), flush=True)


if __name__ == "__main__":
    main()
