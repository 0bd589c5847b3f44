"""Raw ``.npy`` arrays: the physical-limit baseline (just the bytes, no format overhead).

Writes ``images.npy`` and ``labels.npy``; reads them fully into memory with ``np.load``
(a lazy memmap would not be a read); batches by fancy indexing a memory map. Only a tuned
mode: the article had no such store. With several writers (config ``writers``) the parent
writes the ``.npy`` header and forked processes ``pwrite`` their contiguous shares into the
one file: byte for byte what ``np.save`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgbench.stores.base import PARALLEL_MIN_IMAGES, Store, fork_map, ranges

# Fork writers inherit these module globals, so nothing large is pickled through pipes.
_SHARED: dict = {}


def _pwrite_range(bounds: tuple[int, int]) -> None:
    images, file, offset = _SHARED["images"], _SHARED["file"], _SHARED["offset"]
    a, b = bounds
    view = memoryview(images[a:b]).cast("B")
    pos = offset + a * images[0].nbytes
    fd = os.open(file, os.O_WRONLY | os.O_CLOEXEC)
    try:
        while view:  # a short write (disk nearly full) must not leave a hole silently
            done = os.pwrite(fd, view, pos)
            view, pos = view[done:], pos + done
    finally:
        os.close(fd)


def _save_parallel(file: Path, images: np.ndarray, workers: int) -> None:
    with open(file, "wb") as fh:
        header = np.lib.format.header_data_from_array_1_0(images)
        np.lib.format.write_array_header_1_0(fh, header)
        offset = fh.tell()
        fh.truncate(offset + images.nbytes)
    _SHARED.update(images=images, file=file, offset=offset)
    try:
        fork_map(_pwrite_range, ranges(len(images), workers), workers)
    finally:
        _SHARED.clear()


class NpyStore(Store):
    format = "npy"
    mode = "tuned"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if self.workers > 1 and len(images) >= PARALLEL_MIN_IMAGES:
            _save_parallel(path / "images.npy", images, self.workers)
        else:
            np.save(path / "images.npy", images)
        np.save(path / "labels.npy", np.asarray(labels))

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return np.load(path / "images.npy"), np.load(path / "labels.npy")

    def read_batch(self, path: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npy", mmap_mode="r")
        return np.asarray(images[idx]), np.asarray(labels[idx])

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        images = np.load(path / "images.npy", mmap_mode="r")
        return np.array(images[0]), int(np.load(path / "labels.npy")[0])
