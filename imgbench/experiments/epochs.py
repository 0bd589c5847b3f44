"""Timed epochs as training reads them: mini-batches in an order over several readers
(``read_epoch``), warm or cold, and a simulated accelerator fed by
them (``train``); every image verified after each epoch, untimed."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from imgbench.core.errors import BenchError
from imgbench.core.job import Job
from imgbench.core.names import Cache, Op, Pattern
from imgbench.data.cifar import load_source
from imgbench.experiments import access
from imgbench.experiments.common import damage_is_clear, open_store, prepare_cache
from imgbench.measure import cache, verify
from imgbench.measure.results import Result
from imgbench.measure.timing import measure
from imgbench.stores import streams
from imgbench.stores.base import Store

log = logging.getLogger(__name__)


def _epochs(
    job: Job,
    op: Op,
    pattern: str,
    run: Callable[[Store, list[np.ndarray], Any], Any],
    keep: Callable[[Any, Any], None],
    max_batches: int | None = None,
) -> Result:
    """What epoch reads and the training simulation share: a fresh order per run (eviction or
    residency last before the timer), ``run(store, batches, out)`` timed, every image verified
    after it; ``keep(result, out)`` takes what a timed run leaves to report."""
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    store = open_store(job, workers=1)  # no pool inside a reader: the readers are the parallelism
    res = Result.for_job(job, op)
    files = cache.store_files(job.store)
    rounds = iter(range(job.warmup + job.repeats))
    state: dict[str, Any] = {}

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
        state["timed"] = timed
        if timed:  # last: nothing of the store is opened between eviction and the timer
            prepare_cache(res, job, job.store, files)

    def go(_: None) -> Any:
        """A warm-up epoch stops at its readers' next batch after job.warmup_s (streamed
        epochs cannot stop: they read whole)."""
        out = state["out"]
        if state["timed"] or not job.warmup_s or pattern == Pattern.BUFFERED:
            return run(store, state["parts"], out)
        timer = threading.Timer(job.warmup_s, lambda: out.stop.fill(1))
        timer.start()
        try:
            return run(store, state["parts"], out)
        finally:
            timer.cancel()

    def after(_: None, got: Any, timed: bool) -> None:
        out = state["out"]
        if state["order"] is None:  # streamed: every index exactly once, in any order
            state["order"] = np.array(out.index)
            verify.is_permutation(job.what, state["order"], job.n)
        if out.stop[0]:  # a warm-up stopped in time: its completed batches
            pos = access.completed_positions(out, np.array([len(p) for p in state["parts"]]))
            got_images, got_labels, order = out.images[pos], out.labels[pos], state["order"][pos]
        else:
            got_images, got_labels, order = out.images, out.labels, state["order"]
        verify.against_indices(job.what, (got_images, got_labels), src_images, src_labels, order)
        if timed:
            keep(got, out)

    with damage_is_clear(job):
        measure(res, go, (None,), before, after)
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


def read_epoch(job: Job) -> dict[str, Any]:
    """Time epochs over the store in ``job.pattern`` order, in mini-batches spread over
    ``job.readers`` readers (processes or threads), warm or cold; verify every image."""
    latencies: list[float] = []
    repeats = iter(range(job.warmup + job.repeats))
    sizes: list[int] = []
    if job.pattern == Pattern.BUFFERED:
        if not streams(job.fmt):
            raise BenchError(
                f"{job.fmt}: the buffered pattern streams shards, which only formats that "
                "stream (tar) can do; remove buffered from access_patterns for it"
            )
        sizes = open_store(job, workers=1).shard_sizes(job.store)

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

    if job.cache == Cache.CAPPED:
        raise BenchError(f"{job.what}: capped epochs are time-boxed: run them with read_capped")
    res = _epochs(
        job,
        Op.READ_EPOCH,
        job.pattern,
        run,
        lambda _, out: latencies.extend(out.latency[np.isfinite(out.latency)]),
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
