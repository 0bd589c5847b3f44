"""How cold is "cold"? One store read cold with data-only eviction and with a full one.

Why: without root, eviction drops the store's file pages but inodes and directory entries
stay cached, which flatters one-file-per-image stores (every PNG file needs a lookup and an
inode read when nothing is cached). As root, ``cold_cache: auto`` also drops the inode and
dentry caches (scope ``full``). This script reads one built store with both scopes, side by
side in one run (alternating, so machine noise hits both), every read verified, and prints
the medians and their ratio.

    python benchmarks/cold_scope.py results/stores/cifar32/article/png/10000 \\
        --images results/data/cifar32/images.npy --labels results/data/cifar32/labels.npy
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from imgbench import experiments
from imgbench.core.job import Job
from imgbench.measure.cache import can_drop_caches


def main() -> None:
    """Parse arguments, read the store cold both ways, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path, help="results/stores/<data>/<mode>/<fmt>/<n>")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not can_drop_caches():
        raise SystemExit("needs root: the full scope drops the inode and dentry caches")
    mode, fmt, n = args.store.parts[-3], args.store.parts[-2], int(args.store.parts[-1])
    times: dict[str, list[float]] = {"data": [], "full": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for scope, evict in (("data", "fadvise"), ("full", "auto")):
                job = Job(
                    fmt,
                    mode,
                    n,
                    args.images,
                    args.labels,
                    args.store,
                    Path(d) / f"{scope}{r}.json",
                    repeats=1,
                    warmup=0,
                    cache="cold",
                    evict=evict,
                    workers=1,
                )
                res = experiments.read_many(job)
                assert res["cache_scope"] == scope and res["verified"]
                times[scope] += res["samples"]
    data, full = statistics.median(times["data"]), statistics.median(times["full"])
    print(f"{mode} {fmt} n={n}, {args.rounds} rounds, medians (all samples):")
    print(f"  cold, scope data (file pages evicted):          {data:.3f} s  {times['data']}")
    print(f"  cold, scope full (+ inodes and dentries dropped): {full:.3f} s  {times['full']}")
    print(f"  full / data = {full / data:.2f}")


if __name__ == "__main__":
    main()
