"""Issue 11's writer target, measured side by side in one run (not a test).

Target: the tuned PNG store's speed-up from 1 to 2 writers is >= 90 % of the speed-up of pure
in-memory PNG encoding from 1 to 2 processes (the machine's own limit for this work).

Why a script: both speed-ups are ratios on a shared, noisy machine; they are measured here
back to back, alternating, each build fresh, durable (fsync of every file, as the pipeline
times builds) and verified after timing, and printed with PASS/FAIL.

    python benchmarks/writers_target.py --data results/data/cifar32 --n 100000 --repeats 3 \\
        --scratch results/scratch-writers
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.core.atomic import fsync_tree
from imgbench.data.cifar import load_source
from imgbench.stores import get_store
from imgbench.stores.base import fork_map, ranges

_SHARED: dict = {}


def _encode(bounds: tuple[int, int]) -> None:
    images, level = _SHARED["images"], _SHARED["level"]
    for i in range(*bounds):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="PNG", compress_level=level)


def encode_s(images: np.ndarray, processes: int, level: int) -> float:
    """Seconds to PNG-encode every image in memory with *processes* forked processes (the
    same ranges the tuned store's pool uses)."""
    _SHARED.update(images=images, level=level)
    t0 = time.perf_counter()
    fork_map(_encode, ranges(len(images), processes * 4), processes)
    return time.perf_counter() - t0


def build_s(images: np.ndarray, labels: np.ndarray, writers: int, scratch: Path) -> float:
    """Seconds to build the tuned PNG store with *writers* processes, until durable; the
    store is verified (untimed) and deleted."""
    store = get_store("png", "tuned", workers=writers)
    # a fresh directory each build, deleted only after every build: no build runs in the wake
    # of a mass delete (the pipeline's builds took 55-67 s right after one, 8-16 s without)
    path = scratch / f"w{writers}-{len(list(scratch.glob('w*')))}"
    path.mkdir(parents=True)
    fsync_tree(path)
    t0 = time.perf_counter()
    store.write_many(path, images, labels)
    fsync_tree(path)
    dt = time.perf_counter() - t0
    got, got_labels = get_store("png", "tuned", workers=2).read_many(path)
    if not (np.array_equal(got, images) and np.array_equal(got_labels, labels)):
        raise SystemExit(f"{path}: the store does not round-trip")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("results/data/cifar32"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--scratch", type=Path, default=Path("results/scratch-writers"))
    args = ap.parse_args()
    images, labels = load_source(args.data / "images.npy", args.data / "labels.npy", args.n)
    images, labels = np.array(images), np.array(labels)
    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)

    enc: dict[int, list[float]] = {1: [], 2: []}
    bld: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):  # alternate, so drift hits both sides alike
        for p in (1, 2):
            enc[p].append(encode_s(images, p, args.level))
            bld[p].append(build_s(images, labels, p, args.scratch))
    shutil.rmtree(args.scratch, ignore_errors=True)

    med = {
        k: {p: statistics.median(v) for p, v in d.items()} for k, d in (("enc", enc), ("bld", bld))
    }
    enc_up = med["enc"][1] / med["enc"][2]
    bld_up = med["bld"][1] / med["bld"][2]
    print(f"{args.n:,} images, median of {args.repeats}, level {args.level}")
    print(
        f"in-memory encode: 1 process {med['enc'][1]:.2f} s, 2 processes {med['enc'][2]:.2f} s "
        f"-> {enc_up:.2f}x"
    )
    print(
        f"tuned PNG store (durable): 1 writer {med['bld'][1]:.2f} s, 2 writers "
        f"{med['bld'][2]:.2f} s -> {bld_up:.2f}x"
    )
    ratio = bld_up / enc_up
    print(
        f"store speed-up / encode speed-up = {ratio:.0%} (target >= 90 %): "
        f"{'PASS' if ratio >= 0.9 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
