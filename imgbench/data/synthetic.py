"""Generate a small archive in the official cifar-10-python.tar.gz layout (tests, offline tries).

Random pixels and labels, pickled exactly like the real batches (dict with b"data" as an
(N, 3072) uint8 array in R, G, B planes and b"labels" as a list of ints).
"""

from __future__ import annotations

import argparse
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from imgbench.data.cifar import BATCHES, PREFIX


def batch_dict(n: int, rng: np.random.Generator, name: str) -> dict:
    """One CIFAR-style batch of *n* random images."""
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def make_archive(
    out: Path, per_batch: int = 40, seed: int = 0, members: dict[str, object] | None = None
) -> Path:
    """Write a gzip tar with the five training batches (+ test batch and meta).

    *members* overrides or adds raw member payloads (objects are pickled, bytes are
    written as they are), which the tests use to build broken archives.
    """
    rng = np.random.default_rng(seed)
    content: dict[str, object] = {b: batch_dict(per_batch, rng, b) for b in BATCHES}
    content["test_batch"] = batch_dict(per_batch, rng, "test")
    content["batches.meta"] = {b"label_names": [b"c%d" % i for i in range(10)]}
    content.update(members or {})
    out = Path(out)
    with tarfile.open(out, "w:gz") as tf:
        for name, obj in content.items():
            payload = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name if "/" in name else PREFIX + name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return out


def main() -> None:
    """CLI: python -m imgbench.data.synthetic OUT.tar.gz [--per-batch N]."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-batch", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    make_archive(args.out, args.per_batch, args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
