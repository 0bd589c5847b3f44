"""HDF5 (h5py): one file with an ``images`` and a labels dataset.

article: datasets ``images`` and ``meta`` of type STD_U8BE, read back with
``np.array(file["/images"]).astype("uint8")``. The article opened the file "r+" and never
closed it; we open read-only and close it, since a dangling handle would defeat
cold-cache eviction and "r+" can touch the file.
tuned: native uint8 datasets (contiguous by default, chunking and compression as
options), ``read_direct`` into preallocated arrays.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from imgbench.stores.base import Store

FILE = "store.h5"


class ArticleHdf5(Store):
    format = "hdf5"
    mode = "article"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        with h5py.File(path / FILE, "w") as file:
            file.create_dataset("images", np.shape(images), h5py.h5t.STD_U8BE, data=images)
            file.create_dataset("meta", np.shape(labels), h5py.h5t.STD_U8BE, data=labels)

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            images = np.array(file["/images"]).astype("uint8")
            labels = np.array(file["/meta"]).astype("uint8")
        return images, labels


class TunedHdf5(ArticleHdf5):
    mode = "tuned"
    OPTIONS = {"hdf5_chunk_images": 0, "hdf5_compression": None}

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        chunk = int(self.options["hdf5_chunk_images"] or 0)
        compression = self.options["hdf5_compression"]
        layout: dict = {}
        if chunk or compression:  # compression needs chunks; default chunk = 1024 images
            rows = min(len(images), chunk or 1024)
            layout = {"chunks": (rows, *images.shape[1:]), "compression": compression}
        with h5py.File(path / FILE, "w") as file:
            file.create_dataset("images", data=images, dtype=np.uint8, **layout)
            file.create_dataset("meta", data=labels, dtype=np.uint8)

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            ds, meta = file["images"], file["meta"]
            images = np.empty(ds.shape, dtype=np.uint8)
            labels = np.empty(meta.shape, dtype=np.uint8)
            if images.size:
                ds.read_direct(images)
            if labels.size:
                meta.read_direct(labels)
        return images, labels

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        with h5py.File(path / FILE, "r") as file:
            return file["images"][0], int(file["meta"][0])


STORES = {"article": ArticleHdf5, "tuned": TunedHdf5}
