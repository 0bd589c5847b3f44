"""Clean-build reference: the article's own code writing N PNG files on a quiet file system.

Why this exists: the pipeline's gate compares every timed repeat of its article-mode PNG
store (100,000 files) with "a clean build by the article's own code". Measured on the
benchmark VM (ext4 mounted with ``discard``), 100k-file builds ranged 16-73 s: user time
stays at ~12 s, the rest is kernel (sys) time, in spells seen right after big deletes (the
pipeline's own repeats: 65-67 s after a delete, 16 s without) but also without one (29
builds, 2026-11-29). A reference taken in such a spell would hide the artefact. So this
script times the article's loop, and only that loop, with nothing deleted shortly before it:

* sync, then sleep ``--settle`` seconds before the first repeat;
* each repeat builds into a brand-new directory (the article's loop, verbatim:
  ``Image.fromarray(images[i]).save(dir / f"{i}.png")``), untimed work excluded;
* after a repeat the build is removed *outside* the timer, synced, and the settle time is
  waited again, so at most one build exists at a time (disk use stays bounded).

It prints every repeat (wall, user and sys CPU seconds), the median/min/max and one JSON
line ``{"clean_png_build_s": median, ...}``; ``--json OUT`` also writes that JSON to a file.
This is a benchmark, not a test: run it on a quiet machine, on the file system you gate.

    python benchmarks/png_clean_build.py --images results/data/images.npy --dir results/tmp
    python benchmarks/png_clean_build.py --archive cifar-10-python.tar.gz --n 100000 \
        --dir results/tmp --repeats 3 --settle 30 --json results/clean_png_build.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def load_images(images: Path | None, archive: Path | None, n: int) -> np.ndarray:
    """Return an (n, 32, 32, 3) uint8 array from a .npy, or from the CIFAR archive repeated."""
    if images is not None:
        arr = np.load(images, mmap_mode="r")
    else:
        # The archive is untrusted: read it through the project's validating reader (safe
        # unpickler, bounded member sizes) instead of a bare pickle.load.
        from imgbench.data.cifar import read_cifar_archive

        assert archive is not None  # argparse: exactly one of --images / --archive
        arr, _ = read_cifar_archive(archive)
        if len(arr) == 0:
            raise SystemExit(f"{archive}: no images")
        # the article doubles the 50,000 training images to 100,000
        arr = np.concatenate([arr] * -(-n // len(arr)))
    if arr.ndim != 4 or arr.shape[1:] != (32, 32, 3) or arr.dtype != np.uint8:
        raise SystemExit(f"expected (N, 32, 32, 3) uint8 images, got {arr.shape} {arr.dtype}")
    if len(arr) < n:
        raise SystemExit(f"only {len(arr)} images available, --n asks for {n}")
    return np.ascontiguousarray(arr[:n])


def sync_dir(path: Path) -> None:
    """Flush the file system holding *path* (``syncfs(2)`` where available, else ``sync``)."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def settle(path: Path, seconds: float) -> None:
    """Sync, then leave the file system (and the VM's memory) alone for *seconds*."""
    sync_dir(path)
    os.sync()
    time.sleep(seconds)


def article_build(images: np.ndarray, out: Path) -> None:
    """The Real Python article's PNG store, verbatim: one PNG file per image."""
    for i in range(len(images)):
        Image.fromarray(images[i]).save(out / f"{i}.png")


def timed_build(images: np.ndarray, out: Path) -> dict[str, float]:
    """Build into the new directory *out*; return wall, user and sys seconds of the loop."""
    out.mkdir()
    t0, c0 = time.perf_counter(), os.times()
    article_build(images, out)
    t1, c1 = time.perf_counter(), os.times()
    return {"wall": t1 - t0, "user": c1.user - c0.user, "sys": c1.system - c0.system}


def mount_of(path: Path) -> dict[str, str]:
    """Device, mount point and options of the file system holding *path* (Linux only)."""
    path = path.resolve()
    best: dict[str, str] = {}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, mnt, fstype, opts = line.split()[:4]
                mnt = mnt.replace("\\040", " ")
                if path.is_relative_to(mnt) and len(mnt) >= len(best.get("mount", "")):
                    best = {"device": dev, "mount": mnt, "fstype": fstype, "options": opts}
    except OSError:
        pass
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help=".npy of (N, 32, 32, 3) uint8 images")
    src.add_argument("--archive", type=Path, help="cifar-10-python.tar.gz (repeated to --n)")
    ap.add_argument("--n", type=int, default=100_000, help="PNG files per build")
    ap.add_argument("--dir", type=Path, required=True, help="scratch dir on the measured fs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settle", type=float, default=30.0, help="seconds to wait after sync")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON line here")
    args = ap.parse_args()
    if args.n < 1 or args.repeats < 1 or args.settle < 0:
        ap.error("--n and --repeats must be >= 1 and --settle >= 0")

    images = load_images(args.images, args.archive, args.n)
    args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="png-clean-build-", dir=args.dir))
    fs = mount_of(scratch)
    print(f"{args.n} PNG files x {args.repeats} repeats in {scratch} ({fs or 'unknown fs'})")
    runs: list[dict[str, float]] = []
    try:
        print(f"sync + settle {args.settle:g} s before the first build", flush=True)
        settle(scratch, args.settle)
        for r in range(args.repeats):
            out = scratch / f"build-{r}"
            run = timed_build(images, out)
            runs.append(run)
            print(
                f"repeat {r + 1}/{args.repeats}: {run['wall']:.2f} s wall, "
                f"{run['user']:.2f} s user, {run['sys']:.2f} s sys",
                flush=True,
            )
            # untimed: remove this build, flush, and let the fs/VM settle before the next one
            shutil.rmtree(out)
            if r + 1 < args.repeats:
                settle(scratch, args.settle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.sync()

    walls = [r["wall"] for r in runs]
    result = {
        "clean_png_build_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "samples_s": walls,
        "user_s": [r["user"] for r in runs],
        "sys_s": [r["sys"] for r in runs],
        "n": args.n,
        "repeats": args.repeats,
        "settle_s": args.settle,
        "dir": str(args.dir.resolve()),
        "fs": fs,
    }
    print(
        f"clean PNG build of {args.n}: median {result['clean_png_build_s']:.2f} s "
        f"(min {result['min_s']:.2f}, max {result['max_s']:.2f})"
    )
    line = json.dumps(result)
    print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
