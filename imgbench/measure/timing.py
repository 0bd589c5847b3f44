"""Repeated timing with untimed warmups: the one place that splits them."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from imgbench.measure.results import Result

T = TypeVar("T")


def process_age() -> float:
    """Seconds since this process started, on the kernel's boot clock (psutil's create_time
    derives from a whole-second boot time and was off by ~0.85 s here)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")


def cpu_now() -> tuple[float, float]:
    """User and kernel CPU seconds of this process plus its reaped children.

    From getrusage, which counts in microseconds: os.times counts whole 10 ms ticks, so a
    100 ms timed section read as "user 0 us" (the README's reasons did).
    """
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + kids.ru_utime, own.ru_stime + kids.ru_stime


def cpu_delta(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    """CPU seconds (user, kernel) between two :func:`cpu_now` readings, rounded to the
    microsecond they count in: float sums otherwise leave -1.7e-16 s (CI failed on it)."""
    return tuple(max(0.0, round(b - a, 6)) for a, b in zip(before, after, strict=True))


def measure(
    res: Result,
    fn: Callable[[T], Any],
    items: Sequence[T] = (None,),  # type: ignore[assignment]
    before: Callable[[T, bool], None] | None = None,
    after: Callable[[T, Any, bool], None] | None = None,
    flush: Callable[[T], None] | None = None,
) -> None:
    """Time ``fn(item)`` for every item, in ``res.warmup`` untimed then ``res.repeats``
    timed rounds; append the durations to ``res.warmup_samples`` / ``res.samples``.

    ``before(item, timed)`` and ``after(item, result, timed)`` run outside the timed
    section (eviction, fresh directories, verification). ``flush(item)`` runs inside it,
    right after ``fn``: writes are timed until durable (the sample) and, separately, until
    the call returned (``res.returned_samples``). Warmup durations are kept: they count as
    measurement work, not pipeline overhead, in the overhead accounting.
    """
    for k in range(res.warmup + res.repeats):
        timed = k >= res.warmup
        for item in items:
            if before is not None:
                before(item, timed)
            if res.startup_s is None:
                res.startup_s = process_age()
            cpu0 = cpu_now()
            t0 = time.perf_counter()
            out = fn(item)
            dt = time.perf_counter() - t0
            if flush is not None:
                flush(item)
                if timed:
                    res.returned_samples.append(dt)
                dt = time.perf_counter() - t0
            if timed:  # user and kernel CPU of the job and its finished workers, per repeat
                user, system = cpu_delta(cpu0, cpu_now())
                res.cpu_user_s.append(user)
                res.cpu_sys_s.append(system)
            if after is not None:
                after(item, out, timed)
            del out
            (res.samples if timed else res.warmup_samples).append(dt)
