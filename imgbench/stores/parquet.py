"""Apache Parquet (pyarrow): one file ``store.parquet``, one row per image.

Layout (shared with feather, see :mod:`imgbench.stores._arrow`): an ``image`` column of
``fixed_size_binary(H*W*C)`` (a FIXED_LEN_BYTE_ARRAY column, PLAIN-encoded, no repetition
levels) and a ``label`` column in the labels' own integer type; shape and dtypes in the
schema metadata.

Tuned for shuffled mini-batches. pyarrow decodes whole column chunks: to get one row it
reads and decodes the image column of that row's entire row group (it has no row-level
reads through the page index), so the row group is the unit of random access. The Parquet
docs recommend 512 MB-1 GB row groups for sequential scans and small (8 KB) data pages for
single-row lookups (https://parquet.apache.org/docs/file-format/configurations/); the Lance
paper (Pace et al., arXiv 2504.15247) shows Parquet tuned for random access is >60x faster
than with its defaults. The streaming-friendly layout hurts random access badly: with
1,024-image row groups a shuffled batch of 256 out of 100,000 touches ~92 of the 98 row
groups, i.e. decodes nearly the whole file per batch (~10k images/s measured, vs ~130k with
16-image groups). So the default is ``parquet_row_group_images = 16`` (48 KB of CIFAR
pixels per group): a warm full read stays ~3x ``np.load`` (per-row-group overhead), and the
footer (~124 B per row group, 0.8 MB for 100k images) opens in ~10 ms. Smaller groups make
batches a little faster but full reads and opening slower (8: ~140k images/s, read_many
~5x ``np.load``; 4: footer 3 MB, ~0.1 s to open).

Also: no compression by default (random pixels do not compress; real photos barely with
snappy/zstd, and decompression adds CPU to every read), no dictionary encoding (never pays
for pixels), no column statistics (min/max of pixel blobs are useless), the default 1 MiB
data page (pyarrow reads the whole column chunk anyway, so smaller pages do not help it).
Page checksums (``write_page_checksum``) would catch flipped pixel bytes, but doubled read
CPU when measured, so they are off, as no other format here checksums pixels either.

Reads are memory-mapped. ``read_many`` pre-buffers (pyarrow prefetches the column chunks
with parallel reads: as fast warm, several times faster cold), reads both columns and
copies the image chunks once into one array; it reads the map through a ``BufferReader``
(:class:`~imgbench.stores._arrow.MappedFile`: pyarrow's own memory-mapped file,
pre-buffered, stayed mapped a moment after the read). ``batch_reader`` opens without
pre-buffering (it halved warm batch throughput and did not reliably help cold batches),
maps indices to row groups with the footer's row counts, reads only the touched groups'
image column in one ``read_row_groups`` call, ``take``s the rows in batch order and copies
them once into the output; labels are read once per reader. Each reading thread gets its
own ``ParquetFile`` (sharing one is not documented as safe).

Encoded payload (issue 13): the same file and writer options (``parquet_row_group_images``
rows per row group, codec, no dictionary, no statistics) with ``image`` a ``binary``
column (``large_binary`` past 2 GiB in all) of the original files' bytes, PLAIN-encoded
BYTE_ARRAY values; ``read_encoded`` reads like ``read_many`` and returns memoryviews of
the decoded values buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgbench.stores._arrow import (
    IMAGE,
    LABEL,
    ArrowStore,
    EncodedMeta,
    MappedFile,
    Meta,
    PerThread,
    blobs_of,
    copy_images,
    damage_is_clear,
    fill,
    labels_of,
    rebuild,
    to_encoded_table,
    to_table,
)
from imgbench.stores.base import advise_maps

FILE = "store.parquet"
CODECS = ("none", "snappy", "zstd", "lz4", "gzip", "brotli")


def codec(value: str | None) -> str:
    """The Parquet codec name for the ``parquet_compression`` option (None = none)."""
    name = "none" if value is None else str(value).lower()
    if name not in CODECS:
        raise ValueError(f"parquet_compression {value!r}: use null or one of {', '.join(CODECS)}")
    return name


def open_file(file: Path, pre_buffer: bool = False) -> pq.ParquetFile:
    """Open for reading, memory-mapped; a damaged footer raises a StoreError."""
    with damage_is_clear(file):
        return pq.ParquetFile(file, memory_map=True, pre_buffer=pre_buffer)


@contextlib.contextmanager
def _whole_table(file: Path, meta_type: type[Meta]) -> Iterator[tuple[pa.Table, Meta]]:
    """Both columns of the whole file and its metadata; unmapped on exit (once the caller
    drops the table). Pre-buffered: as fast warm, much faster cold."""
    mapped = MappedFile(file)
    try:
        with damage_is_clear(file):
            pf = pq.ParquetFile(mapped.stream, pre_buffer=True)
        meta = meta_type(pf.schema_arrow, file)
        with damage_is_clear(file):
            table = pf.read(columns=[IMAGE, LABEL], use_threads=False)  # threads: no gain
        del pf  # it holds slices of the map
        yield table, meta
    finally:
        mapped.close()


class _Batches:
    """Random access through one open store: row-group offsets and labels read once. Under
    *random* (issue 22), each handle's map (pyarrow's own) is madvised MADV_RANDOM as it
    opens; *pool* and *depth* are not used (see ``io_depth_why_not``)."""

    def __init__(
        self,
        file: Path,
        random: bool = False,
        pool: ThreadPoolExecutor | None = None,
        depth: int = 1,
    ) -> None:
        self.file = file

        def open_advised() -> pq.ParquetFile:
            handle = open_file(file)  # memory-mapped by pyarrow at open
            advise_maps([file], random)
            return handle

        self.handles = PerThread(open_advised)
        try:
            pf = self.handles.get()
            self.meta = Meta(pf.schema_arrow, file)
            md = pf.metadata
            self.counts = np.array([md.row_group(i).num_rows for i in range(md.num_row_groups)])
            self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
            self.meta.check_rows(int(self.starts[-1]))
            with damage_is_clear(file):
                labels = pf.read(columns=[LABEL], use_threads=False).column(0)
            self.labels = labels_of(labels, self.meta)
        except BaseException:
            self.handles.close()
            raise

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = self.meta.check_indices(indices)
        out = np.empty((len(idx), *self.meta.shape), dtype=np.uint8)
        if len(idx):
            group = np.searchsorted(self.starts, idx, side="right") - 1
            touched, inverse = np.unique(group, return_inverse=True)
            sizes = self.counts[touched]
            first = np.cumsum(sizes) - sizes  # where each touched group starts in the read
            with damage_is_clear(self.file):
                column = (
                    self.handles.get()
                    .read_row_groups(touched.tolist(), columns=[IMAGE], use_threads=False)
                    .column(0)
                )
                if len(column) != int(sizes.sum()):
                    raise rebuild(self.file, "row groups hold fewer rows than the footer says")
                fill(out, column.take(first[inverse] + idx - self.starts[group]).chunks, self.meta)
        return out, self.labels[idx]

    def close(self) -> None:
        self.handles.close()


class TunedParquet(ArrowStore):
    format = "parquet"
    mode = "tuned"
    random_advice = (
        "madvise(MADV_RANDOM) on pyarrow's map of store.parquet (found in /proc/self/maps), "
        "for each reading thread's handle"
    )
    io_depth_why_not = (
        "not read by offset: a batch is one read_row_groups call in which pyarrow reads and "
        "decodes whole row groups from its map"
    )
    file = FILE
    batches = _Batches

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        self._write(to_table(images, labels), path)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        self._write(to_encoded_table(blobs, labels), path)

    def _write(self, table: pa.Table, path: Path) -> None:
        rows = max(1, int(self.options["parquet_row_group_images"]))
        pq.write_table(
            table,
            path / FILE,
            row_group_size=rows,
            compression=codec(self.options["parquet_compression"]),
            use_dictionary=False,
            write_statistics=False,
        )

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with _whole_table(path / FILE, Meta) as (table, meta):
            return copy_images(table.column(0).chunks, meta), labels_of(table.column(1), meta)

    def read_encoded(self, path: Path) -> tuple[list[memoryview], np.ndarray]:
        # As read_many; the decoded binary column is memory of its own (PLAIN byte arrays
        # are length-prefixed in the file, so decoding copies them out of the map): every
        # blob is a memoryview of it, no further copy.
        file = path / FILE
        with _whole_table(file, EncodedMeta) as (table, meta):
            blobs = blobs_of(table.column(0).chunks)
            labels = labels_of(table.column(1), meta)
        if len(blobs) != meta.n:
            raise rebuild(file, f"{len(blobs)} images, but its metadata says {meta.n}")
        return blobs, labels
