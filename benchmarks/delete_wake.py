"""Tuned PNG builds in a mass delete's wake: quiet, then right after deleting builds.

Why: the pipeline's 100,000-file PNG builds sometimes took 2-4x longer, with up to 45 s of
kernel CPU, at the same user CPU. A profile of a slow build (``perf record -a -g``) put the
kernel time in ext4's inode allocator: ``__ext4_new_inode`` -> ``find_inode_bit`` ->
``recently_deleted``, which on a file system *without a journal* skips every free inode
deleted in the last 60 s (360 s while its inode-table block is dirty), reading that block
for each, while the creating process holds the directory's lock; a second writer spins on
that lock (``rwsem_spin_on_owner``). This script shows it with the store's own code: it
waits for a quiet file system, builds the store with 1 and 2 writers (kept), deletes both
builds, builds again at once, and prints wall, user and kernel seconds and the ratios.
Every build is checked against the source (untimed). One round takes ~10 minutes.

    python benchmarks/delete_wake.py --archive cifar-10-python.tar.gz --dir results/bench/wake
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from imgbench.core.atomic import fsync_tree
from imgbench.data.cifar import read_cifar_archive
from imgbench.stores import get_store


def journal(path: Path) -> str:
    """What this kernel says about the journal of the ext4 file system holding *path*."""
    dev = os.stat(path).st_dev
    for entry in Path("/sys/fs/ext4").glob("*/journal_task"):
        block = Path("/dev") / entry.parent.name
        if block.exists() and os.stat(block).st_rdev == dev:
            task = entry.read_text().strip()
            return "none (no journal)" if task == "<none>" else f"journal ({task})"
    return "unknown (not ext4, or the device is not listed)"


def build(path: Path, images: np.ndarray, labels: np.ndarray, writers: int) -> tuple[float, ...]:
    """One timed build (until the writes return), flushed after; wall, user and sys seconds."""
    path.mkdir()
    store = get_store("png", "tuned", workers=writers)
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    t0 = time.perf_counter()
    store.write_many(path, images, labels)
    wall = time.perf_counter() - t0
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    user = sum(a.ru_utime - b.ru_utime for a, b in zip(after, usage, strict=True))
    sys_ = sum(a.ru_stime - b.ru_stime for a, b in zip(after, usage, strict=True))
    fsync_tree(path)
    got = store.read_batch(path, [0, len(images) // 2, len(images) - 1])
    if not np.array_equal(got[0], images[[0, len(images) // 2, len(images) - 1]]):
        raise SystemExit(f"{path}: the build does not read back as its source")
    return wall, user, sys_


def main() -> None:
    """Quiet builds, delete, builds in the delete's wake; print the table and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, required=True, help="cifar-10-python.tar.gz")
    ap.add_argument("--dir", type=Path, required=True, help="scratch directory (created)")
    ap.add_argument("--quiet", type=float, default=400.0, help="seconds to wait first")
    ap.add_argument("--n", type=int, default=100_000, help="images (the archive's, doubled)")
    args = ap.parse_args()
    images, labels = read_cifar_archive(args.archive)
    images = np.concatenate([images, images])[: args.n]
    labels = np.concatenate([labels, labels])[: args.n]
    args.dir.mkdir(parents=True, exist_ok=False)
    print(f"{args.dir}: ext4 journal: {journal(args.dir)}", flush=True)
    times: dict[tuple[str, int], tuple[float, ...]] = {}
    try:
        time.sleep(args.quiet)  # no delete of ours in the recency window (360 s at most)
        for phase in ("quiet", "right after a delete"):
            if phase != "quiet":
                t0 = time.perf_counter()
                for old in list(args.dir.iterdir()):
                    shutil.rmtree(old)
                fsync_tree(args.dir)
                print(f"deleted {2 * len(images):,} files in {time.perf_counter() - t0:.1f} s")
            for writers in (1, 2):
                times[phase, writers] = build(args.dir / f"w{writers}", images, labels, writers)
                wall, user, sys_ = times[phase, writers]
                print(
                    f"{phase:21} {writers} writer(s): {wall:6.2f} s, user {user:5.1f} s, "
                    f"sys {sys_:5.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(args.dir)
    for writers in (1, 2):
        ratio = times["right after a delete", writers][0] / times["quiet", writers][0]
        print(f"{writers} writer(s): right after a delete / quiet = {ratio:.2f}")
    for phase in ("quiet", "right after a delete"):
        print(f"{phase}: 1 -> 2 writers {times[phase, 1][0] / times[phase, 2][0]:.2f}x")


if __name__ == "__main__":
    main()
