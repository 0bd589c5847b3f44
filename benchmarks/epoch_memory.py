"""Issue 11's memory budget, measured (not a test): peak PSS of an epoch job with 4 readers.

Why a script: memory depends on the machine and on what is cached; it is measured here on the
stores the pipeline built, one format after another, and printed. PSS counts a shared page
once across the job's processes (the shared output array, a memory-mapped store), which RSS
would count once per reader. Sampled every 50 ms over the job and its forked readers, so a
shorter peak can be missed.

    python benchmarks/epoch_memory.py --stores results/stores/cifar32 --data results/data/cifar32
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil

from imgbench import experiments
from imgbench.core.job import Job
from imgbench.stores import FORMATS


def peak_pss(job: Job) -> tuple[int, float]:
    """(peak PSS bytes of this process and its children, images/s) over one epoch."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        r = experiments.read_epoch(job)
    finally:
        done.set()
        t.join()
    return peak[0], job.n / r["samples"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stores", type=Path, default=Path("results/stores/cifar32"))
    ap.add_argument("--data", type=Path, default=Path("results/data/cifar32"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--readers", type=int, default=4)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp())
    for fmt in FORMATS:
        store = args.stores / "tuned" / fmt / str(args.n)
        if not store.is_dir():
            continue
        job = Job(
            fmt=fmt,
            mode="tuned",
            n=args.n,
            images=args.data / "images.npy",
            labels=args.data / "labels.npy",
            store=store,
            result=out / f"{fmt}.json",
            repeats=1,
            warmup=0,
            cache="warm",
            pattern="shuffled",
            readers=args.readers,
        )
        pss, speed = peak_pss(job)
        print(
            f"{fmt:8s} {args.readers} readers: peak PSS {pss / 2**20:,.0f} MiB "
            f"(budget 1,536), {speed:,.0f} images/s, verified"
        )


if __name__ == "__main__":
    main()
