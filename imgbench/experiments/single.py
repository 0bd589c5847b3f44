"""Timed single images: store one image in its own store, and read it back warm or cold, for
a fixed sample of image ids."""

from __future__ import annotations

from typing import Any

import numpy as np

from imgbench.core.atomic import atomic_path, fsync_tree, remove
from imgbench.core.errors import StoreError
from imgbench.core.job import Job
from imgbench.core.names import Op
from imgbench.data.cifar import load_source
from imgbench.experiments.common import (
    damage_is_clear,
    disk_full_is_clear,
    open_store,
    prepare_cache,
    sample_ids,
)
from imgbench.measure import cache, verify
from imgbench.measure.du import disk_use
from imgbench.measure.results import Result
from imgbench.measure.timing import measure


def write_one(job: Job) -> dict[str, Any]:
    """Time storing one image in its own store, for many ids; keep the last stores."""
    ids = sample_ids(job.n_images, job.samples)
    src_images, src_labels = load_source(job.images, job.labels, job.n_images)
    store = open_store(job, workers=1)
    res = Result.for_job(job, Op.WRITE_ONE, n_images=1)
    res.threads = 1
    with atomic_path(job.store) as tmp, disk_full_is_clear(job):

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
    store = open_store(job, workers=1)
    res = Result.for_job(job, Op.READ_ONE, n_images=1)
    res.threads = 1
    ids = sorted(int(p.name) for p in job.store.iterdir() if p.is_dir() and p.name.isdigit())
    if not ids:
        raise StoreError(f"{job.store}: no single-image stores; rerun the write_one step")
    files = {i: cache.store_files(job.store / f"{i:08}") for i in ids}

    def before(i: int, timed: bool) -> None:
        if timed:
            prepare_cache(res, job, job.store / f"{i:08}", files[i])

    def after(i: int, got: tuple[np.ndarray, int], timed: bool) -> None:
        image, label = got
        verify.check(
            f"{job.store / f'{i:08}'} ({job.mode} {job.fmt})",
            np.asarray(image)[None],
            np.asarray([label]),
            np.asarray(src_images[i])[None],
            np.asarray([src_labels[i]]),
        )

    with damage_is_clear(job):
        measure(res, lambda i: store.read_one(job.store / f"{i:08}"), ids, before, after)
    res.verified = True
    res.extra["ids"] = ids
    return res.save(job.result)
