"""Statistics of timed samples (own module: results and timing both need it, neither
imports the other at run time)."""

from __future__ import annotations

from collections.abc import Sequence

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
