"""Raw ``.npy`` arrays: the physical-limit baseline (just the bytes, no format overhead).

Writes ``images.npy`` and ``labels.npy``; reads them fully into memory with ``np.load``
(a lazy memmap would not be a read); batches by fancy indexing a memory map. Only a tuned
mode: the article had no such store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgbench.stores.base import Store


class NpyStore(Store):
    format = "npy"
    mode = "tuned"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        np.save(path / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
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
