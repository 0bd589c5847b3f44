"""Feather v2 (the Arrow IPC file format, pyarrow): one file ``store.arrow``, one row per
image, in record batches of ``feather_batch_images`` rows.

Layout (shared with parquet, see :mod:`imgbench.stores._arrow`): an ``image`` column of
``fixed_size_binary(H*W*C)`` and a ``label`` column in the labels' own integer type; shape,
dtypes and the batch size in the schema metadata. Written with
``pyarrow.feather.write_feather``, whose default is LZ4: tuned mode writes it uncompressed
(``feather_compression = null``), because the IPC file format "supports random access, and
thus is very useful when used with memory maps", and reading from a memory map is
zero-copy (https://arrow.apache.org/docs/python/ipc.html), while compressed buffers must be
decompressed into memory (random pixels do not compress anyway).

Reads go through ``pa.memory_map`` + ``pa.ipc.open_file``, over a ``BufferReader`` of the
map (:class:`~imgbench.stores._arrow.MappedFile`: pyarrow's IO threads kept slices of its
own mapped file a moment after a read). ``read_many`` maps the file, takes the zero-copy
table and copies the image chunks once into one array (a lazy memmap would not be a read).
``batch_reader`` keeps the map open and, for an uncompressed file, notes once where every
row's pixels sit in the map (record-batch buffer addresses plus the cumulative row
offsets), so a batch is one numpy fancy-index gather straight from the mapped pages, as
``np.load(mmap_mode="r")[idx]`` does, with no table materialised; labels are read once.
With compression, each touched record batch is decompressed whole, so the batch size is
then the unit of random access (small batches needed; and with random pixels Arrow stores
the buffers uncompressed anyway, as compression does not shrink them). Uncompressed, the
batch size only sets how many batches ``batch_reader`` inspects when it opens (~0.1 ms
each): the default is pyarrow's own 65,536 rows (1,024-row batches cost ~13 ms per open for
100k images, a quarter of a warm epoch).

Encoded payload (issue 13): the same file and options with ``image`` a ``binary`` column
(``large_binary`` past 2 GiB in all) of the original files' bytes. ``read_encoded`` maps
the file, copies each record batch's values buffer out of the map once (as ``read_many``
copies the pixels once) and returns memoryviews of the copies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc

from imgbench.stores._arrow import (
    IMAGE,
    LABEL,
    ArrowStore,
    EncodedMeta,
    MappedFile,
    Meta,
    blobs_of,
    copy_images,
    damage_is_clear,
    labels_of,
    rebuild,
    rows_of,
    to_encoded_table,
    to_table,
)
from imgbench.stores.base import advise_fd, advise_maps, pread_rows

FILE = "store.arrow"
CODECS = ("uncompressed", "lz4", "zstd")


def codec(value: str | None) -> str:
    """The Feather codec name for the ``feather_compression`` option (None = uncompressed)."""
    name = "uncompressed" if value in (None, "none") else str(value).lower()
    if name not in CODECS:
        raise ValueError(f"feather_compression {value!r}: use null or one of {', '.join(CODECS)}")
    return name


class _Mapped(MappedFile):
    """One store's file mapped and opened as an IPC file (refusing a damaged footer or
    schema), read on the calling thread."""

    def __init__(self, file: Path, meta: type[Meta] = Meta) -> None:
        super().__init__(file)
        try:
            with damage_is_clear(file):
                self.reader = ipc.open_file(self.stream)
                self.meta = meta(self.reader.schema, file)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Unmap now: the reader (its footer) and every buffer taken from the map pin it,
        and a mapped page cannot be evicted for a cold read."""
        self.reader = None
        super().close()


class _Batches:
    """Random access through one mapped store (safe to share between threads). Tuned reads
    (issue 22): *random* madvises MADV_RANDOM on the map; a *pool* of *depth* threads reads
    an uncompressed file's images by offset instead, one ``os.preadv`` each, from a
    descriptor advised POSIX_FADV_RANDOM under *random*."""

    def __init__(
        self,
        file: Path,
        random: bool = False,
        pool: ThreadPoolExecutor | None = None,
        depth: int = 1,
    ) -> None:
        self.mapped = _Mapped(file)
        self.meta = meta = self.mapped.meta
        self.lock = threading.Lock()  # only the decompressing path calls into the reader
        self.pool, self.depth, self.fd = pool, depth, None
        try:
            advise_maps([file], random)
            if pool is not None:
                self.fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
                advise_fd(self.fd, random)
            reader = self.mapped.reader
            rows = int(meta.raw.get("batch_rows") or 0)
            batches = reader.num_record_batches
            if rows < 1 or (meta.n + rows - 1) // rows != batches:
                raise rebuild(file, f"{batches} record batches do not hold {meta.n} rows")
            self.rows = rows
            self.offsets = self._offsets(reader) if meta.n else None
            if self.offsets is not None:
                self.labels = self._labels(reader)
        except BaseException:
            self.close()
            raise

    def _offsets(self, reader: ipc.RecordBatchFileReader) -> np.ndarray | None:
        """Byte offset in the file of every row's pixels; None if the pixels are not in the
        map (compressed batches decode into memory)."""
        whole, nbytes = self.mapped.whole, self.meta.nbytes
        offsets = np.empty(self.meta.n, dtype=np.int64)
        with damage_is_clear(self.mapped.file):
            for b in range(reader.num_record_batches):
                column = reader.get_batch(b).column(0)
                self._check_batch(b, len(column))
                start = column.buffers()[1].address - whole.address + column.offset * nbytes
                if start < 0 or start + len(column) * nbytes > whole.size:
                    return None
                offsets[b * self.rows : b * self.rows + len(column)] = (
                    start + np.arange(len(column), dtype=np.int64) * nbytes
                )
        self.windows = np.lib.stride_tricks.sliding_window_view(
            np.frombuffer(whole, dtype=np.uint8), nbytes
        )  # windows[o] is the nbytes starting at byte o: a view, no copy
        return offsets

    def _labels(self, reader: ipc.RecordBatchFileReader) -> np.ndarray:
        with damage_is_clear(self.mapped.file):
            column = pa.chunked_array(
                [reader.get_batch(b).column(1) for b in range(reader.num_record_batches)],
                type=reader.schema.field(LABEL).type,
            )
        return labels_of(column, self.meta)

    def _check_batch(self, b: int, length: int) -> None:
        if length != min(self.rows, self.meta.n - b * self.rows):
            raise rebuild(self.mapped.file, f"record batch {b} holds {length} rows")

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = self.meta.check_indices(indices)
        if self.offsets is not None and self.fd is not None:
            out = np.empty((len(idx), *self.meta.shape), dtype=np.uint8)
            jobs = [(self.fd, off) for off in self.offsets[idx].tolist()]
            pread_rows(jobs, out, self.mapped.file, self.pool, self.depth)
            return out, self.labels[idx]
        if self.offsets is not None:
            images = self.windows[self.offsets[idx]]
            return images.reshape(len(idx), *self.meta.shape), self.labels[idx]
        return self._decompressing(idx)

    def _decompressing(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode each touched record batch once and gather its rows."""
        images = np.empty((len(idx), self.meta.nbytes), dtype=np.uint8)
        labels = np.empty(len(idx), dtype=self.meta.label_dtype)
        batch_of = idx // self.rows
        for b in np.unique(batch_of):
            rows = np.flatnonzero(batch_of == b)
            with self.lock, damage_is_clear(self.mapped.file):
                batch = self.mapped.reader.get_batch(int(b))
            self._check_batch(int(b), batch.num_rows)
            local = idx[rows] - b * self.rows
            pixels = rows_of(batch.column(0), self.meta.nbytes).reshape(-1, self.meta.nbytes)
            images[rows] = pixels[local]
            labels[rows] = batch.column(1).to_numpy()[local]
        return images.reshape(len(idx), *self.meta.shape), labels

    def close(self) -> None:
        self.windows = self.offsets = None  # drop the views of the map
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.mapped.close()


class TunedFeather(ArrowStore):
    format = "feather"
    mode = "tuned"
    random_advice = (
        "madvise(MADV_RANDOM) on the reader's map of store.arrow; with io_depth > 1, "
        "posix_fadvise(POSIX_FADV_RANDOM) on the descriptor it preads from"
    )
    io_depth_how = (
        "uncompressed: one os.preadv per image at its offset in the file, on io_depth threads "
        "per reader (compressed record batches are decoded whole, without a pool)"
    )
    file = FILE
    batches = _Batches

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        rows = max(1, int(self.options["feather_batch_images"]))
        self._write(to_table(images, labels, batch_rows=rows), path, rows)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        rows = max(1, int(self.options["feather_batch_images"]))
        self._write(to_encoded_table(blobs, labels, batch_rows=rows), path, rows)

    def _write(self, table: pa.Table, path: Path, rows: int) -> None:
        feather.write_feather(
            table,
            str(path / FILE),
            compression=codec(self.options["feather_compression"]),
            chunksize=rows,
        )

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        mapped = _Mapped(path / FILE)
        table = None
        try:
            with damage_is_clear(mapped.file):
                table = mapped.reader.read_all()
            images = copy_images(table.column(IMAGE).chunks, mapped.meta)
            labels = labels_of(table.column(LABEL), mapped.meta)
        finally:
            del table  # the zero-copy table pins the map: drop it before unmapping
            mapped.close()
        return images, labels

    def read_encoded(self, path: Path) -> tuple[list[memoryview], np.ndarray]:
        # As read_many: the zero-copy table of the map, then one copy of each record
        # batch's values buffer out of the map (a lazy view would not be a read, and the map
        # is closed here); every blob is a memoryview of that copy. Compressed batches are
        # decompressed into memory already: used as they are.
        mapped = _Mapped(path / FILE, EncodedMeta)
        table = None
        try:
            with damage_is_clear(mapped.file):
                table = mapped.reader.read_all()
            blobs = blobs_of(table.column(IMAGE).chunks, mapped.whole)
            labels = labels_of(table.column(LABEL), mapped.meta)
        finally:
            del table  # the zero-copy table pins the map: drop it before unmapping
            mapped.close()
        if len(blobs) != mapped.meta.n:
            raise rebuild(
                mapped.file, f"{len(blobs)} images, but its metadata says {mapped.meta.n}"
            )
        return blobs, labels
