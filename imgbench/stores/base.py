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
import ctypes
import functools
import json
import logging
import mmap
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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

    # --- read tuning (issue 22): every concrete class fills exactly one of each pair, so a
    # capped-epoch row can say how a knob was applied or why it was not.
    #: how ``tune_reads(advice="random")`` turns readahead off in this class's batch reader
    random_advice: ClassVar[str] = ""
    #: why it cannot (the library keeps its own descriptor or map, ...)
    random_advice_why_not: ClassVar[str] = ""
    #: how ``tune_reads(io_depth=k)`` keeps k reads in flight per reader
    io_depth_how: ClassVar[str] = ""
    #: why it cannot (reads hold the GIL, the library already reads concurrently, ...)
    io_depth_why_not: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None, workers: int = 1) -> None:
        self.options = dict(options or {})
        self.workers = max(1, int(workers))
        self.read_advice = "default"
        self.io_depth = 1

    def tune_reads(self, advice: str = "default", io_depth: int = 1) -> dict[str, str]:
        """Set the read-side knobs of the batch readers opened after this call (the capped
        epochs of issue 22 measure each with and without). Returns, per knob, how it is
        applied, or "not applied: <why>" for a class that cannot apply it ("" = default)."""
        if advice not in ADVICE:
            raise ValueError(f"read advice {advice!r}: use one of {', '.join(ADVICE)}")
        if isinstance(io_depth, bool) or int(io_depth) != io_depth or io_depth < 1:
            raise ValueError(f"io_depth {io_depth!r}: use an integer >= 1")
        self.read_advice, self.io_depth = advice, int(io_depth)

        def note(wanted: bool, how: str, why_not: str) -> str:
            return "" if not wanted else how or f"not applied: {why_not}"

        return {
            "advice": note(advice != "default", self.random_advice, self.random_advice_why_not),
            "io_depth": note(self.io_depth > 1, self.io_depth_how, self.io_depth_why_not),
        }

    @property
    def random_reads(self) -> bool:
        """True if batch readers should turn readahead off (advice "random")."""
        return self.read_advice == "random"

    def read_pool(self) -> contextlib.AbstractContextManager[ThreadPoolExecutor | None]:
        """A pool of ``io_depth`` threads for one batch reader (None at depth 1); made inside
        ``batch_reader``, so a forked reader makes its own."""
        if self.io_depth <= 1 or not self.io_depth_how:
            return contextlib.nullcontext(None)
        return ThreadPoolExecutor(self.io_depth, thread_name_prefix=f"{self.format}-io")

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


#: Values of ``tune_reads(advice=...)``: the kernel's default readahead, or none ("random").
ADVICE = ("default", "random")
_MADV_RANDOM = 1  # <sys/mman.h>; mmap.MADV_RANDOM where Python defines it


def advise_fd(fd: int, random: bool) -> None:
    """``posix_fadvise(POSIX_FADV_RANDOM)`` on *fd* if *random*: no readahead for reads through
    this open file (the advice belongs to the open file description, so it must be the
    descriptor that is read)."""
    if random:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc


def _madvise(start: int, length: int) -> None:
    if _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_RANDOM) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"madvise(MADV_RANDOM) failed: {os.strerror(err)}")


def advise_maps(files: Iterable[Path | str], random: bool) -> int:
    """``madvise(MADV_RANDOM)`` on every mapping of *files* in this process (found in
    /proc/self/maps by device and inode), if *random*: a page fault then reads that page
    only, not a readahead window (up to ``read_ahead_kb``). Works on maps a library made
    itself (pyarrow, SQLite, LevelDB) as on our own. Returns how many mappings it advised."""
    if not random:
        return 0
    wanted = set()
    for f in files:
        st = os.stat(f)
        wanted.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    done = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or parts[4] == "0":
                continue
            major, minor = (int(x, 16) for x in parts[3].split(":"))
            if (major, minor, int(parts[4])) in wanted:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                _madvise(lo, hi - lo)
                done += 1
    return done


def pread_rows(
    jobs: Sequence[tuple[int, int]],
    out: np.ndarray,
    where: Path | str,
    pool: ThreadPoolExecutor | None = None,
    depth: int = 1,
) -> None:
    """Fill row k of *out* (rows of equal bytes, C-contiguous) from ``jobs[k] = (fd,
    offset)`` with one ``os.preadv`` each, in file order; with a *pool*, cut into *depth*
    runs, each on its own thread: *depth* reads in flight (pread releases the GIL)."""
    order = sorted(range(len(jobs)), key=lambda k: jobs[k])
    rows = out.reshape(len(out), -1)
    size = rows.shape[1] if len(rows) else 0

    def run(part: Sequence[int]) -> None:
        for k in part:
            fd, offset = jobs[k]
            if os.preadv(fd, [rows[k]], offset) != size:
                raise StoreError(
                    f"{where}: short read at byte {offset} (file truncated); delete the store "
                    "directory and rerun the build"
                )

    in_runs(run, order, pool, depth)


def in_runs(
    fn: Callable[[Sequence[int]], None],
    items: Sequence[int],
    pool: ThreadPoolExecutor | None,
    depth: int,
) -> None:
    """``fn(run)`` over *items* cut into *depth* contiguous runs, one per pool thread (all
    of *items* on the calling thread without a pool); the first error is raised."""
    if pool is None or depth < 2 or len(items) < 2:
        fn(items)
        return
    cuts = np.linspace(0, len(items), min(depth, len(items)) + 1).astype(int)
    futures = [pool.submit(fn, items[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    for future in futures:
        future.result()


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
