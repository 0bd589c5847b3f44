"""Raw ``.npy`` arrays: the physical-limit baseline (just the bytes, no format overhead).

Writes ``images.npy`` and ``labels.npy``; reads them fully into memory with ``np.load``
(a lazy memmap would not be a read); batches by fancy indexing a memory map. Only a tuned
mode: the article had no such store. With several writers (config ``writers``) the parent
writes the ``.npy`` header and forked processes ``pwrite`` their contiguous shares into the
one file: byte for byte what ``np.save`` writes.

Batches (``batch_reader``): the memory map is opened once per reader, labels read once.
Read tuning (issue 22): advice "random" is ``madvise(MADV_RANDOM)`` on that map (a fault
then reads its page, not a readahead window); ``io_depth`` k > 1 reads a batch by offset
instead, one ``os.preadv`` per image on k threads (numpy's fancy index of a map copies a
256-image batch holding the GIL, so faults there come one at a time), the descriptor
advised with ``posix_fadvise(POSIX_FADV_RANDOM)`` under advice "random".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from imgbench.stores.base import (
    PARALLEL_MIN_IMAGES,
    Store,
    advise_fd,
    advise_maps,
    fork_map,
    pread_rows,
    ranges,
)

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
    random_advice = (
        "madvise(MADV_RANDOM) on the reader's map of images.npy; with io_depth > 1, "
        "posix_fadvise(POSIX_FADV_RANDOM) on the descriptor it preads from"
    )
    io_depth_how = "one os.preadv per image at its offset, on io_depth threads per reader"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if self.workers > 1 and len(images) >= PARALLEL_MIN_IMAGES:
            _save_parallel(path / "images.npy", images, self.workers)
        else:
            np.save(path / "images.npy", images)
        np.save(path / "labels.npy", np.asarray(labels))

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return np.load(path / "images.npy"), np.load(path / "labels.npy")

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        file = path / "images.npy"
        images = np.load(file, mmap_mode="r")  # header parsed once; mapped once per reader
        labels = np.load(path / "labels.npy")
        n, shape, size = len(images), images.shape[1:], images[0].nbytes if len(images) else 0
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(self.read_pool())
            if pool is None:
                advise_maps([file], self.random_reads)
            else:  # by offset: no map needed
                fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
                stack.callback(os.close, fd)
                advise_fd(fd, self.random_reads)
                start = int(images.offset)
                del images

            def read(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
                idx = np.asarray(indices, dtype=np.int64).reshape(-1)
                if pool is None:
                    return np.asarray(images[idx]), labels[idx]
                if len(idx) and (idx.min() < 0 or idx.max() >= n):
                    raise IndexError(f"{file}: index out of range 0..{n - 1}")
                out = np.empty((len(idx), *shape), dtype=np.uint8)
                jobs = [(fd, start + i * size) for i in idx.tolist()]
                pread_rows(jobs, out, file, pool, self.io_depth)
                return out, labels[idx]

            yield read

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        images = np.load(path / "images.npy", mmap_mode="r")
        return np.array(images[0]), int(np.load(path / "labels.npy")[0])
