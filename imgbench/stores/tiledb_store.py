"""TileDB (TileDB-Py): a dense 2-D ``images`` array and a dense 1-D ``labels`` array.

Layout (``path`` holds two TileDB arrays, each a directory)::

    images/   dims row [0, N) x byte [0, H*W*C), both uint64 (a dense array needs one dtype);
              one uint8 attribute ``image``; a space tile is ``tiledb_tile_images`` rows x a
              whole image, so a tile is a run of whole images; filters from
              ``tiledb_compression`` (none by default: random pixels do not compress);
              array metadata: n, image_shape, label_dtype and ``files`` (every fragment and
              commit file of both arrays with its size)
    labels/   dim row [0, N); one attribute ``label`` in the labels' own dtype; one tile

Each array's data is written by one write query: one fragment each (``__fragments/<ts>/``
with ``a0.tdb`` and ``__fragment_metadata.tdb``, plus ``__commits/<ts>.wrt``), so there is
nothing to consolidate; the metadata is a second write (``__meta/``).

Why. TileDB's docs (https://docs.tiledb.com/main/how-to/performance/performance-tips/
choosing-tiling-and-cell-layout) say that in a dense array the space tile is the atomic unit
of I/O and filtering: every tile a query overlaps is fetched whole; tiles should follow the
typical query and be >= 64 KB. That advice is for slabs; a shuffled batch of 256 out of 100k
touches ~256 different tiles whatever their size, so the tile decides how many bytes and how
much per-tile work a random image costs, while a full read pays per-tile overhead on 100k/tile
tiles. Measured here (100k CIFAR images, 2 shared cores, rough; VFS setting below), tile of
1 / 2 / 4 / 16 / 64 images: shuffled batches 39k / 48k / 40k / 21k / 7k images/s; full read
13x / 8x / 7x / 5x / 5.5x ``np.load``; write 3.8 / 2.5 / 1.7 / 0.8 / 0.7 s. Tiles of 1-4
images read shuffled batches alike (within this noise); 4 (12 KB tiles, the default) has the
fastest full read and write of them; 16 and up cut shuffled throughput 2-6x for a full read
only ~1.3x faster, so 64 suits streaming only.

The one setting that matters most: TileDB's VFS merges reads of tiles less than
``vfs.min_batch_gap`` (500 KB) apart into requests of ``vfs.min_batch_size`` (20 MB), so a
shuffled batch read ~270 MB and ran at ~1.5k images/s whatever the tile; both are set to 0.

Reads. A batch is one query over the batch's rows, sorted and unique, as ranges of
consecutive rows (``Subarray.add_ranges`` + ``read_subarray``), then reordered. Not
``multi_index``: it builds its Subarray on TileDB-Py's global default context, and that
context may have been created in a parent process before a fork. Each reader creates its own
context (with its thread pools, sized to the job's cores) inside ``batch_reader`` /
``read_many``, i.e. in the reader process, and keeps both arrays open across batches. The
tile memory limit (256 MB) keeps a full read of 100k images under ~0.9 GB.

Integrity. A dense array returns fill values, silently, for cells no fragment covers, and
TileDB notices a truncated data file only when a query reads a tile past its end. On open,
every file listed in ``files`` must exist with its written size, and the fragments' non-empty
domains must cover every row [0, N) of both arrays; otherwise StoreError. No checksums by
default (as npy and HDF5 here): TileDB offers only MD5/SHA-256 filters, far costlier than
reading, so a flipped byte inside a tile is not detected.

Encoded payload (issue 13): ``images`` is then a dense 1-D array (row [0, N), tiles of
``tiledb_tile_images`` rows) whose one attribute ``image`` is var-sized uint8: each cell the
original file's bytes, unchanged (TileDB stores the cells' offsets and values as two
files per fragment); metadata ``payload = encoded``; ``labels``, filters, checks as above.
``read_encoded`` is one query over all rows.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tiledb

from imgbench.core.errors import StoreError
from imgbench.stores.base import Store

# TileDB-Py (on Python < 3.12) replaces os.fork, process-wide, by a wrapper that warns on
# every fork once any context exists. This module never carries a context across a fork
# (each reader makes its own; the default context is never used), so the warning would only
# be noise in every forked reader's log, and in other formats' forks too. Keep os.fork as
# it is (a private flag; harmless if a later TileDB-Py drops it) and filter the warning in
# case the wrapper is already installed.
if sys.modules["tiledb.ctx"].__dict__.get("_needs_fork_wrapper"):
    sys.modules["tiledb.ctx"]._needs_fork_wrapper = False
warnings.filterwarnings("ignore", "TileDB is a multithreading library", UserWarning, "tiledb")

IMAGES, LABELS = "images", "labels"
#: tiledb_compression values -> filter class (None: no filter)
FILTERS: dict[str, Callable[..., Any]] = {
    "zstd": tiledb.ZstdFilter,
    "lz4": tiledb.LZ4Filter,
    "gzip": tiledb.GzipFilter,
}
#: TileDB settings of every context this module makes (see the module docstring)
CONFIG = {
    # No coalescing of nearby tile reads: by default TileDB merges reads less than 500 KB
    # apart into ~20 MB requests, so a shuffled batch of 256 read ~270 MB (measured).
    "vfs.min_batch_gap": "0",
    "vfs.min_batch_size": "0",
    # Tile buffers of one query (the result array comes on top): one job stays < 1.5 GB.
    "sm.mem.tile_upper_memory_limit": str(256 << 20),
    "sm.mem.total_budget": str(512 << 20),
}


def _ctx(workers: int) -> tiledb.Ctx:
    """A new context (TileDB's thread pools) sized to the job's cores."""
    threads = str(max(1, workers))
    return tiledb.Ctx(
        tiledb.Config(
            {
                **CONFIG,
                "sm.compute_concurrency_level": threads,
                "sm.io_concurrency_level": threads,
            }
        )
    )


def _filters(name: str | None, ctx: tiledb.Ctx) -> tiledb.FilterList:
    if name is None or str(name).lower() in ("", "none"):
        return tiledb.FilterList([], ctx=ctx)
    if str(name).lower() not in FILTERS:
        raise ValueError(f"tiledb_compression {name!r}: use null or one of {sorted(FILTERS)}")
    return tiledb.FilterList([FILTERS[str(name).lower()](ctx=ctx)], ctx=ctx)


def _damaged(path: Path, what: str) -> StoreError:
    return StoreError(f"{path}: {what}; delete the store directory and rerun the build")


def _covered(uri: Path, n: int, ctx: tiledb.Ctx) -> None:
    """Raise unless the committed fragments of *uri* cover rows [0, n) (fill values do not
    count as data)."""
    spans = sorted(
        (int(f.nonempty_domain[0][0]), int(f.nonempty_domain[0][1]))
        for f in tiledb.FragmentInfoList(str(uri), ctx=ctx)
    )
    end = 0
    for lo, hi in spans:
        if lo > end:
            break
        end = max(end, hi + 1)
    if end < n:
        raise _damaged(
            uri,
            f"TileDB fragments cover rows [0, {end}) of {n} ({len(spans)} fragment(s)): a "
            "fragment or commit file is missing, the rest would read as fill values",
        )


def _data_files(path: Path) -> dict[str, int]:
    """Every fragment and commit file of both arrays, relative to *path*, with its size."""
    return {
        f.relative_to(path).as_posix(): f.stat().st_size
        for name in (IMAGES, LABELS)
        for sub in ("__fragments", "__commits")
        for f in sorted((path / name / sub).rglob("*"))
        if f.is_file()
    }


def _check_files(path: Path, expected: dict[str, int]) -> None:
    """Raise if a data file written with the store is missing or has another size (TileDB
    itself notices a truncated tile only when a query reads that tile)."""
    for rel, size in expected.items():
        f = path / rel
        if not f.is_file():
            raise _damaged(f, "TileDB fragment file missing")
        if f.stat().st_size != size:
            raise _damaged(
                f, f"{f.stat().st_size} bytes, but {size} were written: truncated or replaced"
            )


class _Reader:
    """Both arrays of a store, open, with the labels in memory (they are small)."""

    def __init__(self, path: Path, workers: int, encoded: bool = False) -> None:
        self.path = path
        self.ctx = _ctx(workers)
        try:
            self.images = tiledb.open(str(path / IMAGES), "r", ctx=self.ctx)
            self.labels_array = tiledb.open(str(path / LABELS), "r", ctx=self.ctx)
        except tiledb.TileDBError as exc:
            self.close()
            raise _damaged(path, f"cannot open the TileDB arrays ({exc})") from exc
        try:
            meta = self.images.meta
            self.n = int(meta["n"])
            if encoded != ("payload" in meta and meta["payload"] == "encoded"):
                what = "an encoded-payload" if encoded else "a pixel"
                raise _damaged(path, f"not {what} imgbench TileDB store")
            if not encoded:
                self.shape = tuple(json.loads(meta["image_shape"]))
                self.size = int(np.prod(self.shape))
            dtype = np.dtype(str(meta["label_dtype"]))
            _check_files(path, json.loads(meta["files"]))
            for name in (IMAGES, LABELS):
                _covered(path / name, self.n, self.ctx)
            labels = self.labels_array[0 : self.n]["label"] if self.n else np.empty(0)
            self.labels = np.asarray(labels).astype(dtype, copy=False)
        except KeyError as exc:
            self.close()
            raise _damaged(path, f"TileDB array metadata {exc} missing") from exc
        except tiledb.TileDBError as exc:
            self.close()
            raise _damaged(path, f"TileDB read failed ({exc})") from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for name in ("images", "labels_array"):
            arr = getattr(self, name, None)
            if arr is not None and arr.isopen:
                arr.close()
        self.__dict__.pop("ctx", None)  # free the context's thread pools now

    def _rows(self, query: Callable[[], dict]) -> np.ndarray:
        try:
            return query()["image"]
        except tiledb.TileDBError as exc:
            raise _damaged(self.path, f"TileDB read failed ({exc})") from exc

    def all(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.n:
            return np.empty((0, *self.shape), dtype=np.uint8), self.labels
        flat = self._rows(lambda: self.images[0 : self.n])
        return flat.reshape(self.n, *self.shape), self.labels

    def blobs(self) -> list[np.ndarray]:
        """Every encoded image, in row order: one query, TileDB-Py splitting the var-sized
        cells into one uint8 array each."""
        return list(self._rows(lambda: self.images[0 : self.n])) if self.n else []

    def batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.path}: index out of range [0, {self.n})")
        if not len(idx):
            return np.empty((0, *self.shape), dtype=np.uint8), self.labels[:0]
        uniq, inverse = np.unique(idx, return_inverse=True)
        # Runs of consecutive rows as inclusive ranges, in increasing order.
        cut = np.flatnonzero(np.diff(uniq) != 1) + 1
        ranges = [(int(run[0]), int(run[-1])) for run in np.split(uniq, cut) if len(run)]
        # Subarray with our context: ``multi_index`` would build its Subarray on TileDB-Py's
        # global default context, which a parent process may have created before the fork.
        sub = tiledb.Subarray(self.images, self.ctx)
        sub.add_ranges([ranges, [(0, self.size - 1)]])
        flat = self._rows(lambda: self.images.read_subarray(sub))
        return flat.reshape(len(uniq), *self.shape)[inverse], self.labels[idx]


def _create_labels(path: Path, labels: np.ndarray, ctx: tiledb.Ctx) -> None:
    """The ``labels`` array (one tile, the labels' own dtype in native order), written."""
    n, native = len(labels), labels.dtype.newbyteorder("=")
    label_dim = tiledb.Dim(
        "row", domain=(0, max(n, 1) - 1), tile=max(n, 1), dtype=np.uint64, ctx=ctx
    )
    label_schema = tiledb.ArraySchema(
        domain=tiledb.Domain(label_dim, ctx=ctx),
        attrs=[tiledb.Attr("label", dtype=native, ctx=ctx)],
        sparse=False,
        ctx=ctx,
    )
    tiledb.Array.create(str(path / LABELS), label_schema, ctx=ctx)
    with tiledb.open(str(path / LABELS), "w", ctx=ctx) as arr:
        if n:
            arr[0:n] = {"label": labels.astype(native, copy=False)}


def _write_meta(path: Path, meta: dict[str, Any], ctx: tiledb.Ctx) -> None:
    """Metadata last, in its own write: a store whose data writes failed has none. It
    records every fragment and commit file with its size, checked on every open."""
    meta = {**meta, "files": json.dumps(_data_files(path))}
    with tiledb.open(str(path / IMAGES), "w", ctx=ctx) as arr:
        for key, value in meta.items():
            arr.meta[key] = value


class TunedTiledb(Store):
    format = "tiledb"
    mode = "tuned"
    random_advice_why_not = (
        "TileDB's VFS opens and reads the fragment files itself (C++): no descriptor reaches Python"
    )
    io_depth_why_not = (
        "TileDB already reads a query's tiles concurrently on its own IO thread pool "
        "(sm.io_concurrency_level)"
    )
    library_sync = True  # TileDB's POSIX VFS fsyncs every file it closes (seen with strace)

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        n, shape = len(images), images.shape[1:]
        size = int(np.prod(shape))
        tile = max(1, min(int(self.options["tiledb_tile_images"]), n))
        ctx = _ctx(self.workers)
        dims = [
            tiledb.Dim("row", domain=(0, max(n, 1) - 1), tile=tile, dtype=np.uint64, ctx=ctx),
            tiledb.Dim("byte", domain=(0, size - 1), tile=size, dtype=np.uint64, ctx=ctx),
        ]
        attr = tiledb.Attr(
            "image",
            dtype=np.uint8,
            filters=_filters(self.options["tiledb_compression"], ctx),
            ctx=ctx,
        )
        schema = tiledb.ArraySchema(
            domain=tiledb.Domain(*dims, ctx=ctx), attrs=[attr], sparse=False, ctx=ctx
        )
        tiledb.Array.create(str(path / IMAGES), schema, ctx=ctx)
        _create_labels(path, labels, ctx)
        with tiledb.open(str(path / IMAGES), "w", ctx=ctx) as arr:
            if n:
                arr[0:n, 0:size] = {"image": images.reshape(n, size)}
        meta = {"n": n, "image_shape": json.dumps(list(shape)), "label_dtype": labels.dtype.str}
        _write_meta(path, meta, ctx)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # A dense 1-D array whose one attribute is var-sized uint8 (TileDB keeps an offsets
        # and a values file per fragment), tiled by the same image count, same filters.
        labels = np.asarray(labels)
        n = len(blobs)
        if len(labels) != n:
            raise ValueError(f"{n} blobs but {len(labels)} labels")
        tile = max(1, min(int(self.options["tiledb_tile_images"]), n))
        ctx = _ctx(self.workers)
        dim = tiledb.Dim("row", domain=(0, max(n, 1) - 1), tile=tile, dtype=np.uint64, ctx=ctx)
        attr = tiledb.Attr(
            "image",
            dtype=np.uint8,
            var=True,
            filters=_filters(self.options["tiledb_compression"], ctx),
            ctx=ctx,
        )
        schema = tiledb.ArraySchema(
            domain=tiledb.Domain(dim, ctx=ctx), attrs=[attr], sparse=False, ctx=ctx
        )
        tiledb.Array.create(str(path / IMAGES), schema, ctx=ctx)
        _create_labels(path, labels, ctx)
        data = np.empty(n, dtype=object)
        for i, blob in enumerate(blobs):  # views, no copy: TileDB-Py joins them once
            data[i] = np.frombuffer(blob, dtype=np.uint8)
        with tiledb.open(str(path / IMAGES), "w", ctx=ctx) as arr:
            if n:
                arr[0:n] = {"image": data}
        _write_meta(path, {"payload": "encoded", "n": n, "label_dtype": labels.dtype.str}, ctx)

    def read_encoded(self, path: Path) -> tuple[list[np.ndarray], np.ndarray]:
        reader = _Reader(path, self.workers, encoded=True)
        try:
            return reader.blobs(), reader.labels
        finally:
            reader.close()

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        reader = _Reader(path, self.workers)
        try:
            return reader.all()
        finally:
            reader.close()

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        reader = _Reader(path, self.workers)
        try:
            yield reader.batch
        finally:
            reader.close()
