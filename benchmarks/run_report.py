"""Where the time and memory of a finished pipeline run went.

Reads a run's ``results/benchmarks/**.tsv`` (Snakemake's per-job wall time and max RSS) and
``results/timings/**.json`` (the in-process timed sections), and prints per-stage wall time,
the largest peak memory per stage, and the pipeline overhead: total wall time minus the time
spent inside the timed operations (samples and warmups).

    python benchmarks/run_report.py results --wall 1234.5
    python benchmarks/run_report.py results --formats png,lmdb,hdf5,npy

``--formats`` keeps only the jobs of those formats (and the jobs of no format: data, device,
tables): what a run of fewer formats would have spent, job by job, measured in this run
(Snakemake's own gaps between jobs are not in it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imgbench.pipeline.publish import job_times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--wall", type=float, help="total wall time of the run, seconds")
    ap.add_argument("--formats", help="comma-separated formats to keep (default: all)")
    args = ap.parse_args()
    keep = set(args.formats.split(",")) if args.formats else None

    def kept(rel: Path) -> bool:
        """A job of no format, or of a kept one (<kind>/<data>/<mode>/<fmt>[/...])."""
        return keep is None or len(rel.parts) < 4 or rel.parts[3].split(".")[0] in keep

    jobs = job_times(args.results / "benchmarks")  # the same table publish writes
    if keep is not None:
        jobs = jobs[jobs["format"].isna() | jobs["format"].isin(keep)]
    jobs = jobs.rename(columns={"seconds": "s"})
    per_rule = jobs.groupby("rule").agg(
        jobs=("s", "size"), wall_s=("s", "sum"), max_rss_mb=("max_rss_mb", "max")
    )
    print(per_rule.sort_values("wall_s", ascending=False).to_string(float_format="%.1f"))

    timed = warm = 0.0
    for p in (args.results / "timings").rglob("*.json"):
        if not kept(p.relative_to(args.results / "timings")):
            continue
        r = json.loads(p.read_text())
        # capped samples are epoch seconds extrapolated from the window: count the window
        timed += (
            r["extra"].get("window_seconds") or 0 if r["cache"] == "capped" else sum(r["samples"])
        )
        warm += sum(r.get("warmup_samples", []))
    jobs_total = jobs["s"].sum()
    print(f"\n{len(jobs)} jobs; sum of job wall times: {jobs_total:.1f} s")
    print(f"inside timed sections: {timed:.1f} s (+ {warm:.1f} s untimed warmups)")
    if args.wall:
        overhead = args.wall - timed - warm
        print(
            f"total wall time: {args.wall:.1f} s; overhead (wall - timed - warmups): "
            f"{overhead:.1f} s = {100 * overhead / args.wall:.1f} %"
        )
    print(f"largest peak RSS of any job: {per_rule['max_rss_mb'].max():.0f} MB")


if __name__ == "__main__":
    main()
