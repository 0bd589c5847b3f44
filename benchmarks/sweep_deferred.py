"""How fast the end-of-run sweep deletes deferred many-file builds: shutil.rmtree one build
after another against ``rm -rf`` of one build per core at once (what
:func:`imgbench.core.atomic.sweep_deferred` does), on the same file system, side by side.

Each method gets fresh directories of small files and waits out ext4's 60 s window after
the last creation first (docs: ``holds_many_files``), so both start alike.

    python benchmarks/sweep_deferred.py /path/on/the/results/file/system 50000 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from imgbench.core.atomic import remove_many


def _make(root: Path, tag: str, files: int, dirs: int) -> list[Path]:
    out = []
    for d in range(dirs):
        p = root / f"{tag}{d}"
        p.mkdir(parents=True)
        for i in range(files):
            (p / f"{i}.png").write_bytes(b"x" * 3000)
        out.append(p)
    os.sync()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("files", type=int, help="files per build")
    ap.add_argument("builds", type=int)
    args = ap.parse_args()
    times = {}
    for method in ("rmtree", "sweep"):
        builds = _make(args.root / "sweep-bench", method, args.files, args.builds)
        time.sleep(65)
        t0 = time.perf_counter()
        if method == "rmtree":
            for p in builds:
                shutil.rmtree(p)
        else:
            remove_many(builds)
        times[method] = time.perf_counter() - t0
        print(f"{method}: {times[method]:.1f} s for {args.builds} x {args.files} files")
    shutil.rmtree(args.root / "sweep-bench", ignore_errors=True)
    print(f"sweep / rmtree: {times['sweep'] / times['rmtree']:.2f}")


if __name__ == "__main__":
    main()
