"""Epochs from a store larger than the page cache: a time box that always ends with a number.

Why: 100,000 CIFAR images are 300 MB, so on any training node a "cold" epoch is warm again
within the epoch; people with lots of images have stores larger than memory, where every epoch
goes to the device (MLPerf Storage makes the data set at least 5x the node's memory for this
reason). Here the readers run in a memory cgroup whose page cache may hold only
``job.cache_cap`` of the store's bytes (:mod:`imgbench.measure.memcap`), so the store is, to
them, 1 / cap times larger than memory.

A whole epoch at device speed can take hours for a format that faults in 8 MiB of readahead
per 3 KB image; a format that reaches 300 images/s is still a result to publish. So the epoch
is time-boxed: from an evicted store, the readers run through one seeded permutation for a
warm-up window (``capped_warmup_s``: the capped cache fills and reaches its steady state),
then for a timed window (``capped_seconds``) split into ``capped_windows`` equal parts, and
stop. Images/s counts the batches completed inside the window; every completed batch is
verified against the source afterwards, untimed. If the epoch ends first, the row says so and
uses the whole epoch. The block device's own counters give the IOs and bytes each image cost.

The group's limit is the cap plus what the readers themselves are charged (everything that is
not file pages, from ``memory.stat``), re-read every few milliseconds: the readers never run
out of memory, and the store's pages are held to the cap.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.job import Job
from imgbench.core.names import Op
from imgbench.data.cifar import load_source
from imgbench.experiments import access
from imgbench.experiments.common import damage_is_clear, open_store, prepare_cache
from imgbench.measure import blockdev, cache, memcap, verify
from imgbench.measure.results import Result

log = logging.getLogger(__name__)

#: Headroom above the readers' own charge (kernel objects, a batch in flight), and how often
#: the limit follows that charge (2 MiB: 0.7 % of the 100,000-image CIFAR store). A
#: governor that lags lets the readers' own growth reclaim store pages: below the cap, never above.
SLACK = 2 << 20
GOVERN_S = 0.005
#: Room above the readers' own charge is never below this. A read(2) that must charge a page
#: to a group at its limit fails with ENOMEM where no page can be reclaimed (only page
#: faults wait for the governor); the store's capped pages are that reserve, so a cap below
#: this (a tiny store) is raised to it: the row's resident_peak shows what was held.
FLOOR = 32 << 20


class _Governor(threading.Thread):
    """Keep the group's limit at the readers' own charge + cap + :data:`SLACK` (at least
    :data:`FLOOR`), and watch the group's page cache: ``file_peak`` is its highest since
    :meth:`reset` (the store's pages are all the readers read: the window's residency peak,
    read without opening the store's files)."""

    def __init__(self, cap: Any, cap_bytes: int) -> None:
        super().__init__(name="cap-governor", daemon=True)
        self.cap, self.cap_bytes, self.halt = cap, cap_bytes, threading.Event()
        self.room = max(cap_bytes + SLACK, FLOOR)
        self.limit = self.room + (64 << 20)  # until the first reading
        self.own_peak = self.file_peak = 0
        self.failures = 0
        self.error: str | None = None
        # A reader that allocates faster than the limit follows waits for it (this thread
        # runs outside the group and raises it) instead of being killed: TileDB's readers
        # take tens of MB at once.
        cap.hold_at_limit()
        cap.set_limit(self.limit)

    def reset(self) -> None:
        self.file_peak = 0

    def run(self) -> None:
        try:
            while not self.halt.wait(GOVERN_S):
                m = self.cap.memory()
                # everything charged that is not page cache: anon and kernel memory alike
                own = max(0, m["usage"] - m["file"])
                self.own_peak = max(self.own_peak, own)
                self.file_peak = max(self.file_peak, m["file"])
                limit = own + self.room
                if abs(limit - self.limit) >= (1 << 20):
                    try:
                        self.cap.set_limit(limit)
                        self.limit = limit
                    except (OSError, memcap.CapError):  # v1: below usage it cannot reclaim yet
                        self.failures += 1
        except BaseException as exc:  # never leave readers waiting at a limit nobody raises
            self.error = f"{type(exc).__name__}: {exc}"
            self.cap.set_limit(None)
            raise


def _counters(store: Path | None) -> tuple[int, int]:
    return blockdev.counters_for(store) if store else (0, 0)


def read_capped(job: Job) -> dict[str, Any]:
    """One time-boxed epoch in ``job.pattern`` order with the page cache capped at
    ``job.cache_cap`` of the store; a row with ``not_measured`` where no cap can be set."""
    res = Result.for_job(job, Op.READ_EPOCH)
    files = cache.store_files(job.store)
    store_bytes = sum(f.stat().st_size for f in files)
    cap_bytes = int(job.cache_cap * store_bytes)
    try:
        dev: str | None = blockdev.device_for(job.store)
        no_device = None
    except blockdev.NoBlockDevice as exc:  # the row still has images/s, not device counters
        dev, no_device = None, str(exc)
    counted = job.store if dev else None  # its partition's own counters
    res.extra.update(
        pattern=job.pattern,
        readers=job.readers,
        reader_kind=job.reader_kind,
        batch_size=job.batch_size,
        seed=job.seed,
        advice=job.advice,
        io_depth=job.io_depth,
        page_cache_cap=job.cache_cap,
        cap_bytes=cap_bytes,
        store_bytes=store_bytes,
        warmup_s=job.capped_warmup_s,
        window_s=job.capped_seconds,
        windows=job.capped_windows,
        block_device=dev,
        no_device_counters=no_device,
        cores=len(os.sched_getaffinity(0)),
    )
    usable, why = memcap.usable()
    if not usable:
        res.extra["not_measured"] = why
        log.warning("%s: capped epoch not measured: %s", job.what, why)
        return res.save(job.result)

    src_images, src_labels = load_source(job.images, job.labels, job.n)
    res.extra["image_bytes"] = int(src_images[0].nbytes)
    store = open_store(job, workers=1)  # no pool inside a reader: the readers are the parallelism
    # what each knob did for this format ("not applied: why" where its reader cannot)
    res.extra["tuning"] = store.tune_reads(advice=job.advice, io_depth=job.io_depth)
    order = access.epoch_order(job.pattern, job.n, job.seed, 0, job.random_samples)
    parts = access.batches(order, job.pattern, job.batch_size)
    out = access.Epoch(len(order), src_images.shape[1:], src_labels.dtype, len(parts), True)
    prepare_cache(res, job, job.store, files)  # evicted and proven cold: the window's start
    sizes = np.array([len(p) for p in parts])

    with memcap.capped(None) as cap, damage_is_clear(job):
        governor = _Governor(cap, cap_bytes)
        try:
            governor.start()
            t0 = time.perf_counter()
            c0 = _counters(counted)
            # Each reader process joins the group as it starts; this process stays outside
            # (its threads raise the limit and sample residency, and must never wait on it).
            with access.epoch_in_background(
                store,
                job.store,
                parts,
                job.readers,
                job.reader_kind,
                out,
                child_init=lambda: cap.enter(os.getpid()),
            ):
                ended = "warmup" if access.wait_done(t0 + job.capped_warmup_s, out) else ""
                if ended:  # the whole epoch fit in the warm-up: it is the window
                    ticks, c_start, resident_start = [t0, t0], c0, res.resident_fraction[0]
                else:
                    # mincore opens every store file: before the window, never inside it
                    resident_start = cache.resident_fraction(files)
                    governor.reset()
                    start, c_start = time.perf_counter(), _counters(counted)
                    ticks, ended = access.timed_windows(
                        out, start, job.capped_seconds, job.capped_windows
                    )
                c_end = _counters(counted)
                out.stop[0] = 1
            if ended:  # the window ends with the epoch's last batch, not at the poll
                last = float(np.nanmax(out.done_at))
                if last <= ticks[0]:  # it ended between the warm-up's last poll and the window
                    ended, ticks = "warmup", [t0, t0]
                    c_start, resident_start = c0, res.resident_fraction[0]
                ticks[-1] = last
            # Where the store's pages are charged: in the group, up to the cap.
            resident_end, memory = cache.resident_fraction(files), cap.memory()
        finally:
            governor.halt.set()
        governor.join()
        hits = cap.limit_hits()

    # Untimed: every completed batch, against the source, at its positions in the output.
    positions = access.completed_positions(out, sizes)
    verify.against_indices(
        job.what,
        (out.images[positions], out.labels[positions]),
        src_images,
        src_labels,
        order[positions],
    )
    res.verified = True  # every completed batch (none completed: nothing to count either)

    in_window, res.samples = access.window_parts(out, sizes, ticks, len(order))
    access.record_window_cpu(res, out, ticks, job.readers, job.reader_kind)
    seconds = ticks[-1] - ticks[0]
    images = sum(in_window)
    read_by_end = int(sizes[out.done_at <= ticks[-1]].sum())
    ios, nbytes = c_end[0] - c_start[0], c_end[1] - c_start[1]
    res.resident_fraction = [res.resident_fraction[0], resident_start]
    res.extra.update(
        images_per_s=images / seconds if images and seconds > 0 else None,
        window_images=images,
        window_seconds=seconds,
        window_parts=in_window,
        epoch_ended=ended or None,
        epoch_fraction=read_by_end / len(order),
        resident_start=resident_start,
        resident_peak=max(governor.file_peak / store_bytes, resident_start),
        device_ios=ios if dev else None,
        device_bytes=nbytes if dev else None,
        device_ios_per_image=ios / images if dev and images else None,
        device_bytes_per_image=nbytes / images if dev and images else None,
        cgroup_version=cap.version,
        cache_room_bytes=governor.room,
        limit_bytes_last=governor.limit,
        readers_own_peak_bytes=governor.own_peak,
        limit_set_failures=governor.failures,
        limit_hits=hits,
        resident_end=resident_end,
        group_file_bytes_end=memory["file"],
    )
    if governor.error:
        res.extra["not_measured"] = f"the cap's governor failed: {governor.error}"
    elif not images:
        res.extra["not_measured"] = (
            f"no batch of {job.batch_size} images completed in {seconds:.1f} s"
        )
    return res.save(job.result)
