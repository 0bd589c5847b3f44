"""Parquet and Feather (Arrow IPC file) from object storage, through pyarrow's own S3
filesystem (``pyarrow.fs.S3FileSystem``, the AWS C++ SDK): ranged GETs chosen by the
format's own metadata, decoded by the local stores' helpers (:mod:`imgbench.stores._arrow`)
so pixels and labels come back exactly as the local tuned stores return them.

A reader makes its filesystem and opens the object inside :meth:`batch_reader` (readers are
forked; the AWS SDK must not start in the parent) and keeps both, and the parsed footer, for
all its batches. The object handle (``RandomAccessFile``) is shared by the reader's threads
(Arrow documents ``ReadAt`` as safe to call concurrently); the format readers on top of it
are one per thread (:class:`~imgbench.stores._arrow.PerThread`), as locally.

* Parquet: the footer is read once per reader (one or two GETs at the end of the object).
  An index maps to its row group by the footer's row counts; a batch reads only the touched
  row groups, both columns. The reader is pre-buffered (lazy, pyarrow's default cache
  options: ranges closer than 8 KiB coalesce, up to 32 MiB), so a row group's image and
  label column chunks, which are adjacent in the file, are one ranged GET, and a run of
  consecutive touched groups is one GET too. Runs are read on ``requests_in_flight``
  threads, one GET in flight each. The full read is contiguous slices of row groups of at
  most :data:`SLICE_BYTES` (one GET each), ``requests_in_flight`` at a time.
* Feather: ``ipc.open_file`` over the object reads the footer once per thread. The IPC
  format has no row-level reads: a record batch is read whole (its metadata message, then
  its body, by pyarrow), so a batch reads every touched record batch whole, each on a
  thread of the pool, and gathers its rows (one ranged GET per record batch, measured). With
  the local default of 65,536 rows per record batch that is 192 MiB of CIFAR pixels per
  touched record batch: see :attr:`RemoteFeather.tuned_for_s3`. The full read GETs the
  object in :data:`SLICE_BYTES` ranges, ``requests_in_flight`` at a time, and decodes it
  from memory.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from imgbench.core.errors import StoreError
from imgbench.stores import feather as local_feather
from imgbench.stores import parquet as local_parquet
from imgbench.stores._arrow import IMAGE, LABEL, Meta, PerThread, fill, rows_of
from imgbench.stores.remote.base import Reader, RemoteStore, in_flight
from imgbench.stores.s3 import S3Target

#: most bytes of one ranged GET of the full Parquet read: pyarrow's own coalescing limit
#: (``CacheOptions.range_size_limit``), so one slice of row groups is one GET
SLICE_BYTES = 32 << 20


def filesystem(target: S3Target) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the target's endpoint and credentials (starts the AWS
    SDK: call it only inside a reader)."""
    creds = target.creds
    return pafs.S3FileSystem(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        session_token=creds.session_token,
        region=creds.region,
        endpoint_override=target.host,
        scheme=target.scheme,
        connect_timeout=10,
        request_timeout=60,
    )


@contextlib.contextmanager
def named(url: str) -> Iterator[None]:
    """pyarrow's errors on a missing, truncated or damaged object as one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise StoreError(f"{url}: no such object; upload the store again") from None
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise StoreError(
            f"{url}: unreadable over S3 ({type(exc).__name__}: {first}); the object is "
            "truncated or damaged: upload the store again"
        ) from None


class _Object:
    """One store object opened through pyarrow's S3 filesystem, for one reader."""

    def __init__(self, target: S3Target, relative: str) -> None:
        self.url = target.url(relative)
        self.fs = filesystem(target)
        with named(self.url):
            # HEAD once (the size); every read after is a ranged GET
            self.source = self.fs.open_input_file(f"{target.bucket}/{target.key(relative)}")

    def close(self) -> None:
        self.source.close()
        self.fs = None


def _labels(column: pa.ChunkedArray | pa.Array, meta: Meta) -> np.ndarray:
    """A label column as numpy in the dtype the writer recorded (as the local stores)."""
    labels = column.to_numpy()
    if labels.dtype != meta.label_dtype.newbyteorder("="):
        raise StoreError(
            f"{meta.file}: labels are {labels.dtype}, metadata says {meta.label_dtype}; "
            "upload the store again"
        )
    return np.array(labels, dtype=meta.label_dtype, copy=True)


class _ParquetReader:
    """A reader's open Parquet object: footer parsed once, one ParquetFile per thread over
    the one shared object handle (no footer read after the first)."""

    def __init__(self, target: S3Target, pool: ThreadPoolExecutor | None, threads: int = 1) -> None:
        self.obj = _Object(target, local_parquet.FILE)
        self.pool, self.threads = pool, threads
        url = self.obj.url
        try:
            with named(url):
                first = pq.ParquetFile(self.obj.source, pre_buffer=True)
                self.md = first.metadata
                self.meta = Meta(first.schema_arrow, url)  # type: ignore[arg-type]
            md = self.md
            self.counts = np.array(
                [md.row_group(i).num_rows for i in range(md.num_row_groups)], dtype=np.int64
            )
            self.bytes = np.array(
                [md.row_group(i).total_byte_size for i in range(md.num_row_groups)], np.int64
            )
            self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
            self.meta.check_rows(int(self.starts[-1]))

            def reopen() -> pq.ParquetFile:
                return pq.ParquetFile(self.obj.source, metadata=self.md, pre_buffer=True)

            self.handles = PerThread(reopen)
        except BaseException:
            self.obj.close()
            raise

    def _groups(self, groups: list[int]) -> pa.Table:
        """Both columns of *groups* (consecutive: one coalesced GET), on this thread."""
        with named(self.obj.url):
            table = self.handles.get().read_row_groups(
                groups, columns=[IMAGE, LABEL], use_threads=False
            )
        if table.num_rows != int(self.counts[groups].sum()):
            raise StoreError(f"{self.obj.url}: row groups hold fewer rows than the footer says")
        return table

    def _runs(self, groups: np.ndarray, max_bytes: int) -> list[list[int]]:
        """Sorted *groups* cut into runs of consecutive groups of at most *max_bytes*."""
        runs: list[list[int]] = []
        size = 0
        for g in groups.tolist():
            if runs and runs[-1][-1] == g - 1 and size + self.bytes[g] <= max_bytes:
                runs[-1].append(g)
                size += int(self.bytes[g])
            else:
                runs.append([g])
                size = int(self.bytes[g])
        return runs

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = self.meta.check_indices(indices)
        out = np.empty((len(idx), *self.meta.shape), dtype=np.uint8)
        if not len(idx):
            return out, np.empty(0, dtype=self.meta.label_dtype)
        group = np.searchsorted(self.starts, idx, side="right") - 1
        touched, inverse = np.unique(group, return_inverse=True)
        runs = self._runs(touched, SLICE_BYTES)
        tables = in_flight(self.pool, lambda r: self._groups(runs[r]), range(len(runs)))
        sizes = self.counts[touched]
        first = np.cumsum(sizes) - sizes  # where each touched group starts in the read
        rows = pa.array(first[inverse] + idx - self.starts[group])
        images = pa.chunked_array([c for t in tables for c in t.column(0).chunks])
        labels = pa.chunked_array([c for t in tables for c in t.column(1).chunks])
        fill(out, images.take(rows).chunks, self.meta)
        return out, _labels(labels.take(rows), self.meta)

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        n, groups = self.meta.n, len(self.counts)
        out = np.empty((n, *self.meta.shape), dtype=np.uint8)
        labels = np.empty(n, dtype=self.meta.label_dtype)
        # at least one slice per thread, each at most SLICE_BYTES
        limit = min(SLICE_BYTES, max(1, int(self.bytes.sum()) // self.threads))
        runs = self._runs(np.arange(groups), limit)

        def one(r: int) -> None:
            table = self._groups(runs[r])
            lo, hi = int(self.starts[runs[r][0]]), int(self.starts[runs[r][-1] + 1])
            fill(out[lo:hi], table.column(0).chunks, self.meta)
            labels[lo:hi] = _labels(table.column(1), self.meta)

        in_flight(self.pool, one, range(len(runs)))
        return out, labels

    def close(self) -> None:
        self.handles.close()
        self.obj.close()


class _FeatherReader:
    """A reader's open Feather object: one IPC file reader per thread (each reads the
    footer once) over the one shared object handle."""

    def __init__(self, target: S3Target, pool: ThreadPoolExecutor | None, threads: int = 1) -> None:
        self.obj = _Object(target, local_feather.FILE)
        self.pool, self.threads = pool, threads
        url = self.obj.url
        self.local = threading.local()
        try:
            reader = self._reader()
            self.meta = Meta(reader.schema, url)  # type: ignore[arg-type]
            rows = int(self.meta.raw.get("batch_rows") or 0)
            batches = reader.num_record_batches
            if rows < 1 or (self.meta.n + rows - 1) // rows != batches:
                raise StoreError(f"{url}: {batches} record batches do not hold {self.meta.n} rows")
            self.rows, self.batches = rows, batches
        except BaseException:
            self.obj.close()
            raise

    def _reader(self) -> ipc.RecordBatchFileReader:
        """This thread's IPC reader, opened (its footer read) on first use."""
        reader = getattr(self.local, "reader", None)
        if reader is None:
            with named(self.obj.url):
                reader = self.local.reader = ipc.open_file(self.obj.source)
        return reader

    def _batch(self, b: int) -> pa.RecordBatch:
        """Record batch *b*, read whole on this thread (its metadata, then its body)."""
        with named(self.obj.url):
            batch = self._reader().get_batch(b)
        if batch.num_rows != min(self.rows, self.meta.n - b * self.rows):
            raise StoreError(f"{self.obj.url}: record batch {b} holds {batch.num_rows} rows")
        return batch

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = self.meta.check_indices(indices)
        nbytes = self.meta.nbytes
        images = np.empty((len(idx), nbytes), dtype=np.uint8)
        labels = np.empty(len(idx), dtype=self.meta.label_dtype)
        batch_of = idx // self.rows
        touched = np.unique(batch_of).tolist()

        def one(k: int) -> None:
            b = touched[k]
            batch = self._batch(b)
            where = np.flatnonzero(batch_of == b)
            local = idx[where] - b * self.rows
            images[where] = rows_of(batch.column(0), nbytes).reshape(-1, nbytes)[local]
            labels[where] = _labels(batch.column(1), self.meta)[local]

        in_flight(self.pool, one, range(len(touched)))
        return images.reshape(len(idx), *self.meta.shape), labels

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """The object whole, in ranged GETs of at most SLICE_BYTES (requests_in_flight at
        once), then every record batch decoded from memory: a record batch per GET would
        make small batches request-bound (12 MB/s with 16-row batches, measured)."""
        size = self.obj.source.size()
        whole = np.empty(size, dtype=np.uint8)
        step = min(SLICE_BYTES, max(1, -(-size // self.threads)))
        starts = list(range(0, size, step))

        def get(k: int) -> None:
            lo = starts[k]
            want = min(step, size - lo)
            with named(self.obj.url):
                got = self.obj.source.read_at(want, lo)
            if len(got) != want:
                raise StoreError(f"{self.obj.url}: cut off at {lo + len(got)} of {size} bytes")
            whole[lo : lo + want] = np.frombuffer(got, dtype=np.uint8)

        in_flight(self.pool, get, range(len(starts)))
        with named(self.obj.url):
            table = ipc.open_file(pa.BufferReader(pa.py_buffer(whole))).read_all()
        out = np.empty((self.meta.n, *self.meta.shape), dtype=np.uint8)
        fill(out, table.column(IMAGE).chunks, self.meta)
        labels = _labels(table.column(LABEL), self.meta)
        self.meta.check_rows(len(labels))
        return out, labels

    def close(self) -> None:
        self.local = threading.local()  # drop the readers: they hold the object handle
        self.obj.close()


class _ArrowRemote(RemoteStore):
    """What the two share: a reader per ``batch_reader``/``read_all``, closed after."""

    reader_class: type[_ParquetReader] | type[_FeatherReader]

    @contextlib.contextmanager
    def _open(self) -> Iterator[_ParquetReader | _FeatherReader]:
        with self.pool() as pool:
            reader = self.reader_class(self.target, pool, self.requests_in_flight)
            try:
                if reader.meta.n != self.n or reader.meta.shape != self.image_shape:
                    raise StoreError(
                        f"{reader.obj.url}: {reader.meta.n} images of {reader.meta.shape}, "
                        f"expected {self.n} of {self.image_shape}; upload the store again"
                    )
                yield reader
            finally:
                reader.close()

    @contextlib.contextmanager
    def batch_reader(self, path: Any = "") -> Iterator[Reader]:
        with self._open() as reader:  # opened here: in the forked reader, not the parent
            yield reader.read

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        with self._open() as reader:
            return reader.read_all()


class RemoteParquet(_ArrowRemote):
    format = "parquet"
    access = "range"
    reader_class = _ParquetReader
    in_flight = (
        "a pool of requests_in_flight threads per reader, each reading one run of consecutive "
        "touched row groups (one coalesced ranged GET) at a time through its own ParquetFile"
    )
    tuned_for_s3 = (
        "parquet_row_group_images is the unit of a ranged GET: the pipeline builds 16 (48 KiB "
        "of CIFAR pixels plus labels per group), so a shuffled image costs one small GET "
        "(measured 0.74 GETs, 44 KiB per image, 20k images), each as fast as our own client's "
        "ranged GET; uncompressed (parquet_compression null), so nothing to inflate; the footer "
        "(~124 B per group) is read once per reader"
    )


class RemoteFeather(_ArrowRemote):
    format = "feather"
    access = "range"
    reader_class = _FeatherReader
    in_flight = (
        "a pool of requests_in_flight threads per reader, each reading one touched record "
        "batch whole (its metadata and body in one ranged GET) through its own IPC file "
        "reader; at most as many in flight as the batch touches record batches"
    )
    tuned_for_s3 = (
        "feather_batch_images is the unit of a read (IPC has no row-level reads; a touched "
        "record batch is one GET, whole). profiles/s3 builds 16 rows, as Parquet's groups: "
        "one ~48 KiB GET per image (44 KiB measured, 20k images). The local default, "
        "pyarrow's 65536 (192 MiB of CIFAR pixels), would make a shuffled batch of 256 GET "
        "the whole store (235 KiB per image at 20k images, 1.2 MB at 100k): free on "
        "loopback, bandwidth-bound on a real link. The full read GETs the object in 32 MiB "
        "ranges either way"
    )
