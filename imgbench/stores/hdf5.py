"""HDF5 (h5py): one file with an ``images`` and a labels (``meta``) dataset.

article: datasets ``images`` and ``meta`` of type STD_U8BE, read back with
``np.array(file["/images"]).astype("uint8")``. The article opened the file "r+" and never
closed it; we open read-only and close it, since a dangling handle would defeat
cold-cache eviction and "r+" can touch the file.
tuned: native uint8 datasets (contiguous by default, chunking and compression as
options), ``read_direct`` into preallocated arrays, batches read in sorted order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from imgbench.stores.base import Store

FILE = "store.h5"


class ArticleHdf5(Store):
    format = "hdf5"
    mode = "article"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        file = h5py.File(path / FILE, "w")
        file.create_dataset("images", np.shape(images), h5py.h5t.STD_U8BE, data=images)
        file.create_dataset("meta", np.shape(labels), h5py.h5t.STD_U8BE, data=labels)
        file.close()

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            images = np.array(file["/images"]).astype("uint8")
            labels = np.array(file["/meta"]).astype("uint8")
        return images, labels

    def read_batch(self, path: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            return self._batch(file, indices)

    @staticmethod
    def _batch(file: h5py.File, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        # The article's single-image read, once per index.
        images = [np.array(file["/images"][i]).astype("uint8") for i in indices]
        labels = [int(np.array(file["/meta"][i]).astype("uint8")) for i in indices]
        return np.array(images), np.array(labels, dtype=np.uint8)

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        with h5py.File(path / FILE, "r") as file:
            yield lambda indices: self._batch(file, indices)


class TunedHdf5(Store):
    format = "hdf5"
    mode = "tuned"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        chunk = int(self.options["hdf5_chunk_images"] or 0)
        compression = self.options["hdf5_compression"]
        layout: dict = {}
        if chunk or compression:  # compression needs chunks; default chunk = 1024 images
            rows = max(1, min(len(images), chunk or 1024))
            layout = {"chunks": (rows, *images.shape[1:]), "compression": compression}
        with h5py.File(path / FILE, "w") as file:
            file.create_dataset("images", data=images, dtype=np.uint8, **layout)
            file.create_dataset("meta", data=np.asarray(labels))

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            ds, meta = file["images"], file["meta"]
            images = np.empty(ds.shape, dtype=np.uint8)
            labels = np.empty(meta.shape, dtype=meta.dtype)
            if images.size:
                ds.read_direct(images)
            if labels.size:
                meta.read_direct(labels)
        return images, labels

    def read_batch(self, path: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            return self._batch(file, indices)

    @staticmethod
    def _batch(file: h5py.File, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        # h5py fancy indexing needs increasing unique indices: read sorted, then reorder.
        idx = np.asarray(indices, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return file["images"][uniq][inverse], file["meta"][uniq][inverse]

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        with h5py.File(path / FILE, "r") as file:
            yield lambda indices: self._batch(file, indices)

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        with h5py.File(path / FILE, "r") as file:
            return file["images"][0], int(file["meta"][0])
