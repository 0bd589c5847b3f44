"""Which decoder reads encoded stores (``decoder`` in config.yaml): in-memory decode of the
same JPEG (and PNG) files with every installed decoder, side by side in one run.

    python benchmarks/decoders.py [FOLDER_OR_ZIP] [--images 5000] [--rounds 5]

FOLDER_OR_ZIP: an image folder, or a zip of one (default ../shared/data/cifar10-jpeg.zip).
Prints µs per image (best round) per decoder and file type, the ratio to Pillow, whether
each decoder's pixels equal Pillow's (libjpeg-turbo's fast path may differ by upsampling;
each decoder's output is then its own reference, as the pipeline verifies), and the speed-up
of decoding with 2 threads as the encoded reads do (``imgbench.data.decode.decode_all``).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from imgbench.data import decode  # the installed package (pip install -e .)


def _blobs(src: Path, n: int) -> list[bytes]:
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as z:
            names = sorted(x for x in z.namelist() if x.lower().endswith((".jpg", ".jpeg")))
            return [z.read(x) for x in names[:n]]
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return [p.read_bytes() for p in files[:n]]


def _png(blobs: list[bytes]) -> list[bytes]:
    from PIL import Image

    out = []
    for b in blobs:
        buf = io.BytesIO()
        Image.fromarray(decode.pillow(b)).save(buf, "PNG", compress_level=6)
        out.append(buf.getvalue())
    return out


def _time(fn, blobs: list[bytes], rounds: int, threads: int = 1) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        decode.decode_all(blobs, fn, threads)
        best = min(best, time.perf_counter() - t0)
    return best / len(blobs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[2]
    ap.add_argument("src", nargs="?", type=Path, default=here / "shared/data/cifar10-jpeg.zip")
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    jpegs = _blobs(a.src, a.images)
    if not jpegs:
        sys.exit(f"{a.src}: no .jpg files found; pass an image folder or a zip of one")
    sets = {"jpeg": jpegs, "png (same images, lossless)": _png(jpegs)}
    print(f"{len(jpegs)} images from {a.src}, best of {a.rounds} rounds, one thread\n")
    head = f"{'file type':30s} {'decoder':12s} {'us/image':>9s} {'vs pillow':>9s}"
    print(f"{head}  same pixels  2 threads")
    for kind, blobs in sets.items():
        ref = [decode.pillow(b) for b in blobs]
        base = None
        for name in decode.DECODERS:
            try:
                fn = decode.get(name)
            except Exception as exc:  # a decoder that is not installed: say so, go on
                print(f"{kind:30s} {name:12s} not installed ({exc})")
                continue
            same = all(np.array_equal(fn(b), r) for b, r in zip(blobs, ref, strict=True))
            us = _time(fn, blobs, a.rounds)
            two = _time(fn, blobs, a.rounds, threads=2)
            base = base or us
            row = f"{kind:30s} {name:12s} {us:9.1f} {us / base:8.2f}x"
            print(f"{row}  {same!s:11s}  {us / two:.2f}x")


if __name__ == "__main__":
    main()
