"""Article vs tuned code, side by side in one process, against the physical limit.

Prints, per format: write s, read s (median of warm repeats, every read verified), the
article/tuned ratios, and the tuned read relative to a raw ``np.load`` of the same bytes and
to a plain memory copy. Checks the targets of the tuned-mode issue and says PASS/FAIL.
This is a benchmark, not a test: run it on a quiet machine.

    python benchmarks/tuned_vs_article.py --images results/data/images.npy \
        --labels results/data/labels.npy --n 100000 --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imgbench.core.atomic import fsync_tree
from imgbench.measure.verify import against_source
from imgbench.stores import get_store, modes


def timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    """Median seconds of *repeats* calls after one untimed warmup; returns the last result."""
    result = fn()
    samples = []
    for _ in range(repeats):
        del result
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--formats", default="png,lmdb,hdf5,npy")
    ap.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()

    images = np.array(np.load(args.images, mmap_mode="r")[: args.n])
    labels = np.array(np.load(args.labels, mmap_mode="r")[: args.n])
    scratch = Path(tempfile.mkdtemp(prefix="imgbench-", dir=args.dir))
    try:
        raw = scratch / "raw.npy"
        np.save(raw, images)
        t_load, _ = timed(lambda: np.load(raw), args.repeats)
        out = np.empty_like(images)
        t_copy, _ = timed(lambda: np.copyto(out, images), args.repeats)
        rows = {}
        for fmt in args.formats.split(","):
            for mode in modes(fmt):
                store = get_store(fmt, mode, workers=args.workers if mode == "tuned" else 1)
                d = scratch / f"{mode}-{fmt}"
                d.mkdir()
                t0 = time.perf_counter()
                store.write_many(d, images, labels)
                t_write = time.perf_counter() - t0
                fsync_tree(d)
                t_read, got = timed(lambda s=store, d=d: s.read_many(d), args.repeats)
                against_source(f"{mode} {fmt}", got, images, labels)
                del got
                rows[(fmt, mode)] = (t_write, t_read)
                shutil.rmtree(d)
                print(
                    f"  {mode:7s} {fmt:5s} write {t_write:8.3f} s  read {t_read:8.4f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    n = args.n
    print(
        f"\nN = {n:,} images ({images.nbytes / 2**20:.0f} MiB), workers = {args.workers}, "
        f"reads = median of {args.repeats} warm repeats, every read verified"
    )
    print(f"np.load of the same bytes: {t_load:.4f} s; memcpy: {t_copy:.4f} s\n")
    head = (
        "| format | article write s | tuned write s | write ratio | article read s | "
        "tuned read s | read ratio | tuned read / np.load |"
    )
    print(head)
    print("|" + "---|" * 8)
    for fmt in args.formats.split(","):
        a = rows.get((fmt, "article"))
        t = rows[(fmt, "tuned")]
        aw = f"{a[0]:.3f}" if a else "-"
        ar = f"{a[1]:.4f}" if a else "-"
        wr = f"{a[0] / t[0]:.2f}x" if a else "-"
        rr = f"{a[1] / t[1]:.2f}x" if a else "-"
        print(
            f"| {fmt} | {aw} | {t[0]:.3f} | {wr} | {ar} | {t[1]:.4f} | {rr} | {t[1] / t_load:.2f} |"
        )
    checks = []
    if ("hdf5", "tuned") in rows:
        checks.append(("tuned HDF5 read <= 2x np.load", rows["hdf5", "tuned"][1] <= 2 * t_load))
    if ("npy", "tuned") in rows:
        checks.append(("npy read <= 2x np.load", rows["npy", "tuned"][1] <= 2 * t_load))
    if ("lmdb", "article") in rows:
        checks.append(
            (
                "tuned LMDB read <= 0.5x article",
                rows["lmdb", "tuned"][1] <= 0.5 * rows["lmdb", "article"][1],
            )
        )
    if ("png", "article") in rows:
        speedup = rows["png", "article"][1] / rows["png", "tuned"][1]
        checks.append(
            (f"PNG tuned read >= 1.7x faster than article (got {speedup:.2f}x)", speedup >= 1.7)
        )
    print()
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
