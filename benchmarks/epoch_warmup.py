"""Is a short warm-up enough? The first timed epoch against the second, in two runs.

An epoch job runs ``epoch_warmup`` untimed epochs, then ``epoch_repeats`` timed ones. Since
2026-12-06 a warm-up epoch reads only its first ``epoch_warmup_batches`` batches. If that were
too little, the first timed epoch would pay what the warm-up used to (imports, first faults,
reader start-up) and run slower than the second. This prints, per job kind, the median and
worst ratio first / second timed epoch in each run given (e.g. the reference run, made with
whole warm-up epochs, and a run with the short one), side by side, and the time the warm-ups
took in each.

    python benchmarks/epoch_warmup.py /work/ref/results results --formats png,lmdb,hdf5,npy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("read_epoch_warm", "read_epoch_cold", "train_warm", "train_cold")


def ratios(results: Path, formats: set[str] | None) -> pd.DataFrame:
    """One row per epoch or training job: first / second timed sample, warm-up seconds."""
    rows = []
    for kind in KINDS:
        for path in sorted((results / "timings" / kind).glob("*/*/*/*.json")):
            fmt = path.parent.name
            if formats and fmt not in formats:
                continue
            r = json.loads(path.read_text())
            s = r.get("samples") or []
            if len(s) < 2 or s[1] <= 0:
                continue
            rows.append({"kind": kind, "format": fmt, "mode": path.parts[-3], "job": path.stem,
                         "first_over_second": s[0] / s[1],
                         "warmup_s": sum(r.get("warmup_samples") or [])})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="results folders")
    ap.add_argument("--formats", help="comma-separated formats to keep (default: all)")
    args = ap.parse_args()
    keep = set(args.formats.split(",")) if args.formats else None
    parts = []
    for run in args.runs:
        df = ratios(run, keep)
        if not len(df):
            raise SystemExit(f"{run}: no epoch job with two timed samples under timings/")
        g = df.groupby("kind")
        parts.append(
            pd.DataFrame(
                {
                    "jobs": g.size(),
                    "median": g["first_over_second"].median(),
                    "worst": g["first_over_second"].max(),
                    "over_1.05": g["first_over_second"].apply(lambda x: int((x > 1.05).sum())),
                    "warmup_s": g["warmup_s"].sum(),
                }
            ).add_prefix(f"{run}: ")
        )
        med, warm = np.median(df["first_over_second"]), df["warmup_s"].sum()
        print(f"{run}: first/second timed epoch, all jobs: median {med:.3f}; warm-ups {warm:.0f} s")
    print()
    print(pd.concat(parts, axis=1).round(3).T.to_string())


if __name__ == "__main__":
    main()
