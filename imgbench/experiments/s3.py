"""The experiments over object storage (issue 24): upload, full read, shuffled (and streamed)
epochs, training with accelerator utilisation, and the object store's own limits.

Every job talks to the S3 server through its own delaying, rate-limiting proxy
(:class:`imgbench.stores.s3.Proxy`) at the job's ``latency_ms`` round trip and
``bandwidth_mbps`` link, which also counts the requests and bytes the readers sent and got:
rows carry requests and bytes per image. The server is the one the run's S3 command started
(``python -m imgbench.pipeline.s3run``: ``IMGBENCH_S3_ENDPOINT`` and the AWS variables in
the environment) or any endpoint named by ``s3_endpoint``. Credentials come from the
environment and are never written to a result, a log or the provenance.

A store's objects live under ``<data>/<format>/<n>/<latency>ms_<bandwidth>mbps/``: each
network setting has its own upload (its time is a result) and its own copy. Shuffled epochs
are time-boxed like the capped ones (:mod:`imgbench.experiments.capped`): one seeded
permutation, a warm-up window, then a timed window in parts whose rates give the spread;
images/s counts only completed batches, each verified against the source afterwards,
untimed. The streamed epoch (tar's ``buffered`` order) reads whole shards, whole epochs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.core.job import Job
from imgbench.core.names import Cache, Op
from imgbench.data.cifar import load_source
from imgbench.experiments import access
from imgbench.measure import cache, verify
from imgbench.measure.results import Result
from imgbench.measure.timing import cpu_delta, cpu_now
from imgbench.stores import FORMATS, get_store, remote_class
from imgbench.stores.remote.base import RemoteStore
from imgbench.stores.s3 import DURABILITY, ENV_ENDPOINT, Credentials, Proxy, S3Client, S3Target

log = logging.getLogger(__name__)


def endpoint(job: Job) -> str:
    """The server's address: ``s3_endpoint`` if set, else the S3 command's server."""
    url = job.s3_endpoint or os.environ.get(ENV_ENDPOINT, "")
    if not url:
        raise StoreError(
            "no S3 server for the S3 experiments: run them through "
            "`python -m imgbench.pipeline.s3run snakemake ...` (it starts SeaweedFS) "
            "or set s3_endpoint to a reachable server"
        )
    return url


def server_kind(job: Job) -> str:
    """What the rows were measured against (never the address's credentials)."""
    return "external endpoint" if job.s3_endpoint else "SeaweedFS on loopback"


def prefix(job: Job) -> str:
    """The key prefix of this job's store copy (one per network setting)."""
    return f"{job.data}/{job.fmt}/{job.n}/{job.latency_ms:g}ms_{job.bandwidth_mbps:g}mbps"


class _Direct:
    """No proxy: an https endpoint at 0 ms and unlimited bandwidth (its own network is the
    network); nothing counts its requests."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def stats(self) -> None:
        return None


@contextlib.contextmanager
def network(job: Job, check: bool = True) -> Iterator[tuple[Proxy | _Direct, S3Target]]:
    """The job's proxy (its round trip and link) in front of the server, and the target;
    with *check*, one untimed LIST first: no objects (the server's data lost or reset) is
    one line saying to upload again."""
    url = endpoint(job)
    direct = url.startswith("https://") and not job.latency_ms and not job.bandwidth_mbps
    with contextlib.ExitStack() as stack:
        proxy = (
            _Direct(url)
            if direct
            else stack.enter_context(Proxy(url, job.latency_ms, job.bandwidth_mbps))
        )
        target = S3Target(proxy.endpoint, job.s3_bucket, prefix(job), Credentials.from_env())
        if check and not target.client().list(target.prefix + "/", max_keys=1):
            raise StoreError(
                f"no objects under {target.url()}: the server's copy was lost or reset "
                "since the upload; upload again: snakemake ... --forcerun s3_upload"
            )
        yield proxy, target


def s3_row(job: Job, op: str, access_kind: str) -> Result:
    res = Result.for_job(job, op)
    res.extra.update(
        storage="s3",
        latency_ms=job.latency_ms,
        bandwidth_mbps=job.bandwidth_mbps,
        requests_in_flight=job.requests_in_flight,
        access=access_kind,
        server=server_kind(job),
        in_flight_by=FORMATS[job.fmt].s3_in_flight if job.fmt in FORMATS else "pool",
        durability=DURABILITY if not job.s3_endpoint else "as the endpoint acknowledges",
        cores=len(os.sched_getaffinity(0)),
    )
    return res


def _counted(
    res: Result, before: dict[str, int] | None, after: dict[str, int] | None, images: int
) -> None:
    """Requests and bytes the proxy saw between two readings, per image (None: no proxy)."""
    if before is None or after is None:
        res.extra["requests"] = None  # an https endpoint, read directly: not counted
        return
    requests = after["requests"] - before["requests"]
    down = after["bytes_down"] - before["bytes_down"]
    res.extra.update(
        requests=requests,
        bytes_down=down,
        connections=after["connections"] - before["connections"],
        requests_per_image=requests / images if images else None,
        bytes_per_image=down / images if images else None,
    )


def _remote(job: Job, target: S3Target, stage: Path | None) -> RemoteStore:
    local = get_store(job.fmt, job.mode, job.options)
    shape = np.load(job.images, mmap_mode="r").shape[1:]
    cls = remote_class(job.fmt)
    return cls(target, local, job.n, shape, job.requests_in_flight, stage_dir=stage)


def s3_upload(job: Job) -> dict[str, Any]:
    """Upload the tuned local store file by file (as ``aws s3 sync`` does), each PUT until
    acknowledged; the objects are then listed and checked against the files, untimed."""
    res = s3_row(job, Op.WRITE_MANY, "object")
    res.cache = str(Cache.NONE)
    files = sorted(p for p in job.store.rglob("*") if p.is_file())
    local = {f.relative_to(job.store).as_posix(): f.stat().st_size for f in files}
    with network(job, check=False) as (proxy, target):
        client = target.client()
        client.create_bucket()
        stale = client.list(target.prefix + "/")
        for key in stale:  # a rerun starts from an empty prefix (untimed)
            client.delete(key)
        t0 = time.perf_counter()
        sent = client.upload_tree(job.store, target.prefix, threads=job.requests_in_flight)
        seconds = time.perf_counter() - t0
        listed = client.list(target.prefix + "/")
    want = {target.key(k): v for k, v in local.items()}
    if listed != want or sent != want:
        missing = sorted(set(want) - set(listed))[:3]
        raise StoreError(
            f"upload of {job.store} to {target.url()}: {len(listed)} objects listed, "
            f"{len(want)} files (first missing: {missing}); rerun the upload"
        )
    res.verified = True
    res.samples = [seconds]
    total = sum(local.values())
    res.extra.update(
        objects=len(local),
        store_bytes=total,
        upload_mb_s=total / seconds / 1e6,
        objects_per_s=len(local) / seconds,
        prefix=target.prefix,
    )
    return res.save(job.result)


def _cpu_sample(res: Result, cpu0: tuple[float, float]) -> None:
    """The job's and its reaped readers' CPU since *cpu0*, as one sample of the row (the
    proxy is a process of its own, reaped after the reads: never counted)."""
    user, system = cpu_delta(cpu0, cpu_now())
    res.cpu_user_s.append(user)
    res.cpu_sys_s.append(system)
    res.extra["cores"] = len(os.sched_getaffinity(0))


def _staged(res: Result, remote: RemoteStore, proxy: Proxy | _Direct) -> float:
    """Download a staged store (timed, its requests counted in the row); its seconds."""
    c0 = proxy.stats()
    t0 = time.perf_counter()
    info = remote.stage() or {}
    seconds = time.perf_counter() - t0
    c1 = proxy.stats()
    res.extra.update(stage_s=seconds, **{k: v for k, v in info.items() if k != "stage_s"})
    if c0 is not None and c1 is not None:
        res.extra["stage_requests"] = c1["requests"] - c0["requests"]
    return seconds


def s3_read_many(job: Job) -> dict[str, Any]:
    """Every image in store order, one reader with ``requests_in_flight`` requests, as the
    format reads a whole store from S3; a staged store's download is inside the time."""
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    cls = remote_class(job.fmt)
    res = s3_row(job, Op.READ_MANY, cls.full_access or cls.access)
    res.cache = str(Cache.NONE)
    with network(job) as (proxy, target), tempfile.TemporaryDirectory(dir=job.result.parent) as t:
        c0 = proxy.stats()
        for repeat in range(job.repeats):
            stage = Path(t) / f"stage{repeat}"
            remote = _remote(job, target, stage)
            cpu0, t0 = cpu_now(), time.perf_counter()
            staged = _staged(res, remote, proxy) if remote.access == "staged" else 0.0
            images, labels = remote.read_all()
            res.samples.append(time.perf_counter() - t0)
            _cpu_sample(res, cpu0)
            res.extra.setdefault("stage_samples", []).append(staged)
            verify.against_source(job.what, (images, labels), src_images, src_labels)
            del images, labels
        c1 = proxy.stats()
    res.verified = True
    _counted(res, c0, c1, job.n * job.repeats)
    res.extra["images_per_s"] = job.n / float(np.median(res.samples))
    return res.save(job.result)


def _time_box(
    job: Job, remote: RemoteStore, parts: list[np.ndarray], out: access.Epoch, proxy: Proxy
) -> tuple[list[float], dict[str, int] | None, dict[str, int] | None, str]:
    """Run the epoch for a warm-up and a timed window in parts; the ticks, the proxy's counts
    before the readers start and after they have stopped (a reader finishes the batch it is
    in: every request then belongs to a completed batch), and how the epoch ended ("" =
    still running at the end of the window)."""
    t0 = time.perf_counter()
    c0 = proxy.stats()
    with access.epoch_in_background(remote, remote.target.url(), parts, job.readers,
                                    job.reader_kind, out):  # fmt: skip
        ended = "warmup" if access.wait_done(t0 + job.capped_warmup_s, out) else ""
        if ended:
            ticks = [t0, t0]
        else:
            ticks, ended = access.timed_windows(
                out, time.perf_counter(), job.capped_seconds, job.capped_windows
            )
        out.stop[0] = 1
    c1 = proxy.stats()
    if ended:  # the window ends with the epoch's last batch, not at the poll
        last = float(np.nanmax(out.done_at))
        if last <= ticks[0]:
            ended, ticks = "warmup", [t0, t0]
        ticks[-1] = last
    return ticks, c0, c1, ended


def s3_epoch(job: Job) -> dict[str, Any]:
    """One shuffled epoch, time-boxed (``buffered``: whole streamed epochs, tar only)."""
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    if job.pattern == "buffered":
        return _stream(job, src_images, src_labels)
    cls = remote_class(job.fmt)
    res = s3_row(job, Op.READ_EPOCH, cls.access)
    res.cache = str(Cache.NONE)
    res.extra.update(pattern=job.pattern, readers=job.readers, reader_kind=job.reader_kind,
                     batch_size=job.batch_size, seed=job.seed, warmup_s=job.capped_warmup_s,
                     window_s=job.capped_seconds, windows=job.capped_windows)  # fmt: skip
    order = access.epoch_order(job.pattern, job.n, job.seed, 0, job.random_samples)
    parts = access.batches(order, job.pattern, job.batch_size)
    sizes = np.array([len(p) for p in parts])
    out = access.Epoch(len(order), src_images.shape[1:], src_labels.dtype, len(parts), True)
    with network(job) as (proxy, target), tempfile.TemporaryDirectory(dir=job.result.parent) as t:
        remote = _remote(job, target, Path(t) / "stage")
        if remote.access == "staged":  # the readers train from the downloaded copy
            _staged(res, remote, proxy)
            res.extra["stage_resident"] = cache.resident_fraction(cache.store_files(Path(t)))
        ticks, c0, c1, ended = _time_box(job, remote, parts, out, proxy)

    positions = access.completed_positions(out, sizes)
    verify.against_indices(job.what, (out.images[positions], out.labels[positions]),
                           src_images, src_labels, order[positions])  # fmt: skip
    res.verified = True
    in_window, res.samples = access.window_parts(out, sizes, ticks, len(order))
    access.record_window_cpu(res, out, ticks, job.readers, job.reader_kind)
    seconds, images = ticks[-1] - ticks[0], sum(in_window)
    # requests and bytes per image over every completed batch (warm-up, window and the
    # batches finished after the stop), the readers' opening requests included
    _counted(res, c0, c1, len(positions))
    ips = images / seconds if images and seconds > 0 else None
    res.extra.update(images_per_s=ips, window_images=images, window_seconds=seconds,
                     window_parts=in_window, epoch_ended=ended or None,
                     epoch_fraction=len(positions) / len(order))  # fmt: skip
    if ips and "stage_s" in res.extra:  # one epoch counting the download before it
        res.extra["images_per_s_with_stage"] = job.n / (res.extra["stage_s"] + job.n / ips)
    if not images:
        res.extra["not_measured"] = f"no batch of {job.batch_size} completed in {seconds:.1f} s"
    return res.save(job.result)


def _stream(job: Job, src_images: np.ndarray, src_labels: np.ndarray) -> dict[str, Any]:
    """WebDataset's streamed epoch from S3: each reader streams whole shard objects through
    its shuffle buffer; ``repeats`` whole epochs, each verified as a permutation."""
    res = s3_row(job, Op.READ_EPOCH, "stream")
    res.cache = str(Cache.NONE)
    res.extra.update(pattern=job.pattern, readers=job.readers, reader_kind=job.reader_kind,
                     batch_size=job.batch_size, seed=job.seed,
                     shuffle_buffer=job.shuffle_buffer)  # fmt: skip
    with network(job) as (proxy, target):
        remote = _remote(job, target, None)
        sizes = remote.shard_sizes(target.url())  # type: ignore[attr-defined]
        c0 = proxy.stats()
        for repeat in range(job.repeats):
            nb = -(-job.n // job.batch_size) + job.readers
            out = access.Epoch(job.n, src_images.shape[1:], src_labels.dtype, nb)
            cpu0, t0 = cpu_now(), time.perf_counter()
            access.run_stream(remote, target.url(), sizes, job.readers, job.reader_kind, out,
                              job.shuffle_buffer, job.seed, repeat, job.batch_size)  # fmt: skip
            res.samples.append(time.perf_counter() - t0)
            _cpu_sample(res, cpu0)  # the reader processes are reaped by now: counted
            verify.is_permutation(job.what, out.index, job.n)
            verify.against_indices(job.what, (out.images, out.labels), src_images, src_labels,
                                   out.index)  # fmt: skip
        c1 = proxy.stats()
    res.verified = True
    _counted(res, c0, c1, job.n * job.repeats)
    res.extra.update(images_per_s=job.n / float(np.median(res.samples)), shards=len(sizes))
    return res.save(job.result)


def s3_train(job: Job) -> dict[str, Any]:
    """Training from S3: a simulated accelerator (``computation_time`` per batch) consumes
    shuffled batches that the readers prefetch; accelerator utilisation as MLPerf Storage
    defines it, over at most one epoch; every image verified."""
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    cls = remote_class(job.fmt)
    res = s3_row(job, Op.TRAIN, cls.access)
    res.cache = str(Cache.NONE)
    order = access.epoch_order("shuffled", job.n, job.seed, 0, job.random_samples)
    parts = access.batches(order, "shuffled", job.batch_size)[: job.au_batches]
    n = sum(len(p) for p in parts)
    out = access.Epoch(n, src_images.shape[1:], src_labels.dtype, len(parts))
    with network(job) as (proxy, target), tempfile.TemporaryDirectory(dir=job.result.parent) as t:
        remote = _remote(job, target, Path(t) / "stage")
        if remote.access == "staged":
            _staged(res, remote, proxy)
        c0 = proxy.stats()
        cpu0, t0 = cpu_now(), time.perf_counter()
        au = access.run_training(remote, target.url(), parts, job.readers, job.reader_kind,
                                 out, job.computation_time, job.prefetch)  # fmt: skip
        res.samples = [time.perf_counter() - t0]
        _cpu_sample(res, cpu0)
        c1 = proxy.stats()
    verify.against_indices(job.what, (out.images, out.labels), src_images, src_labels, order[:n])
    res.verified = True
    _counted(res, c0, c1, n)
    res.extra.update(au_samples=[au["au"]], au=au["au"], stall_s=au["stall_s"],
                     compute_s=au["compute_s"], batches=len(parts), readers=job.readers,
                     computation_time=job.computation_time,
                     images_per_s=n / res.samples[0])  # fmt: skip
    return res.save(job.result)


def direct_client(job: Job) -> S3Client:
    """A client straight to the server (no proxy): the probe's reference."""
    return S3Client(endpoint(job), job.s3_bucket, Credentials.from_env())
