"""Timed builds: a whole store from scratch (``build_store``) and the writer sweep
(``build_writers``). The timed section is the store's write call and the same flush for every
format; the source is loaded and earlier builds are set aside outside it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.atomic import atomic_path, fsync_tree, holds_many_files, remove, set_aside
from imgbench.core.job import Job
from imgbench.core.names import Op
from imgbench.data.cifar import load_source
from imgbench.data.folder import load_blobs
from imgbench.data.sizes import is_encoded
from imgbench.experiments.common import damage_is_clear, disk_full_is_clear, open_store
from imgbench.measure import verify
from imgbench.measure.results import Result
from imgbench.measure.timing import measure
from imgbench.stores import parallel_writes
from imgbench.stores.base import PARALLEL_MIN_IMAGES

log = logging.getLogger(__name__)


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
        with damage_is_clear(job):
            got = open_store(job, workers=1).read_many(job.store)
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
    store = open_store(job)
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
            with disk_full_is_clear(job):
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
