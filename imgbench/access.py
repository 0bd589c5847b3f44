"""Epochs as training reads them: mini-batches in an order, spread over several readers.

Each reader (a forked process, as PyTorch DataLoader workers, or a thread) takes an
interleaved share of the batches (batch ``r``, ``r + R``, ...), opens the store itself, reads
every batch of its share through the store's ``batch_reader`` and writes it at its positions
in one shared output array; nothing is pooled inside a reader. Processes open the store
each; threads share one open store (LMDB allows one environment per process). The timed
section is one epoch: readers started, every batch read, readers joined. Afterwards,
untimed, the whole output is compared with the source images in the epoch's order.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from imgbench.errors import StoreError
from imgbench.names import Pattern, ReaderKind
from imgbench.stores.base import Store


def epoch_order(pattern: str, n: int, seed: int, repeat: int, random_samples: int) -> np.ndarray:
    """Image indices of one epoch; shuffled and random orders are new for every repeat and
    reproducible from (seed, repeat)."""
    rng = np.random.default_rng([seed, repeat])
    if pattern == Pattern.SEQUENTIAL:
        return np.arange(n)
    if pattern == Pattern.SHUFFLED:
        return rng.permutation(n)
    if pattern == Pattern.RANDOM:
        return rng.choice(n, size=min(random_samples, n), replace=False)
    raise ValueError(f"unknown access pattern {pattern!r}; use sequential, shuffled or random")


def batches(order: np.ndarray, pattern: str, batch_size: int) -> list[np.ndarray]:
    """The epoch's mini-batches (random access reads one image at a time)."""
    size = 1 if pattern == Pattern.RANDOM else batch_size
    return [order[s : s + size] for s in range(0, len(order), size)]


def _shared(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array in an anonymous shared mapping: written by forked readers, seen by the parent."""
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_SHARED)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class Epoch:
    """The shared output of one epoch: images, labels and per-batch latencies."""

    def __init__(self, n: int, image_shape: tuple[int, ...], label_dtype: np.dtype, nb: int):
        self.images = _shared((n, *image_shape), np.uint8)
        self.labels = _shared((n,), label_dtype)
        self.latency = _shared((nb,), np.float64)
        self.images.fill(0)  # pre-fault the output outside the timed section
        self.labels.fill(0)
        self.latency.fill(np.nan)


def _read_share(
    read: Callable, parts: list[np.ndarray], starts: list[int], mine: Sequence[int], out: Epoch
) -> None:
    for b in mine:
        t0 = time.perf_counter()
        images, labels = read(parts[b])
        out.latency[b] = time.perf_counter() - t0
        out.images[starts[b] : starts[b] + len(parts[b])] = images
        out.labels[starts[b] : starts[b] + len(parts[b])] = labels


def run_epoch(
    store: Store, path: Path | str, parts: list[np.ndarray], readers: int, kind: str, out: Epoch
) -> None:
    """Read every batch once with *readers* readers of *kind*; raise if any reader failed."""
    path = Path(path)
    starts = list(np.cumsum([0] + [len(p) for p in parts[:-1]]))
    shares = [range(r, len(parts), readers) for r in range(readers)]
    if kind == ReaderKind.PROCESS:
        ctx = multiprocessing.get_context("fork")
        errors = ctx.SimpleQueue()
        procs = [
            ctx.Process(target=_child, args=(store, path, parts, starts, share, out, errors))
            for share in shares
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            why = errors.get() if not errors.empty() else f"exit codes {bad}"
            raise StoreError(f"{len(bad)} of {readers} reader processes failed: {why}")
    else:
        # Threads share one open store (LMDB allows one environment per process; h5py and
        # the PNG decoder are safe to share), as a threaded loader holds one handle.
        errors: list[BaseException] = []
        with store.batch_reader(path) as read:

            def target(share: range) -> None:
                try:
                    _read_share(read, parts, starts, share, out)
                except BaseException as exc:  # re-raised in the caller, outside the thread
                    errors.append(exc)

            threads = [threading.Thread(target=target, args=(share,)) for share in shares]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]


def _child(
    store: Store, path: Path, parts: list, starts: list, share: range, out: Epoch, errors: object
) -> None:
    try:
        with store.batch_reader(path) as read:  # each process opens the store itself
            _read_share(read, parts, starts, share, out)
    except BaseException as exc:  # the parent fails the job with this one line
        errors.put(" ".join(f"{type(exc).__name__}: {exc}".split()))  # type: ignore[attr-defined]
        os._exit(1)
    os._exit(0)  # no atexit handlers of the parent's libraries in the child


def run_training(
    store: Store,
    path: Path | str,
    parts: list[np.ndarray],
    readers: int,
    kind: str,
    out: Epoch,
    compute_s: float,
    prefetch: int = 2,
) -> dict[str, float]:
    """Batches consumed in order by a simulated accelerator that computes ``compute_s`` per
    batch (a real sleep) while the readers prefetch up to *prefetch* batches each (PyTorch
    DataLoader's ``prefetch_factor``). Returns accelerator utilisation as MLPerf Storage
    defines it: compute time / run time, the first batch's wait excluded."""
    path = Path(path)
    starts = list(np.cumsum([0] + [len(p) for p in parts[:-1]]))
    shares = [range(r, len(parts), readers) for r in range(readers)]
    if kind == ReaderKind.PROCESS:
        ctx = multiprocessing.get_context("fork")
        ready = [ctx.SimpleQueue() for _ in shares]
        slots = [ctx.Semaphore(prefetch) for _ in shares]
        errors = ctx.SimpleQueue()
        workers = [
            ctx.Process(
                target=_producer_child,
                args=(store, path, parts, starts, share, out, ready[r], slots[r], errors),
            )
            for r, share in enumerate(shares)
        ]
    else:
        import queue

        ready = [queue.SimpleQueue() for _ in shares]
        slots = [threading.Semaphore(prefetch) for _ in shares]
        errors = queue.SimpleQueue()
        handle = store.batch_reader(path)
        read = handle.__enter__()
        workers = [
            threading.Thread(
                target=_produce, args=(read, parts, starts, share, out, ready[r], slots[r], errors)
            )
            for r, share in enumerate(shares)
        ]
    t_start = time.perf_counter()
    for w in workers:
        w.start()
    compute = stalled = 0.0
    t_first = t_start
    failed = True
    try:
        for b in range(len(parts)):
            r = b % readers
            t0 = time.perf_counter()
            if ready[r].get() is None:  # the reader failed: it said why in `errors`
                raise StoreError(f"a reader failed: {errors.get()}")
            t1 = time.perf_counter()
            if b == 0:
                t_first = t1  # MLPerf Storage: the first step's I/O is not in AU
            else:
                stalled += t1 - t0
            time.sleep(compute_s)  # the accelerator's step
            compute += time.perf_counter() - t1
            slots[r].release()
        failed = False
    finally:
        if failed:  # let blocked readers run out their (bounded) shares, then join them
            for sem in slots:
                for _ in range(len(parts)):
                    sem.release()
        for w in workers:
            w.join()
        if kind != ReaderKind.PROCESS:
            handle.__exit__(None, None, None)
    t_end = time.perf_counter()
    return {
        "au": compute / (t_end - t_first),
        "run_s": t_end - t_start,
        "stall_s": stalled,
        "compute_s": compute,
    }


def _produce(
    read: Callable,
    parts: list,
    starts: list,
    share: range,
    out: Epoch,
    ready: object,
    slots: object,
    errors: object,
) -> None:
    try:
        for b in share:
            slots.acquire()  # type: ignore[attr-defined]
            images, labels = read(parts[b])
            out.images[starts[b] : starts[b] + len(parts[b])] = images
            out.labels[starts[b] : starts[b] + len(parts[b])] = labels
            ready.put(b)  # type: ignore[attr-defined]
    except BaseException as exc:
        errors.put(" ".join(f"{type(exc).__name__}: {exc}".split()))  # type: ignore[attr-defined]
        ready.put(None)  # type: ignore[attr-defined]


def _producer_child(
    store: Store,
    path: Path,
    parts: list,
    starts: list,
    share: range,
    out: Epoch,
    ready: object,
    slots: object,
    errors: object,
) -> None:
    with store.batch_reader(path) as read:
        _produce(read, parts, starts, share, out, ready, slots, errors)
    os._exit(0)
