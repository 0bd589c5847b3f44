"""The timed experiments: one function per kind of timed job, each taking one :class:`Job`.

Each writes one JSON result (:class:`imgbench.results.Result`). Repeats and warmups are
split by :func:`imgbench.timing.measure` alone; the timed section covers only the store
operation: loading the source, eviction, residency checks and verification happen
outside it, in its ``before``/``after`` hooks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgbench import cache, verify
from imgbench.atomic import atomic_path, fsync_tree, holds_many_files, remove, set_aside
from imgbench.data import load_source
from imgbench.du import disk_use
from imgbench.errors import BenchError, DataError, StoreError
from imgbench.folder import load_blobs, source_id
from imgbench.job import Job
from imgbench.names import Cache, CacheScope, Mode, Op, Pattern
from imgbench.results import Result
from imgbench.sizes import is_encoded
from imgbench.stores import get_store, parallel_writes, streams
from imgbench.stores.base import PARALLEL_MIN_IMAGES, Store
from imgbench.timing import measure

log = logging.getLogger(__name__)


#: Free space below which a failed write counts as "disk full": not every library says ENOSPC
#: (LMDB reports EIO from its commit, SQLite "database or disk is full", numpy a short write).
NEARLY_FULL_BYTES = 16 << 20


def _nearly_full(path: Path) -> bool:
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize < NEARLY_FULL_BYTES


@contextlib.contextmanager
def _disk_full_is_clear(job: Job) -> Iterator[None]:
    """Turn ENOSPC from any library (OSError, h5py, lmdb) into one line with the fix."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if (
            getattr(exc, "errno", None) == errno.ENOSPC
            or "No space left" in str(exc)
            or _nearly_full(job.store.parent)
        ):
            raise StoreError(
                f"{job.store}: no space left on device while writing the {job.fmt} store "
                f"({' '.join(str(exc).split())}); free space or move results/ to a larger "
                "file system, then rerun"
            ) from None
        raise


@contextlib.contextmanager
def _damage_is_clear(job: Job) -> Iterator[None]:
    """Any library error while reading a store becomes one line naming the store and the fix
    (formats name the file or key themselves where they can)."""
    try:
        yield
    except BenchError:
        raise
    except Exception as exc:
        raise StoreError(
            f"{job.store}: cannot read the {job.mode} {job.fmt} store ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); it is damaged or incomplete: delete it and rerun "
            "the build"
        ) from None


def _store(job: Job, workers: int | None = None) -> Store:
    return get_store(job.fmt, job.mode, job.options, job.workers if workers is None else workers)


def sample_ids(n_images: int, k: int, seed: int = 0) -> list[int]:
    """*k* distinct image ids spread over the data set (fixed seed: same ids every run)."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_images, size=min(k, n_images), replace=False))


def _joined(old: str | None, new: str) -> str:
    """Comma-joined set of the values seen over the repeats (usually just one)."""
    return ",".join(sorted(set(filter(None, (old or "").split(","))) | {new}))


def _prepare_cache(res: Result, job: Job, path: Path, files: list[Path]) -> None:
    """Right before a timed read: evict and prove it cold, or make and prove it warm.

    Cold: nothing of the store is opened after :func:`cache.evict` returns (a ``full``
    eviction dropped its inodes and dentries too). Warm: read in first if needed.
    """
    if job.cache in (Cache.COLD, Cache.CAPPED):
        ev = cache.evict(path, job.evict, files)
        res.evict_method = _joined(res.evict_method, ev.method)
        res.cache_scope = _joined(res.cache_scope, ev.scope)
        res.resident_fraction.append(ev.fraction)
    else:
        fraction = cache.make_resident(files)
        warm = fraction >= cache.WARM_LIMIT
        scope = CacheScope.RESIDENT if warm else CacheScope.PARTIAL
        res.cache_scope = _joined(res.cache_scope, scope)
        res.resident_fraction.append(fraction)


def build_store(job: Job) -> dict[str, Any]:
    """Build the store *repeats* (+ *warmup*) times from scratch, keep the last one.

    Each build goes to a temporary sibling directory that is renamed to ``job.store``
    only after the last timed build has completed and been flushed to disk.
    """
    return _build(job).save(job.result)


def _source(job: Job) -> tuple[Any, np.ndarray, str]:
    """The job's source in RAM (untimed) and the name of the store method that writes it:
    pixels through ``write_many``, encoded data (file bytes) through ``write_encoded``."""
    if is_encoded(job.data):
        blobs, labels = load_blobs(job.images, job.labels, job.n)
        return [bytes(b) for b in blobs], np.array(labels), "write_encoded"
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    return np.array(src_images), np.array(src_labels), "write_many"


def build_writers(job: Job) -> dict[str, Any]:
    """Time building the store with ``job.workers`` writer processes, as :func:`build_store`
    does; then read it back and verify it (untimed). The store stays, read by nothing and
    replaced by a rerun: deleting it here would slow the timed job that follows (a mass
    delete's wake)."""
    res = _build(job)
    try:
        with _damage_is_clear(job):
            got = _store(job, workers=1).read_many(job.store)
        src_images, src_labels = load_source(job.images, job.labels, job.n)
        verify.against_source(job.what, got, src_images, src_labels)
    except BaseException:
        remove(job.store)  # a store that failed verification is not kept for anyone
        raise
    res.verified = True
    res.extra["writers"] = job.workers
    res.extra["parallel_writes"] = parallel_writes(job.fmt)
    res.extra["cores"] = len(os.sched_getaffinity(0))
    return res.save(job.result)


def _build(job: Job) -> Result:
    res = Result.for_job(job, Op.WRITE_MANY)
    src_images, src_labels, method = _source(job)  # in RAM, untimed
    store = _store(job)
    write = getattr(store, method)

    kept: list[Path] = []  # earlier builds, deleted only after the last timed build

    with atomic_path(job.store) as tmp:

        def fresh(_: None, timed: bool) -> None:
            # No timed build runs in the wake of a mass delete (the pipeline's own 100k-PNG
            # builds took 65-67 s right after deleting the previous repeat's files, 16 s
            # without): the previous build is renamed aside and deleted after the last one.
            if tmp.exists():
                kept.append(set_aside(tmp, len(kept)))
                os.rename(tmp, kept[-1])
            tmp.mkdir(parents=True)
            # Untimed: flush the rename and the new directory, so the timed flush below
            # pays for this build's data only.
            fsync_tree(tmp)

        def done(_: None, out: object, timed: bool) -> None:
            log.info("build %s: %s build done", job.what, "timed" if timed else "warmup")

        try:
            with _disk_full_is_clear(job):
                measure(
                    res,
                    lambda _: write(tmp, src_images, src_labels),
                    before=fresh,
                    after=done,
                    flush=lambda _: fsync_tree(tmp),  # the same flush for every format
                )
        finally:
            # Outside every timed section. A build of many files is left for the end of the
            # run (its delete would slow the next job's timed builds: holds_many_files), so
            # disk use grows by up to warmup + repeats - 1 builds per such store until then.
            gone = [old for old in kept if not holds_many_files(old)]
            for old in gone:
                remove(old)
            if gone:
                fsync_tree(job.store.parent)
    res.extra["options"] = dict(store.options)
    res.extra["library_sync"] = store.library_sync
    # Processes that really wrote: one below the pool threshold or for a serial format.
    parallel = parallel_writes(job.fmt) and job.n >= PARALLEL_MIN_IMAGES
    res.extra["writers_used"] = store.workers if parallel else 1
    return res


def read_many(job: Job) -> dict[str, Any]:
    """Time reading the whole store into arrays, warm or cold, verifying every read."""
    if is_encoded(job.data):
        return read_encoded(job)
    res = Result.for_job(job, Op.READ_MANY)
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    store = _store(job)
    files = cache.store_files(job.store)  # listed once: 100k PNG files take a second

    def before(_: None, timed: bool) -> None:
        if timed:
            _prepare_cache(res, job, job.store, files)

    def after(_: None, got: tuple[np.ndarray, np.ndarray], timed: bool) -> None:
        verify.against_source(job.what, got, src_images, src_labels)

    with _damage_is_clear(job):
        measure(res, lambda _: store.read_many(job.store), (None,), before, after)
    res.verified = True
    return res.save(job.result)


#: Decoded images a read_encoded job may hold for verification (the 1.5 GB job budget).
DECODED_BUDGET = 1 << 30


def read_encoded(job: Job) -> dict[str, Any]:
    """Encoded data: time reading every file's bytes (read-only), then reading and decoding
    them with the chosen decoder (the row's time: pixels, like every other read), then with
    Pillow (shown beside it). Each is warm or cold, prepared alike, and verified: the bytes
    round-trip exactly and each decoded image equals the same decoder's output for the
    source file."""
    from imgbench import decode, timing

    blobs, labels = load_blobs(job.images, job.labels, job.n)
    sid = source_id(job.images) or {}
    need = sid.get("decoded_bytes", 0) * job.n / max(1, sid.get("images", 1))
    if need > DECODED_BUDGET:
        raise DataError(
            f"{job.what}: {job.n} decoded images take {need / 1e9:.1f} GB, over the "
            f"{DECODED_BUDGET / 1e9:.1f} GB a job may hold to verify them; lower the cutoffs"
        )
    store = _store(job)
    files = cache.store_files(job.store)
    threads = job.workers if job.mode == Mode.TUNED else 1
    references: dict[str, list[bytes]] = {}  # per decoder: digests of the source decodes

    def timed_read(res: Result, decoder: str | None) -> None:
        dec = decode.get(decoder) if decoder else None

        def run(_: None) -> tuple[list, np.ndarray, list | None]:
            got, got_labels = store.read_encoded(job.store)
            return got, got_labels, decode.decode_all(got, dec, threads) if dec else None

        def before(_: None, timed: bool) -> None:
            if timed:
                _prepare_cache(res, job, job.store, files)

        def after(_: None, out: tuple[list, np.ndarray, list | None], timed: bool) -> None:
            got, got_labels, images = out
            verify.blobs(job.what, got, got_labels, blobs, labels)
            if images is not None:
                if decoder not in references:  # once per job, untimed
                    references[decoder] = [verify.digest(dec(b)) for b in blobs]
                verify.decoded(job.what, images, references[decoder])

        with _damage_is_clear(job):
            measure(res, run, (None,), before, after)

    for name in {job.decoder, "pillow"}:  # first-use costs (imports, Pillow's plugins)
        decode.get(name)(blobs[0])  # are paid here, untimed, not by whichever runs first
    res = Result.for_job(job, Op.READ_MANY)
    timed_read(res, job.decoder)
    for name, decoder in (("read_only", None), ("pillow", "pillow")):
        other = Result.for_job(job, Op.READ_MANY)
        timed_read(other, decoder)
        res.extra[name] = {
            **timing.summarize(other.samples),
            "samples": other.samples,
            "resident_fraction": other.resident_fraction,
        }
    res.verified = True
    res.threads = threads
    res.extra.update(decoder=job.decoder, payload="encoded", decode_threads=threads)
    res.extra["encoded_bytes"] = int(sum(len(b) for b in blobs))
    return res.save(job.result)


def write_one(job: Job) -> dict[str, Any]:
    """Time storing one image in its own store, for many ids; keep the last stores."""
    ids = sample_ids(job.n_images, job.samples)
    src_images, src_labels = load_source(job.images, job.labels, job.n_images)
    store = _store(job, workers=1)
    res = Result.for_job(job, Op.WRITE_ONE, n_images=1)
    res.threads = 1
    with atomic_path(job.store) as tmp, _disk_full_is_clear(job):

        def fresh(i: int, timed: bool) -> None:
            if i == ids[0]:  # a new round: every id gets a new store
                remove(tmp)
                tmp.mkdir(parents=True)
            (tmp / f"{i:08}").mkdir()

        def write(i: int) -> None:
            store.write_one(tmp / f"{i:08}", np.array(src_images[i]), int(src_labels[i]))

        measure(res, write, ids, fresh, flush=lambda i: fsync_tree(tmp / f"{i:08}"))
        res.extra["single_store_disk"] = disk_use(tmp / f"{ids[0]:08}")
    res.extra["ids"] = ids
    res.extra["library_sync"] = store.library_sync
    return res.save(job.result)


def read_one(job: Job) -> dict[str, Any]:
    """Time reading one image from its single-image store, warm or cold, verified."""
    src_images, src_labels = load_source(job.images, job.labels, job.n_images)
    store = _store(job, workers=1)
    res = Result.for_job(job, Op.READ_ONE, n_images=1)
    res.threads = 1
    ids = sorted(int(p.name) for p in job.store.iterdir() if p.is_dir() and p.name.isdigit())
    if not ids:
        raise StoreError(f"{job.store}: no single-image stores; rerun the write_one step")
    files = {i: cache.store_files(job.store / f"{i:08}") for i in ids}

    def before(i: int, timed: bool) -> None:
        if timed:
            _prepare_cache(res, job, job.store / f"{i:08}", files[i])

    def after(i: int, got: tuple[np.ndarray, int], timed: bool) -> None:
        image, label = got
        verify.check(
            f"{job.store / f'{i:08}'} ({job.mode} {job.fmt})",
            np.asarray(image)[None],
            np.asarray([label]),
            np.asarray(src_images[i])[None],
            np.asarray([src_labels[i]]),
        )

    with _damage_is_clear(job):
        measure(res, lambda i: store.read_one(job.store / f"{i:08}"), ids, before, after)
    res.verified = True
    res.extra["ids"] = ids
    return res.save(job.result)


def _epochs(
    job: Job,
    op: Op,
    pattern: str,
    run: Callable[[Store, list[np.ndarray], Any], Any],
    keep: Callable[[Any, Any], None],
    max_batches: int | None = None,
    cap: Any = None,
) -> Result:
    """What epoch reads and the training simulation share: a fresh order per run (eviction or
    residency last before the timer), ``run(store, batches, out)`` timed, every image verified
    after it; ``keep(result, out)`` takes what a timed run leaves to report. With a page-cache
    *cap* (:class:`imgbench.memcap.Cap`), the epochs are consecutive: see :class:`_CappedEpochs`."""
    from imgbench import access

    src_images, src_labels = load_source(job.images, job.labels, job.n)
    store = _store(job, workers=1)  # no pool inside a reader: the readers are the parallelism
    res = Result.for_job(job, op)
    files = cache.store_files(job.store)
    rounds = iter(range(job.warmup + job.repeats))
    state: dict[str, Any] = {}
    capped = _CappedEpochs(cap, res, job, files) if cap is not None else None

    def before(_: None, timed: bool) -> None:
        state["round"] = next(rounds)
        if pattern == Pattern.BUFFERED:  # the stream decides the order: known only after
            nb = -(-job.n // job.batch_size) + job.readers
            out = access.Epoch(job.n, src_images.shape[1:], src_labels.dtype, nb)
            state.update(order=None, parts=[], out=out)
        else:
            order = access.epoch_order(pattern, job.n, job.seed, state["round"], job.random_samples)
            parts = access.batches(order, pattern, job.batch_size)[:max_batches]
            n = sum(len(p) for p in parts)
            out = access.Epoch(n, src_images.shape[1:], src_labels.dtype, len(parts))
            state.update(order=order[:n], parts=parts, out=out)
        if capped is not None:  # the output is faulted in above, outside the group
            capped.before(timed)
        elif timed:  # last: nothing of the store is opened between eviction and the timer
            _prepare_cache(res, job, job.store, files)

    def after(_: None, got: Any, timed: bool) -> None:
        if capped is not None:
            capped.after(timed)
        out = state["out"]
        if state["order"] is None:  # streamed: every index exactly once, in any order
            state["order"] = np.array(out.index)
            verify.is_permutation(job.what, state["order"], job.n)
        verify.against_indices(
            job.what, (out.images, out.labels), src_images, src_labels, state["order"]
        )
        if timed:
            keep(got, out)

    with _damage_is_clear(job):
        measure(res, lambda _: run(store, state["parts"], state["out"]), (None,), before, after)
    res.verified = True
    n = len(state["order"])
    res.extra.update(
        pattern=pattern,
        readers=job.readers,
        reader_kind=job.reader_kind,
        batch_size=len(state["parts"][0]) if pattern == Pattern.RANDOM else job.batch_size,
        batches=len(state["parts"]) or int(np.isfinite(state["out"].latency).sum()),
        epoch_images=n,
        epoch_bytes=int(n * src_images[0].nbytes),
        seed=job.seed,
        cores=len(os.sched_getaffinity(0)),
        **({"shuffle_buffer": job.shuffle_buffer} if pattern == Pattern.BUFFERED else {}),
    )
    return res


class _CappedEpochs:
    """Consecutive epochs with the page cache the readers may fill capped (MLPerf Storage's
    concern: epochs after the first served from memory). The warmup epoch runs in the group
    without a limit on a store made resident *outside* it, so the group is charged only the
    readers' own memory: its peak, with a margin, is the allowance. The limit is then the cap
    plus that allowance; the store is evicted once, before the first timed epoch, and each
    later epoch starts with whatever the capped cache kept (measured with mincore)."""

    MARGIN = 1.25  # the readers' measured peak x this, + SLACK, is their allowance
    SLACK = 16 << 20

    def __init__(self, cap: Any, res: Result, job: Job, files: list[Path]) -> None:
        if job.warmup < 1:
            raise ValueError("capped epochs need a warmup epoch: it measures the readers' memory")
        self.cap, self.res, self.job, self.files = cap, res, job, files
        self.cap_bytes = int(job.cache_cap * sum(f.stat().st_size for f in files))
        self.first = True
        res.extra.update(page_cache_cap_bytes=self.cap_bytes, epoch_cache_bytes=[])

    def before(self, timed: bool) -> None:
        if not timed:  # calibration: the store is cached outside the group, charged to root
            cache.make_resident(self.files)
            (self.cap.path / "memory.max_usage_in_bytes").write_text("0")
        elif self.first:
            _prepare_cache(self.res, self.job, self.job.store, self.files)  # cold start
            self.first = False
        else:  # what the capped cache kept from the previous epoch
            self.res.resident_fraction.append(cache.resident_fraction(self.files))
        self.cap.enter()

    def after(self, timed: bool) -> None:
        self.cap.leave()
        if not timed:
            allowance = int(self.cap.stat("memory.max_usage_in_bytes") * self.MARGIN)
            limit = self.cap_bytes + allowance + self.SLACK
            (self.cap.path / "memory.limit_in_bytes").write_text(str(limit))
            self.res.extra.update(reader_allowance_bytes=allowance + self.SLACK, limit=limit)
            log.info(
                "page-cache cap %d B + readers' allowance -> limit %d B", self.cap_bytes, limit
            )
        else:
            self.res.extra["epoch_cache_bytes"].append(self.cap.cache_bytes())
            self.res.extra["limit_hits"] = self.cap.stat("memory.failcnt") - self.cap.failcnt_start


def read_epoch(job: Job) -> dict[str, Any]:
    """Time epochs over the store in ``job.pattern`` order, in mini-batches spread over
    ``job.readers`` readers (processes or threads), warm or cold; verify every image."""
    from imgbench import access

    latencies: list[float] = []
    repeats = iter(range(job.warmup + job.repeats))
    sizes: list[int] = []
    if job.pattern == Pattern.BUFFERED:
        if not streams(job.fmt):
            raise BenchError(
                f"{job.fmt}: the buffered pattern streams shards, which only formats that "
                "stream (tar) can do; remove buffered from access_patterns for it"
            )
        sizes = _store(job, workers=1).shard_sizes(job.store)

    def run(store: Store, parts: list[np.ndarray], out: Any) -> None:
        if job.pattern == Pattern.BUFFERED:
            access.run_stream(
                store,
                job.store,
                sizes,
                job.readers,
                job.reader_kind,
                out,
                job.shuffle_buffer,
                job.seed,
                next(repeats),
                job.batch_size,
            )
        else:
            access.run_epoch(store, job.store, parts, job.readers, job.reader_kind, out)

    with contextlib.ExitStack() as stack:
        cap = None
        if job.cache == Cache.CAPPED:
            from imgbench import memcap

            cap = stack.enter_context(memcap.capped(-1))  # the limit is set after calibration
        res = _epochs(
            job,
            Op.READ_EPOCH,
            job.pattern,
            run,
            lambda _, out: latencies.extend(out.latency[np.isfinite(out.latency)]),
            cap=cap,
        )
    res.extra.update(
        batch_latency_p50_s=float(np.percentile(latencies, 50)),
        batch_latency_p99_s=float(np.percentile(latencies, 99)),
    )
    return res.save(job.result)


def train(job: Job) -> dict[str, Any]:
    """Shuffled batches consumed by a simulated accelerator (``computation_time`` per batch, a
    real sleep) while the readers prefetch: accelerator utilisation as MLPerf Storage defines
    it, over ``au_batches`` batches per run; every image verified."""
    from imgbench import access

    runs: list[dict[str, float]] = []

    def run(store: Store, parts: list[np.ndarray], out: Any) -> dict[str, float]:
        return access.run_training(
            store,
            job.store,
            parts,
            job.readers,
            job.reader_kind,
            out,
            job.computation_time,
            job.prefetch,
        )

    res = _epochs(job, Op.TRAIN, "shuffled", run, lambda got, _: runs.append(got), job.au_batches)
    res.extra.update(
        computation_time=job.computation_time,
        prefetch=job.prefetch,
        au=[r["au"] for r in runs],
        stall_s=[r["stall_s"] for r in runs],
    )
    return res.save(job.result)
