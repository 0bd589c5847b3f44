"""Repeated timing with untimed warmups, and the statistics the tables report."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max, IQR and mean of the samples (the spread reviewers ask for)."""
    a = np.asarray(samples, dtype=float)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median_s": float(med),
        "min_s": float(a.min()),
        "max_s": float(a.max()),
        "iqr_s": float(q3 - q1),
        "mean_s": float(a.mean()),
        "n_samples": int(a.size),
    }


def measure(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int = 0,
    before: Callable[[bool], None] | None = None,
    after: Callable[[Any, bool], None] | None = None,
    warmups: list[float] | None = None,
) -> list[float]:
    """Time ``fn()`` *repeats* times after *warmup* untimed calls.

    ``before(timed)`` runs before each call and ``after(result, timed)`` after it, both
    outside the timed section (eviction, fresh directories, verification). Warmup
    durations are appended to *warmups* when given (they count as measurement work, not
    pipeline overhead, in the overhead accounting).
    """
    samples: list[float] = []
    for k in range(warmup + repeats):
        timed = k >= warmup
        if before is not None:
            before(timed)
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        if after is not None:
            after(result, timed)
        del result
        if timed:
            samples.append(dt)
        elif warmups is not None:
            warmups.append(dt)
    return samples


@dataclass
class Result:
    """One timed measurement as written to ``results/timings/**.json``."""

    format: str
    mode: str
    operation: str  # write_many | read_many | write_one | read_one
    cache: str  # warm | cold | none (writes)
    n_images: int
    samples: list[float] = field(default_factory=list)
    warmup_samples: list[float] = field(default_factory=list)
    repeats: int = 0
    warmup: int = 0
    threads: int = 1
    verified: bool = False
    resident_fraction: list[float] = field(default_factory=list)
    evict_method: str | None = None
    config_hash: str = ""
    node: str = field(default_factory=socket.gethostname)
    start: float = field(default_factory=time.time)
    end: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def finish(self) -> dict[str, Any]:
        """Stamp the end time and return the JSON-ready dict, statistics included."""
        self.end = time.time()
        out = asdict(self)
        out["stats"] = summarize(self.samples)
        return out
