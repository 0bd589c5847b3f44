"""The one small interface every storage format implements.

A store lives in a directory that the caller creates and owns (the pipeline writes it
under a temporary name and renames it when complete). A format module provides one class
per mode; article and tuned classes are siblings under :class:`Store` that share small,
named module-level helpers, so editing the article's code never changes tuned numbers.

Images are (N, H, W, C) uint8; labels are (N,) integers. Tuned stores keep the labels'
dtype (1,000 ImageNet classes do not fit uint8); article stores keep the article's uint8.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imgbench.core.errors import StoreError


class Store(ABC):
    """Write and read many images with labels; one image; a batch by index."""

    #: Format name, as registered in :data:`imgbench.stores.FORMATS`.
    format: ClassVar[str]
    #: "article" (faithful to the 2019 article) or "tuned" (the format at its best).
    mode: ClassVar[str]
    #: True if the library itself syncs to disk inside the write call (it then pays for
    #: durability twice over in the call-returned time; the common flush follows anyway).
    library_sync: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None, workers: int = 1) -> None:
        self.options = dict(options or {})
        self.workers = max(1, int(workers))

    @abstractmethod
    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        """Store all *images* and *labels* in the (existing, empty) directory *path*."""

    @abstractmethod
    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Read every image and label back as arrays (fully in memory, not lazy)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # read_batch and batch_reader default to each other: a format overrides one (or both)
        if "format" in cls.__dict__ and (
            cls.read_batch is Store.read_batch and cls.batch_reader is Store.batch_reader
        ):
            raise TypeError(f"{cls.__name__}: override read_batch or batch_reader")

    def read_batch(self, path: Path, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Read the images and labels at *indices*, in that order (random access); by default
        through a :meth:`batch_reader` opened for this one batch."""
        with self.batch_reader(path) as read:
            return read(indices)

    @contextlib.contextmanager
    def batch_reader(
        self, path: Path
    ) -> Iterator[Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]]:
        """A reader for many batches of one store, as a data-loader worker holds one: formats
        keep their handles open across batches (an LMDB environment, an HDF5 file); by default
        one :meth:`read_batch` per batch."""
        yield lambda indices: self.read_batch(path, indices)

    # --- payload: encoded (issue 13): the original files' bytes, variable length, as they are.
    # Only formats whose registry entry has ``encoded`` implement these two; the pipeline never
    # asks the others (their entry says why in ``encoded_why_not``).

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        """Store every blob's bytes unchanged, with its label, in the (existing, empty)
        directory *path*; blobs differ in length."""
        raise NotImplementedError(f"{type(self).__name__} cannot store encoded images")

    def read_encoded(self, path: Path) -> tuple[list[bytes], np.ndarray]:
        """Every blob (as bytes or a bytes-like object that stays valid after the call)
        and the labels, in store order: a read, no decode."""
        raise NotImplementedError(f"{type(self).__name__} cannot store encoded images")

    def write_one(self, path: Path, image: np.ndarray, label: int) -> None:
        """Store one image in its own store (the article's single-image experiment)."""
        self.write_many(path, image[None], np.asarray([label]))

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        """Read the one image of a single-image store."""
        images, labels = self.read_many(path)
        return images[0], int(labels[0])


def blob_ext(blob: bytes | memoryview) -> str:
    """The extension of an encoded image, sniffed from its magic bytes: ``jpg``, ``png``,
    ``webp``, else ``bin`` (tar names its members and the PNG store its files by it)."""
    head = bytes(blob[:12])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "bin"


def encoded_header(
    meta_raw: bytes | None, labels_raw: bytes | None, where: Path, library: str
) -> tuple[int, np.ndarray]:
    """Image count and labels of a key-value store of encoded files, from its metadata and
    labels values; a store of pixels (or none at all) is refused in one line."""
    meta = json.loads(meta_raw) if meta_raw is not None else {}
    if meta.get("payload") != "encoded" or labels_raw is None:
        raise StoreError(
            f"{where}: not an encoded-payload imgbench {library} store; delete the store "
            "directory and rerun the build"
        )
    labels = np.frombuffer(labels_raw, dtype=np.dtype(meta["label_dtype"])).copy()
    return int(meta["n"]), labels


def article_labels(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels as the article's code types them (uint8), widened only when a class id does
    not fit (a folder of more than 256 classes): the article's type where it works, said in
    the log where it cannot."""
    a = np.asarray(values)
    top = int(a.max()) if a.size else 0
    if top <= np.iinfo(np.uint8).max:
        return a.astype(np.uint8)
    wide = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    logging.getLogger(__name__).warning(
        "article mode: label %d does not fit the article's uint8; labels widened to %s",
        top,
        np.dtype(wide).name,
    )
    return a.astype(wide)


def shared_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An array in an anonymous shared mapping: written by forked workers or readers, read by
    the parent with no copy."""
    count = int(np.prod(shape))
    buf = mmap.mmap(-1, max(1, count * np.dtype(dtype).itemsize), flags=mmap.MAP_SHARED)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


#: Below this many images a process pool costs more than it saves (PNG, HDF5, npy writers).
PARALLEL_MIN_IMAGES = 1000


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """[0, n) cut into *parts* contiguous, non-empty (start, stop) ranges."""
    edges = np.linspace(0, n, parts + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def fork_map(
    fn: Callable[[tuple[int, int]], None], bounds: list[tuple[int, int]], workers: int
) -> None:
    """Run *fn* over the ranges in a pool of *workers* forked processes (serially for one).

    Forked children inherit the caller's memory, so *fn* reads its large inputs from module
    globals its caller set before: nothing large is pickled through a pipe.
    """
    if workers <= 1 or len(bounds) <= 1:
        for b in bounds:
            fn(b)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(fn, bounds, chunksize=1)
