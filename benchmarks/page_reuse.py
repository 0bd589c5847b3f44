"""Does a write's speed depend on memory freed a moment earlier? (A property of the VM.)

Why: on the project's VM, single-file 300 MB stores took 0.16 s one day and 0.6-0.7 s the
next, with the harness changed in between (the previous build deleted right before each
timed build, then kept until the end). The VM reports freed pages to its host
(virtio-balloon free page reporting), so page cache taken from pages freed seconds ago is
cheap, and page cache taken from pages the host already reclaimed is not. This script
writes the same 300 MB array with ``np.save`` (flushed after, untimed) right after deleting
an equal file, after the same delete plus a wait, and beside the kept files, alternating.

    python benchmarks/page_reuse.py results/bench/page-reuse --wait 20 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from imgbench.core.atomic import fsync_tree


def main() -> None:
    """Write the same array under the three conditions, print the seconds of each."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="a scratch directory on the file system to test")
    ap.add_argument("--mib", type=int, default=293, help="array size (100k CIFAR images)")
    ap.add_argument("--wait", type=float, default=20.0, help="seconds between delete and write")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=False)
    data = np.random.default_rng(0).integers(0, 256, args.mib << 20, dtype=np.uint8)

    def write(name: str) -> float:
        t0 = time.perf_counter()
        np.save(args.dir / f"{name}.npy", data)
        dt = time.perf_counter() - t0
        fsync_tree(args.dir)
        return dt

    def delete(name: str) -> None:
        os.remove(args.dir / f"{name}.npy")
        fsync_tree(args.dir)

    times: dict[str, list[float]] = {
        "right after a delete": [],
        "delete, then wait": [],
        "no delete": [],
    }
    try:
        write("old")
        for k in range(args.rounds):
            delete("old")
            times["right after a delete"].append(write("old"))
            delete("old")
            time.sleep(args.wait)
            times["delete, then wait"].append(write("old"))
            times["no delete"].append(write(f"kept{k}"))
    finally:
        shutil.rmtree(args.dir)
    for what, t in times.items():
        print(f"{what:>22}: " + ", ".join(f"{x:.3f}" for x in t) + " s")


if __name__ == "__main__":
    main()
