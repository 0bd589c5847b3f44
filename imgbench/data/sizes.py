"""Image sizes: one data variant per size (``cifar<size>``), the same raw bytes per cutoff.

Why: CIFAR-10's 3 KB images are not what most training sets hold, and the article says its
conclusions change with size (LMDB overflow pages at 256 x 256 x 3) without measuring it.
Each size is CIFAR resized (Pillow, ``resize_filter``); to keep a sweep on one disk and in a
job's memory, a size holds the same raw bytes as the 32-px data at the same cutoff position:
cutoffs scaled by 32^2 / size^2, at least 10 images. Upsampled CIFAR is smoother than a
photograph, so it compresses better: PNG sizes and speeds at large sizes flatter PNG.

Imported by the DAG (data keys, scaled cutoffs, the disk estimate): numpy only; the resize
step imports Pillow itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from imgbench.core.atomic import atomic_path
from imgbench.core.errors import DataError

BASE = 32  # CIFAR-10's own size: the article's data
CHUNK = 1000  # images resized per step: memory stays ~CHUNK images whatever the size
FILTERS = ("nearest", "bilinear", "bicubic", "lanczos")


#: Data sources: CIFAR-10 (the article's) or your own folder (``images_dir``).
SOURCES = ("cifar", "folder")
#: The key suffix of encoded data (``payload: encoded``): ``cifarenc``, ``folderenc``.
ENCODED = "enc"


def data_key(size: int, source: str = "cifar") -> str:
    """The ``{data}`` key of one size of decoded pixels (``cifar64``, ``folder224``)."""
    return f"{source}{int(size)}"


def encoded_key(source: str = "cifar") -> str:
    """The ``{data}`` key of a source's encoded images (file bytes, sizes as they are)."""
    return f"{source}{ENCODED}"


def is_encoded(data: str) -> bool:
    """True for encoded data (stores hold file bytes; reads decode)."""
    return data.endswith(ENCODED) and data[: -len(ENCODED)] in SOURCES


def main_pixels(datas: Iterable[str], source: str = "") -> str | None:
    """The pixel data set a run's article figures and its pixels-vs-encoded table use: CIFAR
    at 32 px when present, else the smallest size (of *source* only, if given)."""
    pixel = [d for d in set(datas) if d.startswith(source) and not is_encoded(d)]
    return min(pixel, key=lambda d: (d != "cifar32", size_of(d)), default=None)


def size_of(data: str) -> int:
    """The image size of a pixel data key (``cifar64`` -> 64)."""
    m = re.fullmatch(rf"(?:{'|'.join(SOURCES)})(\d+)", data)
    if not m:
        raise ValueError(f"not a pixel data key: {data!r}")
    return int(m[1])


def image_bytes(data: str) -> float:
    """Raw bytes of one decoded image (size x size x 3 uint8); NaN for encoded data, whose
    images differ in size."""
    return float("nan") if is_encoded(data) else size_of(data) ** 2 * 3


def scaled(n: int, size: int) -> int:
    """How many *size*-px images hold the raw bytes of *n* 32-px images (at least 10)."""
    return max(10, int(n) * BASE**2 // int(size) ** 2)


def disk_estimate(datasets: Mapping[str, list[int]], combos: int) -> int:
    """Raw pixel bytes of every store a run builds: the dry-run warning before a sweep."""
    return sum(n * image_bytes(d) for d, cuts in datasets.items() for n in cuts) * combos


def resize(
    images_in: Path,
    labels_in: Path,
    images: Path,
    labels: Path,
    data: str,
    n_images: int,
    resize_filter: str = "bicubic",
) -> None:
    """Resize the first *n_images* 32-px images to this variant's size, CHUNK at a time from
    a memory map into a memory-mapped output: never the whole data set in memory."""
    from PIL import Image

    size = size_of(data)
    if resize_filter not in FILTERS:
        raise DataError(f"resize_filter {resize_filter!r}: use one of {', '.join(FILTERS)}")
    method = getattr(Image.Resampling, resize_filter.upper())
    src = np.load(images_in, mmap_mode="r")
    src_labels = np.load(labels_in, mmap_mode="r")
    if len(src) < n_images:
        raise DataError(
            f"{images_in}: {len(src)} images, {n_images} needed for {data}; raise n_images"
        )
    with atomic_path(Path(images)) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(n_images, size, size, src.shape[-1])
        )
        for s in range(0, n_images, CHUNK):
            for i in range(s, min(n_images, s + CHUNK)):
                out[i] = np.asarray(Image.fromarray(src[i]).resize((size, size), method))
            out.flush()
        del out
    with atomic_path(Path(labels)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(src_labels[:n_images]))
