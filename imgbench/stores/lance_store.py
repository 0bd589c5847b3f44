"""Lance (pylance): one Lance dataset, one row per image, read back by ``take``.

Layout: ``<path>/store.lance/`` holds everything Lance writes: ``data/*.lance`` (the rows;
one data file per ``lance_rows_per_file`` rows, i.e. one fragment each), ``_versions/``
(the manifest) and ``_transactions/``. Columns: ``image``, a ``fixed_size_binary`` of
H*W*C bytes (the raw pixels), and ``label`` in the labels' own integer type; the image
shape and the labels' numpy dtype are in the schema metadata.

Why this layout:

- Lance v2 files have no row groups (https://lancedb.github.io/lance/format/file, "No
  Row Groups"): a column is a sequence of disk pages, and ``write_dataset``'s
  ``max_rows_per_group`` changes nothing in them (checked with ``lance.file``: the same
  pages either way). The knobs that do change the files are ``max_rows_per_file`` (how
  many data files) and ``data_storage_version`` (how pages are encoded); those are the
  options.
- ``fixed_size_binary`` rather than ``large_binary``: ``take`` of shuffled batches of
  256 was faster with it (~1.3x on 2.2 files, ~2x on 2.0 files, rough, 2 shared cores),
  and a whole scan is one contiguous values buffer per batch (no offsets to walk).
- ``data_storage_version`` "2.0" by default (the Lance default is the newest stable, 2.2):
  2.0 stores the fixed-width pixels as flat pages of ~30 MB, 2.2 as one "full-zip" page
  per file; a full scan of 2.0 files ran ~2x faster here and ``take`` about the same (see
  the measurements in the format's report).

Random access is ``LanceDataset.take(indices)``, which returns rows in the order given,
repeats included (https://lancedb.github.io/lance-python-doc/random-access.html).

Fork safety: Lance runs Rust tokio runtimes with threads and warns at every fork that it is
not fork-safe. The batch reader opens the dataset inside the reader, so a forked reader
opens its own; pylance re-creates its I/O executors in a forked child (lance-format/lance
PR #4903). Measured here: children of a parent that had only *imported* Lance read fine
(no failure in 260 forked children), as the pipeline's epoch jobs fork them; children of a parent
that had already *used* Lance (a write, or a read) died of SIGSEGV or hung in up to 4 of
10 forks, at random. So a reader forked from a process that has used Lance raises a
one-line :class:`StoreError` instead of touching Lance. Lance keeps no checksums of data
pages: a missing or truncated data file raises (checked before reading, in one line), a
flipped byte inside the pixels is returned as is.

Encoded payload (issue 13): the same dataset and options with ``image`` a ``binary``
column (``large_binary`` past 2 GiB in all) of the original files' bytes, unchanged;
``read_encoded`` scans as ``read_many`` and returns memoryviews of the scanned batches'
values buffers.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa

from imgbench.core.errors import StoreError
from imgbench.stores._arrow import blobs_of, to_encoded_table
from imgbench.stores.base import Store

DIR = "store.lance"
META = b"imgbench"  # schema-metadata key: {"n", "shape", "label_dtype"}
SCAN_BATCH = 4096  # rows per scanned batch in read_many (larger batches were not faster)

#: The process that has run Lance (its tokio runtimes have threads from then on). A fork
#: of it inherits this value and refuses to touch Lance: see :func:`_fork_guard`.
_USED_IN: int | None = None


def _fork_guard(where: Path) -> None:
    """Refuse Lance in a forked child of a process that had already used Lance: such
    children crashed (SIGSEGV) or hung in up to 4 of 10 forks here, at random. One line
    instead; a parent that only imported Lance forks readers that work."""
    global _USED_IN
    if _USED_IN is not None and _USED_IN != os.getpid():
        raise StoreError(
            f"{where}: Lance is not fork-safe and this reader was forked from process "
            f"{_USED_IN}, which had already used Lance; open the store only in the readers "
            "(or use reader threads)"
        )
    _USED_IN = os.getpid()


def _fixed(images: np.ndarray) -> pa.FixedSizeBinaryArray:
    """The images as one fixed-size-binary array over their own buffer (no copy)."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    width = max(1, flat.shape[1])
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(flat), [None, pa.py_buffer(flat)]
    )


def _pixels(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The pixel bytes of a fixed-size-binary column as (rows, width) uint8 (a view if the
    column is one chunk)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.byte_width
    values = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    start = column.offset * width
    return values[start : start + len(column) * width].reshape(len(column), width)


def scan_rows(
    ds: lance.LanceDataset,
    n: int,
    shape: tuple[int, ...],
    label_dtype: np.dtype,
    where: str,
    fix: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Every row in store order: one scan, batches copied once into preallocated arrays (the
    local and the S3 full read); a row count other than *n* fails naming *where* and *fix*."""
    images = np.empty((n, *shape), dtype=np.uint8)
    labels = np.empty(n, dtype=label_dtype)
    flat, pos = images.reshape(n, -1), 0
    for batch in ds.to_batches(columns=["image", "label"], batch_size=SCAN_BATCH):
        rows = batch.num_rows
        if pos + rows > n:
            raise StoreError(f"{where}: more rows than the {n} in its metadata")
        flat[pos : pos + rows] = _pixels(batch.column(0))
        labels[pos : pos + rows] = batch.column(1).to_numpy()
        pos += rows
    if pos != n:
        raise StoreError(f"{where}: read {pos} of {n} rows; {fix}")
    return images, labels


class TunedLance(Store):
    format = "lance"
    mode = "tuned"
    random_advice_why_not = (
        "Lance reads its data files with its own Rust I/O (no descriptor or map reaches Python)"
    )
    io_depth_why_not = (
        "Lance's take already schedules a batch's reads concurrently on its own I/O runtime"
    )

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        _fork_guard(path / DIR)
        labels = np.asarray(labels)
        meta = {"n": len(images), "shape": list(images.shape[1:]), "label_dtype": labels.dtype.str}
        native = labels.astype(labels.dtype.newbyteorder("="), copy=False)
        table = pa.table({"image": _fixed(images), "label": pa.array(native)})
        self._write(table.replace_schema_metadata({META: json.dumps(meta)}), path)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # A binary column (large_binary past 2 GiB), same files and storage version; the
        # schema metadata under the same key says "payload": "encoded".
        _fork_guard(path / DIR)
        self._write(to_encoded_table(blobs, labels), path)

    def _write(self, table: pa.Table, path: Path) -> None:
        lance.write_dataset(
            table,
            str(path / DIR),
            mode="create",
            max_rows_per_file=max(1, int(self.options["lance_rows_per_file"])),
            data_storage_version=str(self.options["lance_storage_version"]),
        )

    @staticmethod
    def _open(path: Path) -> tuple[lance.LanceDataset, dict]:
        """Open the dataset and check it is whole: every data file the manifest lists is
        there with the size the manifest recorded (Lance itself would fail later with "Not
        found" or "failed to fill whole buffer")."""
        uri = path / DIR
        _fork_guard(uri)
        try:
            ds = lance.dataset(str(uri))
        except (ValueError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(
                f"{uri}: not a readable Lance dataset ({first}); delete the store directory "
                "and rerun the build"
            ) from None
        raw = (ds.schema.metadata or {}).get(META)
        if raw is None:
            raise StoreError(f"{uri}: no imgbench metadata in the schema; rebuild the store")
        meta = json.loads(raw)
        for frag in ds.get_fragments():
            for data in frag.metadata.files:
                file = uri / "data" / data.path
                if not file.exists():
                    raise StoreError(
                        f"{file}: data file missing; delete the store directory and rerun the build"
                    )
                size, want = file.stat().st_size, data.file_size_bytes
                if want is not None and size != want:
                    raise StoreError(
                        f"{file}: {size} bytes, the manifest says {want}: the data file is "
                        "truncated or damaged; delete the store directory and rerun the build"
                    )
        if ds.count_rows() != meta["n"]:
            raise StoreError(
                f"{uri}: {ds.count_rows()} rows, the metadata says {meta['n']}; delete the "
                "store directory and rerun the build"
            )
        return ds, meta

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        ds, meta = self._open(path)
        shape, dtype = tuple(meta["shape"]), np.dtype(meta["label_dtype"])
        return scan_rows(ds, int(meta["n"]), shape, dtype, str(path / DIR), "rebuild the store")

    def read_encoded(self, path: Path) -> tuple[list[memoryview], np.ndarray]:
        # Scanned batches as read_many; each batch's values buffer is memory Lance decoded
        # into (no map): every blob is a memoryview of it, no further copy.
        ds, meta = self._open(path)
        if meta.get("payload") != "encoded":
            raise StoreError(
                f"{path / DIR}: not an encoded-payload imgbench Lance dataset; delete the store "
                "directory and rerun the build"
            )
        n = int(meta["n"])
        labels = np.empty(n, dtype=np.dtype(meta["label_dtype"]))
        blobs: list[memoryview] = []
        for batch in ds.to_batches(columns=["image", "label"], batch_size=SCAN_BATCH):
            rows, pos = batch.num_rows, len(blobs)
            if pos + rows > n:
                raise StoreError(f"{path / DIR}: more rows than the {n} in its metadata")
            blobs.extend(blobs_of([batch.column(0)]))
            labels[pos : pos + rows] = batch.column(1).to_numpy()
        if len(blobs) != n:
            raise StoreError(f"{path / DIR}: read {len(blobs)} of {n} rows; rebuild the store")
        return blobs, labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        ds, meta = self._open(path)  # opened here: a forked reader opens its own dataset
        shape, dtype = tuple(meta["shape"]), np.dtype(meta["label_dtype"])
        yield lambda indices: self._take(ds, shape, dtype, indices)

    @staticmethod
    def _take(
        ds: lance.LanceDataset, shape: tuple, dtype: np.dtype, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        table = ds.take(idx, columns=["image", "label"])  # in the order given, repeats kept
        if table.num_rows != len(idx):
            raise StoreError(f"{ds.uri}: take returned {table.num_rows} of {len(idx)} rows")
        images = _pixels(table.column("image")).reshape(len(idx), *shape).copy()
        return images, table.column("label").to_numpy().astype(dtype)
