"""HDF5 (h5py): one file with an ``images`` and a labels (``meta``) dataset.

article: datasets ``images`` and ``meta`` of type STD_U8BE, read back with
``np.array(file["/images"]).astype("uint8")``. The article opened the file "r+" and never
closed it; we open read-only and close it, since a dangling handle would defeat
cold-cache eviction and "r+" can touch the file.
tuned: native uint8 datasets (contiguous by default, chunking and compression as
options), ``read_direct`` into preallocated arrays; a batch reader opens the file with a
data sieve buffer of one image and reads ``ds[i]`` per image (issue 22). With
several writers (config ``writers``), each forked process writes its contiguous share to its
own file (``part-<k>.h5``: one HDF5 file cannot take writers from several processes without
MPI-parallel HDF5; the article's advice is one file per process) and ``store.h5`` joins them
as a virtual dataset (HDF5 >= 1.10), so readers see one ``images`` dataset either way.

Encoded payload (tuned, issue 13): ``images`` is a one-dimensional variable-length uint8
dataset (``h5py.vlen_dtype(np.uint8)``, attribute ``payload = encoded``), one element per
original file, its bytes unchanged; labels in ``meta`` as for pixels. HDF5 keeps the bytes
of variable-length elements in its global heap: chunking and compression options apply to
the dataset's heap references only, never to the image bytes. Written by one process,
whatever ``writers`` says (a per-process split as above would work for vlen data too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores.base import (
    PARALLEL_MIN_IMAGES,
    Store,
    advise_fd,
    article_labels,
    fork_map,
    ranges,
)

FILE = "store.h5"
# Fork writers inherit these module globals, so nothing large is pickled through pipes.
_SHARED: dict = {}


def _part(k: int) -> str:
    return f"part-{k}.h5"


def _write_part(bounds: tuple[int, int]) -> None:
    images, path, layout = _SHARED["images"], _SHARED["path"], _SHARED["layout"]
    a, b = bounds
    with h5py.File(path / _part(_SHARED["parts"].index(bounds)), "w") as file:
        file.create_dataset("images", data=images[a:b], dtype=np.uint8, **layout(b - a))


def _open(path: Path, sieve: int | None = None) -> h5py.File:
    """Open a store read-only, with a data sieve buffer of *sieve* bytes (None: HDF5's 64 KiB
    default); a virtual dataset whose part file is gone would read as zeros (HDF5 fills
    unmapped data silently), so a missing part is an error."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if sieve is not None:
        fapl.set_sieve_buf_size(sieve)
    file = h5py.File(h5py.h5f.open(str(path / FILE).encode(), h5py.h5f.ACC_RDONLY, fapl))
    ds = file["images"]
    if ds.is_virtual:
        missing = [m.file_name for m in ds.virtual_sources() if not (path / m.file_name).exists()]
        if missing:
            file.close()
            raise StoreError(
                f"{path / missing[0]}: part file of the HDF5 virtual dataset is missing; "
                "delete the store directory and rerun the build"
            )
    return file


class ArticleHdf5(Store):
    format = "hdf5"
    mode = "article"
    random_advice_why_not = io_depth_why_not = "article mode runs the article's read code unchanged"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        file = h5py.File(path / FILE, "w")
        file.create_dataset("images", np.shape(images), h5py.h5t.STD_U8BE, data=images)
        # the article's big-endian uint8; wider only where a label does not fit it
        wide = article_labels(labels)
        label_type = h5py.h5t.STD_U8BE if wide.dtype == np.uint8 else wide.dtype.newbyteorder(">")
        file.create_dataset("meta", np.shape(labels), label_type, data=labels)
        file.close()

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            images = np.array(file["/images"]).astype("uint8")
            labels = article_labels(np.array(file["/meta"]))
        return images, labels

    def read_batch(self, path: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(path / FILE, "r") as file:
            return self._batch(file, indices)

    @staticmethod
    def _batch(file: h5py.File, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        # The article's single-image read, once per index.
        images = [np.array(file["/images"][i]).astype("uint8") for i in indices]
        labels = [int(np.array(file["/meta"][i])) for i in indices]
        return np.array(images), article_labels(labels)

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        with h5py.File(path / FILE, "r") as file:
            yield lambda indices: self._batch(file, indices)


class TunedHdf5(Store):
    format = "hdf5"
    mode = "tuned"
    random_advice = (
        "posix_fadvise(POSIX_FADV_RANDOM) on HDF5's own descriptor of store.h5 (h5py "
        "get_vfd_handle); part files of a multi-writer store are opened inside HDF5 and keep "
        "their readahead"
    )
    io_depth_why_not = (
        "h5py serialises every call into HDF5 on one global lock: a second thread's read "
        "waits for the first"
    )

    def _layout(self, shape: tuple[int, ...]) -> Callable[[int], dict]:
        chunk = int(self.options["hdf5_chunk_images"] or 0)
        compression = self.options["hdf5_compression"]

        def layout(n: int) -> dict:
            if not (chunk or compression):
                return {}
            rows = max(1, min(n, chunk or 1024))  # compression needs chunks; default 1024
            return {"chunks": (rows, *shape[1:]), "compression": compression}

        return layout

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        layout = self._layout(images.shape)
        if self.workers > 1 and len(images) >= PARALLEL_MIN_IMAGES:
            parts = ranges(len(images), self.workers)
            _SHARED.update(images=images, path=path, layout=layout, parts=parts)
            try:
                fork_map(_write_part, parts, self.workers)
            finally:
                _SHARED.clear()
            vds = h5py.VirtualLayout(shape=images.shape, dtype=np.uint8)
            for k, (a, b) in enumerate(parts):  # relative names: found beside store.h5
                vds[a:b] = h5py.VirtualSource(_part(k), "images", shape=(b - a, *images.shape[1:]))
            with h5py.File(path / FILE, "w") as file:
                file.create_virtual_dataset("images", vds)
                file.create_dataset("meta", data=np.asarray(labels))
            return
        with h5py.File(path / FILE, "w") as file:
            file.create_dataset("images", data=images, dtype=np.uint8, **layout(len(images)))
            file.create_dataset("meta", data=np.asarray(labels))

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with _open(path) as file:
            ds, meta = file["images"], file["meta"]
            images = np.empty(ds.shape, dtype=np.uint8)
            labels = np.empty(meta.shape, dtype=meta.dtype)
            if images.size:
                ds.read_direct(images)
            if labels.size:
                meta.read_direct(labels)
        return images, labels

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # One process whatever ``writers`` says (kept simple: h5py copies each blob once
        # into the file's heap). Part files per process joined by a virtual dataset, as in
        # write_many, would parallelise it: a virtual dataset maps vlen elements too.
        labels = np.asarray(labels)
        n = len(blobs)
        if len(labels) != n:
            raise ValueError(f"{n} blobs but {len(labels)} labels")
        data = np.empty(n, dtype=object)
        for i, blob in enumerate(blobs):  # item by item: equal lengths must not broadcast
            data[i] = np.frombuffer(blob, dtype=np.uint8)
        layout = self._layout((n,))(n) if n else {}  # no chunk can fit in an empty dataset
        with h5py.File(path / FILE, "w") as file:
            ds = file.create_dataset("images", (n,), dtype=h5py.vlen_dtype(np.uint8), **layout)
            if n:
                ds.write_direct(data)  # ds[...] = data broadcasts blobs of equal lengths as 2-D
            ds.attrs["payload"] = "encoded"
            file.create_dataset("meta", data=labels)

    def read_encoded(self, path: Path) -> tuple[list[np.ndarray], np.ndarray]:
        # One read of the whole dataset: h5py returns each element as its own uint8 array.
        with _open(path) as file:
            ds, meta = file["images"], file["meta"]
            if ds.attrs.get("payload") != "encoded" or ds.ndim != 1 or meta.shape != ds.shape:
                raise StoreError(
                    f"{path / FILE}: not an encoded-payload imgbench HDF5 store; delete the "
                    "store directory and rerun the build"
                )
            blobs = list(ds[...]) if len(ds) else []
            labels = np.empty(meta.shape, dtype=meta.dtype)
            if labels.size:
                meta.read_direct(labels)
        return blobs, labels

    @staticmethod
    def _batch(
        images: h5py.Dataset, labels: np.ndarray, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        # One ds[i] per image (h5py's fast path for a simple selection), as a stock PyTorch
        # Dataset reads: faster than one sorted fancy-index read (benchmarks/hdf5_batch.py).
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(images)):
            raise IndexError(f"index out of range 0..{len(images) - 1}")
        out = np.empty((len(idx), *images.shape[1:]), dtype=images.dtype)
        for row, i in enumerate(idx.tolist()):
            out[row] = images[i]
        return out, labels[idx]

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        # The sieve buffer sized to one image: with HDF5's 64 KiB default, every image read
        # fetches and copies 64 KiB (warm: 1.6-1.8x slower; benchmarks/hdf5_batch.py).
        # Labels are read once per reader.
        with _open(path) as probe:
            ds = probe["images"]
            sieve = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize) if ds.ndim > 1 else None
        with _open(path, sieve) as file:
            advise_fd(file.id.get_vfd_handle(), self.random_reads)
            images, meta = file["images"], file["meta"]
            labels = np.empty(meta.shape, dtype=meta.dtype)
            if labels.size:
                meta.read_direct(labels)
            yield lambda indices: self._batch(images, labels, indices)

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        with _open(path) as file:
            return file["images"][0], int(file["meta"][0])
