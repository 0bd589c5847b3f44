"""Repeated timing with untimed warmups: the one place that splits them."""

from __future__ import annotations

import os
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


def cpu_delta(before: os.times_result, after: os.times_result, kind: str) -> float:
    """CPU seconds of ``kind`` ("user" or "system") spent by the process and its reaped
    children between two ``os.times()`` readings.

    The readings count whole clock ticks, so the difference is rounded to the tick: summing
    four floats otherwise leaves -1.7e-16 s for an interval with no tick (CI failed on it).
    """
    own = getattr(after, kind) - getattr(before, kind)
    children = getattr(after, f"children_{kind}") - getattr(before, f"children_{kind}")
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return round((own + children) / tick) * tick


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
            cpu0 = os.times()
            t0 = time.perf_counter()
            out = fn(item)
            dt = time.perf_counter() - t0
            if flush is not None:
                flush(item)
                if timed:
                    res.returned_samples.append(dt)
                dt = time.perf_counter() - t0
            if timed:  # user and kernel CPU of the job and its finished workers, per repeat
                cpu1 = os.times()
                res.cpu_user_s.append(cpu_delta(cpu0, cpu1, "user"))
                res.cpu_sys_s.append(cpu_delta(cpu0, cpu1, "system"))
            if after is not None:
                after(item, out, timed)
            del out
            (res.samples if timed else res.warmup_samples).append(dt)
