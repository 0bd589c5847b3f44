"""Epochs as training reads them: mini-batches in an order, spread over several readers.

Each reader (a forked process, as PyTorch DataLoader workers, or a thread) takes an
interleaved share of the batches (batch ``r``, ``r + R``, ...), reads every batch of its
share through the store's ``batch_reader`` and writes it at its positions in one shared
output array; nothing is pooled inside a reader. Processes open the store each; threads
share one open store (LMDB allows one environment per process). The timed
section is one epoch: readers started, every batch read, readers joined. Afterwards,
untimed, the whole output is compared with the source images in the epoch's order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.core.names import Pattern, ReaderKind
from imgbench.measure.results import Result
from imgbench.stores.base import Store, shared_array


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


class Epoch:
    """The shared output of one epoch: images, labels and per-batch latencies (and, for a
    streamed epoch, which store index each position holds: the stream decides the order)."""

    def __init__(
        self,
        n: int,
        image_shape: tuple[int, ...],
        label_dtype: np.dtype,
        nb: int,
        stamp_cpu: bool = False,
    ):
        self.images = shared_array((n, *image_shape), np.uint8)
        self.labels = shared_array((n,), label_dtype)
        self.latency = shared_array((nb,), np.float64)
        self.index = shared_array((n,), np.int64)
        #: when each batch was in place (CLOCK_MONOTONIC, comparable across processes): a
        #: time-boxed epoch counts the batches done inside its window
        self.done_at = shared_array((nb,), np.float64)
        #: the reading process's user and kernel CPU seconds (getrusage: all its threads) when
        #: each batch was in place: a time box's CPU is the difference across its window.
        #: Only time boxes stamp (0.9 us a batch, a cost per image at batch size 1).
        self.stamp_cpu = stamp_cpu
        #: when run_epoch began starting the readers (perf_counter): a reader's CPU clock
        #: reads 0 there, and only there
        self.started_at = float("inf")
        #: the reader processes (as run_epoch starts them), and their CPU when a time box's
        #: window began (:func:`timed_windows`): the start of a reader that had finished no
        #: batch by then
        self.pids: list[int] = []
        self.window_start_cpu: list[tuple[float, float] | None] = []
        self.cpu_user = shared_array((nb,), np.float64)
        self.cpu_sys = shared_array((nb,), np.float64)
        #: set by the caller to stop the readers after their current batch (a time box)
        self.stop = shared_array((1,), np.uint8)
        self.images.fill(0)  # pre-fault the output outside the timed section
        self.labels.fill(0)
        self.latency.fill(np.nan)
        self.index.fill(-1)
        self.done_at.fill(np.nan)
        self.cpu_user.fill(np.nan)
        self.cpu_sys.fill(np.nan)
        self.stop.fill(0)


#: how often a time box looks whether the epoch is done
POLL_S = 0.02


def reader_cpu(out: Epoch) -> list[tuple[float, float] | None]:
    """Each reader process's user and kernel CPU seconds now, from /proc/<pid>/stat (whole
    clock ticks; the same clock getrusage reads in microseconds); None for one that ended.
    Thread readers (no processes): this process's own, once."""
    if not out.pids:
        use = resource.getrusage(resource.RUSAGE_SELF)
        return [(use.ru_utime, use.ru_stime)]
    tick, got = os.sysconf("SC_CLK_TCK"), []
    for pid in out.pids:
        try:  # fields after the ")" that ends the command name: utime, stime are 12, 13
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            got.append((int(fields[11]) / tick, int(fields[12]) / tick))
        except (OSError, IndexError, ValueError):
            got.append(None)
    return got


def wait_done(until: float, out: Epoch) -> bool:
    """Sleep until *until* (perf_counter) or the epoch is done; True if the epoch is done."""
    while time.perf_counter() < until:
        if np.isfinite(out.done_at).all():
            return True
        time.sleep(POLL_S)
    return bool(np.isfinite(out.done_at).all())


def timed_windows(out: Epoch, start: float, seconds: float, parts: int) -> tuple[list[float], str]:
    """A time box's timed window from *start*, in *parts* equal parts: the ticks at each
    part's end, and "window" if the epoch ended inside it (then at the last tick), else "".
    The readers' CPU clocks are read first: where a reader has finished no batch yet, the
    window's CPU starts there."""
    out.window_start_cpu = reader_cpu(out)
    ticks = [start]
    for k in range(1, parts + 1):
        done = wait_done(start + seconds * k / parts, out)
        ticks.append(time.perf_counter())
        if done:
            return ticks, "window"
    return ticks, ""


def completed_positions(out: Epoch, sizes: np.ndarray) -> np.ndarray:
    """Output positions of every batch that completed (a time-boxed epoch stops early):
    what is verified and counted afterwards."""
    done = np.isfinite(out.done_at)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.array(
        [i for s, k in zip(starts[done], sizes[done], strict=True) for i in range(s, s + k)],
        dtype=np.int64,
    )


def window_parts(
    out: Epoch, sizes: np.ndarray, ticks: list[float], n: int
) -> tuple[list[int], list[float]]:
    """Images completed in each part of a timed window, and each part's rate as the seconds
    a whole epoch of *n* images takes at it (epoch rows time whole epochs; a part with no
    completed batch gives no rate)."""
    counts = [
        int(sizes[(out.done_at > a) & (out.done_at <= b)].sum())
        for a, b in zip(ticks[:-1], ticks[1:], strict=True)
    ]
    rates = [n * (b - a) / k for a, b, k in zip(ticks[:-1], ticks[1:], counts, strict=True) if k]
    return counts, rates


def window_cpu(
    out: Epoch, ticks: list[float], readers: int, kind: str
) -> tuple[float, float] | None:
    """User and kernel CPU seconds the readers spent over a time box's window, read from the
    stamps of completed batches as the images are counted: per reader, its CPU at its last
    batch done by the window's end minus at its last batch done by the start. A reader
    process's clock reads 0 at its fork, so a window that starts before the readers
    (``out.started_at``) needs no earlier batch; where one that starts later finds a reader
    with none done, it starts from that reader's clock as :func:`timed_windows` read it
    (None if it could not). Reader processes are summed; thread readers
    share one clock, the whole job process (its polling thread and any library threads in it
    included)."""
    start, end = ticks[0], ticks[-1]
    groups = (
        [np.arange(r, len(out.done_at), readers) for r in range(readers)]
        if kind == ReaderKind.PROCESS
        else [np.arange(len(out.done_at))]
    )
    user = system = 0.0
    at_start = out.window_start_cpu
    for r, g in enumerate(groups):
        done = out.done_at[g]
        stamps = []
        for t in (start, end):
            upto = np.flatnonzero(done <= t)  # NaN (not done) compares False
            if len(upto):
                b = g[upto[np.argmax(done[upto])]]
                if not (np.isfinite(out.cpu_user[b]) and np.isfinite(out.cpu_sys[b])):
                    return None  # an epoch run without stamps (stamp_cpu False)
                stamps.append((float(out.cpu_user[b]), float(out.cpu_sys[b])))
            elif kind == ReaderKind.PROCESS and t <= out.started_at:
                stamps.append((0.0, 0.0))
            elif t == start and r < len(at_start) and at_start[r] is not None:
                stamps.append(at_start[r])  # read from its clock when the window began
            else:
                return None
        user += stamps[1][0] - stamps[0][0]
        system += stamps[1][1] - stamps[0][1]
    return max(0.0, round(user, 6)), max(0.0, round(system, 6))


def record_window_cpu(res: Result, out: Epoch, ticks: list[float], readers: int, kind: str) -> None:
    """A time-boxed row's CPU: the readers' over its window, as one sample (none for a
    window of no length or without a thread clock's start)."""
    cpu = window_cpu(out, ticks, readers, kind)
    if cpu is not None and ticks[-1] > ticks[0]:
        res.cpu_user_s, res.cpu_sys_s = [cpu[0]], [cpu[1]]
        res.extra["cores"] = len(os.sched_getaffinity(0))


def _layout(parts: list[np.ndarray], readers: int) -> tuple[list[int], list[range]]:
    """Where each batch starts in the output, and each reader's interleaved share."""
    starts = [int(x) for x in np.cumsum([0] + [len(p) for p in parts[:-1]])]
    return starts, [range(r, len(parts), readers) for r in range(readers)]


def _put(read: Callable, parts: list[np.ndarray], starts: list[int], b: int, out: Epoch) -> None:
    """Read batch *b*, time the read, and place it at its positions in the output."""
    t0 = time.perf_counter()
    images, labels = read(parts[b])
    out.latency[b] = time.perf_counter() - t0
    out.images[starts[b] : starts[b] + len(parts[b])] = images
    out.labels[starts[b] : starts[b] + len(parts[b])] = labels
    out.done_at[b] = time.perf_counter()
    if out.stamp_cpu:  # after the batch's timestamp: not inside its latency
        use = resource.getrusage(resource.RUSAGE_SELF)
        out.cpu_user[b], out.cpu_sys[b] = use.ru_utime, use.ru_stime


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


@contextlib.contextmanager
def _readers(
    store: Store,
    path: Path,
    kind: str,
    n: int,
    work: Callable[[Callable, int], None],
    on_fail: Callable[[int], None] = lambda r: None,
    child_init: Callable[[], None] | None = None,
    pids: list[int] | None = None,
) -> Iterator[None]:
    """Run ``work(read, r)`` in *n* readers of *kind* while the body runs; join them on exit
    and fail with one line naming the store if any reader failed (``on_fail(r)`` runs in a
    failing reader, e.g. to wake a consumer waiting for it). Processes open the store each;
    threads share one open store (LMDB allows one environment per process). The reader
    processes' ids go to *pids* as they start."""
    errors: Any
    with contextlib.ExitStack() as stack:
        if kind == ReaderKind.PROCESS:
            ctx = multiprocessing.get_context("fork")
            errors = ctx.SimpleQueue()

            def child(r: int) -> None:
                try:
                    if child_init is not None:  # e.g. join a memory cgroup, parent outside
                        child_init()
                    with store.batch_reader(path) as read:
                        work(read, r)
                except BaseException as exc:
                    errors.put(_one_line(exc))
                    on_fail(r)
                    os._exit(1)
                os._exit(0)  # no atexit handlers of the parent's libraries in the child

            workers: list = [ctx.Process(target=child, args=(r,)) for r in range(n)]
        else:
            if child_init is not None:
                raise StoreError(f"{path}: this epoch needs reader processes, not threads")
            errors = queue.SimpleQueue()
            read = stack.enter_context(store.batch_reader(path))

            def thread(r: int) -> None:
                try:
                    work(read, r)
                except BaseException as exc:
                    errors.put(_one_line(exc))
                    on_fail(r)

            workers = [threading.Thread(target=thread, args=(r,)) for r in range(n)]
        for w in workers:
            w.start()
            if pids is not None and getattr(w, "pid", None):
                pids.append(w.pid)
        try:
            yield
        finally:
            for w in workers:
                w.join()
    why = []
    while not errors.empty():
        why.append(errors.get())
    died = [w.exitcode for w in workers if getattr(w, "exitcode", 0)]
    if why or died:
        raise StoreError(
            f"{path}: {max(len(why), len(died))} of {n} {kind} readers failed: "
            f"{why[0] if why else f'exit codes {died}'}"
        )


def run_epoch(
    store: Store,
    path: Path | str,
    parts: list[np.ndarray],
    readers: int,
    kind: str,
    out: Epoch,
    child_init: Callable[[], None] | None = None,
) -> None:
    """Read every batch once with *readers* readers of *kind*; raise if any reader failed.
    A reader stops before its next batch once ``out.stop`` is set (the rest stay unread)."""
    starts, shares = _layout(parts, readers)
    out.started_at = time.perf_counter()

    def share(read: Callable, r: int) -> None:
        for b in shares[r]:
            if out.stop[0]:
                return
            _put(read, parts, starts, b, out)

    with _readers(store, Path(path), kind, readers, share, child_init=child_init, pids=out.pids):
        pass


@contextlib.contextmanager
def epoch_in_background(
    store: Store,
    path: Path | str,
    parts: list[np.ndarray],
    readers: int,
    kind: str,
    out: Epoch,
    child_init: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Run :func:`run_epoch` while the body runs (the body watches the clock and sets
    ``out.stop``); on exit, wait for the readers and raise if any failed."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            run_epoch(store, path, parts, readers, kind, out, child_init)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    runner = threading.Thread(target=main, name="epoch")
    runner.start()
    try:
        yield
    except BaseException:
        out.stop[0] = 1  # the body failed: stop the readers before waiting for them
        runner.join()
        raise
    runner.join()
    if errors:
        raise errors[0]


def stream_plan(
    sizes: list[int], readers: int, seed: int, repeat: int, batch_size: int
) -> tuple[list[list[int]], list[int], list[int]]:
    """A streamed epoch's plan: shards in a new seeded order per repeat, dealt to the readers
    in turn (WebDataset's ``split_by_worker``); each reader's first output position, and its
    first latency slot (one per *batch_size* samples it yields)."""
    order = np.random.default_rng([seed, repeat]).permutation(len(sizes))
    shares = [[int(s) for s in order[r::readers]] for r in range(readers)]
    counts = [sum(sizes[s] for s in share) for share in shares]
    starts = [int(x) for x in np.cumsum([0, *counts[:-1]])]
    slots = [int(x) for x in np.cumsum([0, *(-(-c // batch_size) for c in counts[:-1])])]
    return shares, starts, slots


def run_stream(
    store: Store,
    path: Path | str,
    sizes: list[int],
    readers: int,
    kind: str,
    out: Epoch,
    shuffle_buffer: int,
    seed: int,
    repeat: int,
    batch_size: int,
) -> None:
    """WebDataset's streamed epoch: each reader streams its shards through its own shuffle
    buffer and writes the samples, in the order they come, into its region of the output
    (``out.index`` records which store index landed where); a batch's latency is the time
    its *batch_size* samples took to come out of the stream."""
    shares, starts, slots = stream_plan(sizes, readers, seed, repeat, batch_size)

    def share(_: Callable, r: int) -> None:
        pos, slot, t0 = starts[r], slots[r], time.perf_counter()
        items = store.stream_shards(Path(path), shares[r], shuffle_buffer, seed + repeat)
        for k, (i, image, label) in enumerate(items, 1):
            out.images[pos], out.labels[pos], out.index[pos] = image, label, i
            pos += 1
            if k % batch_size == 0:
                out.latency[slot], slot, t0 = (
                    time.perf_counter() - t0,
                    slot + 1,
                    time.perf_counter(),
                )
        if pos > starts[r] and (pos - starts[r]) % batch_size:
            out.latency[slot] = time.perf_counter() - t0

    with _readers(store, Path(path), kind, readers, share):
        pass


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
    starts, shares = _layout(parts, readers)
    if kind == ReaderKind.PROCESS:
        ctx = multiprocessing.get_context("fork")
        ready, slots = (
            [ctx.SimpleQueue() for _ in shares],
            [ctx.Semaphore(prefetch) for _ in shares],
        )
    else:
        ready = [queue.SimpleQueue() for _ in shares]
        slots = [threading.Semaphore(prefetch) for _ in shares]

    def produce(read: Callable, r: int) -> None:
        for b in shares[r]:
            slots[r].acquire()
            if out.stop[0]:  # a time-boxed warm-up ended: wake the consumer, which stops too
                ready[r].put(None)
                return
            _put(read, parts, starts, b, out)
            ready[r].put(b)

    compute = stalled = 0.0
    t_first = time.perf_counter()
    with _readers(store, Path(path), kind, readers, produce, lambda r: ready[r].put(None)):
        done = False
        try:
            for b in range(len(parts)):
                r = b % readers
                t0 = time.perf_counter()
                # None: the reader failed (_readers raises its line) or was stopped
                if out.stop[0] or ready[r].get() is None:
                    break
                t1 = time.perf_counter()
                if b == 0:
                    t_first = t1  # MLPerf Storage: the first step's I/O is not in AU
                else:
                    stalled += t1 - t0
                time.sleep(compute_s)  # the accelerator's step
                compute += time.perf_counter() - t1
                slots[r].release()
            else:
                done = True  # every batch consumed (a failed reader breaks out above)
        finally:
            if not done:  # let blocked readers run out their (bounded) shares before joining
                for sem in slots:
                    for _ in range(len(parts)):
                        sem.release()
    return {
        "au": compute / (time.perf_counter() - t_first),
        "stall_s": stalled,
        "compute_s": compute,
    }
