"""SQLite (standard library ``sqlite3``): one database file, one row per image.

Layout: ``store.sqlite`` with ``images(id INTEGER PRIMARY KEY, label INTEGER NOT NULL,
pixels BLOB NOT NULL)`` -- a rowid table, so the image index *is* the B-tree key and a
lookup by id is one descent, no second index -- and ``meta(key TEXT PRIMARY KEY, value
TEXT)`` holding ``n``, ``shape``, ``dtype`` and ``label_dtype`` (the labels' dtype comes
back as written; SQLite itself stores integers only).

Page size (``sqlite_page_size``): a row whose record fits in a leaf page (up to page size
- 35 bytes, https://www.sqlite.org/fileformat2.html "Cell Payload Overflow Pages") is
stored whole in one leaf; a bigger one spills into a chain of overflow pages. SQLite's
"Internal Versus External BLOBs" (https://www.sqlite.org/intern-v-extern-blob.html)
measured 8192- and 16384-byte pages as best for BLOB reads, and "35% Faster Than The
Filesystem" (https://www.sqlite.org/fasterthanfs.html) its gain on ~10 KB blobs. For a
3,072-byte CIFAR row (~3,085 bytes with its header) the page size decides how many rows a
leaf holds: one at 4096 (25% of the file is slack), two at 8192 (same), five at 16384
(94% full), 21 at 65536. Measured here (rough, shared 2-core VM, 100k CIFAR, warm):
full scan 0.31 / 0.25 / 0.155 / 0.12 s and shuffled batches 0.34 / 0.38 / 0.41 / 0.39 M
images/s for 4096 / 8192 / 16384 / 65536; files 1.34 / 1.34 / 1.07 / 1.02x the pixels.
16384 is the default: SQLite's own recommendation, a dense file, a batch rate as good as
any; 65536 scans ~20% faster warm, but a cold random row then costs a 64 KB page (the
doc's matrix has 64 KB pages at half the 16 KB speed for random 10 KB blobs).
Rows are inserted in id order (SQLite's append fast path fills each leaf before opening
the next), ``sqlite_txn_images`` per transaction.

Journal: ``journal_mode=MEMORY`` and ``synchronous=OFF`` while building. A write-once
store has nothing to protect on a crash -- the pipeline builds into a temporary directory
and renames it only when complete -- so no journal file and no fsync per commit (the
harness flushes every file after the write, as for every format); MEMORY still lets a
failed statement roll back, which OFF would not (https://www.sqlite.org/pragma.html
#pragma_journal_mode). WAL would write every page twice (log, then checkpoint) and leave
``-wal``/``-shm`` files until switched back; with MEMORY the store is one file at every
moment. (Build times of MEMORY, OFF, DELETE and WAL, and of 1,000 to 100,000 rows per
transaction, were all within this VM's noise: 0.3-1.2 s for 100k.)

Reads open the file read-only by URI, ``file:...?mode=ro&immutable=1``
(https://www.sqlite.org/uri.html). ``immutable`` tells SQLite the file cannot change, so
it takes no locks and skips the change check at each read transaction; safe here because
a store is never written again once built (were it modified while open, SQLite could
return wrong rows), and no hot journal can exist that it would ignore (MEMORY journal).
It measured no faster than plain ``mode=ro`` with one statement per batch; it is kept
because it also drops the lock calls. Each forked reader opens its own connection inside
``batch_reader`` (a connection must not cross a fork). ``batch_reader`` sets
``mmap_size`` to the file size, so SQLite reads pages straight from the OS page cache
(0.39 M vs 0.26 M images/s unmapped); ``read_many`` does not (one sequential scan was
faster through SQLite's small page cache than faulting in a fresh map). A truncated file
is caught by SQLite itself (header page count beyond the file: "database disk image is
malformed") before anything past its end is read.
``read_many`` walks the table in rowid order. ``read_batch`` sends one
``SELECT id, label, pixels FROM images WHERE id IN (...)`` with the batch's distinct ids
and scatters the rows (0.39 M images/s against 0.29 M for one prepared single-row
``SELECT`` per index). Every row's blob length, the row count and the id range are
checked, so a damaged store raises rather than returning shifted or missing images.

Encoded payload (issue 13): the same table and settings with a ``data BLOB`` column
holding each original file's bytes, unchanged (``meta`` says ``payload = encoded``);
``read_encoded`` is one ``SELECT label, data ... ORDER BY id`` scan, each blob returned as
the ``bytes`` sqlite3 makes of it, with the same row-count and id-range checks.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores.base import Store, advise_maps

FILE = "store.sqlite"
REBUILD = "delete the store directory and rerun the build"
MAX_PARAMS = 32766  # SQLITE_MAX_VARIABLE_NUMBER since 3.32: ids bound per statement


def _fail(file: Path, what: str) -> StoreError:
    return StoreError(f"{file}: {what}; {REBUILD}")


@contextlib.contextmanager
def open_readonly(file: Path, mmap: bool) -> Iterator[sqlite3.Connection]:
    """The store opened read-only and immutable; with *mmap*, memory-mapped up to its size."""
    if not file.is_file():
        raise _fail(file, "missing")
    uri = f"{file.resolve().as_uri()}?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        if mmap:
            con.execute(f"PRAGMA mmap_size = {file.stat().st_size + (1 << 20)}")
        yield con
    finally:
        con.close()


class _Meta:
    """The store's metadata, read once per open."""

    def __init__(self, con: sqlite3.Connection, file: Path) -> None:
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            self.n = int(meta["n"])
            self.shape = tuple(int(x) for x in json.loads(meta["shape"]))
            self.label_dtype = np.dtype(meta["label_dtype"])
        except (sqlite3.DatabaseError, KeyError, ValueError, TypeError) as exc:
            raise _fail(file, f"not a readable imgbench SQLite store ({exc})") from None
        self.nbytes = int(np.prod(self.shape))
        self.file = file


class TunedSqlite(Store):
    format = "sqlite"
    mode = "tuned"
    random_advice = (
        "madvise(MADV_RANDOM) on SQLite's own map of store.sqlite (mmap_size; found in "
        "/proc/self/maps once the reader's first query has mapped it)"
    )
    io_depth_why_not = (
        "read by key, not by offset: one SELECT per batch walks SQLite's B-tree in its own "
        "map, one page at a time"
    )

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        meta = {
            "n": str(len(images)),
            "shape": json.dumps(list(images.shape[1:])),
            "dtype": "uint8",
            "label_dtype": labels.dtype.str,
        }
        flat = images.reshape(len(images), -1)
        label_list = labels.tolist()
        self._build(
            path / FILE,
            "pixels",
            meta,
            len(images),
            lambda start, stop: ((i, label_list[i], flat[i].data) for i in range(start, stop)),
        )

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # The same table, one row per image, the original file's bytes in a BLOB column
        # (rows larger than a page spill into overflow pages: SQLite's page-size advice for
        # BLOBs above is about exactly this); same page size, transactions, journal and sync.
        labels = np.asarray(labels)
        if len(labels) != len(blobs):
            raise ValueError(f"{len(blobs)} blobs but {len(labels)} labels")
        meta = {"payload": "encoded", "n": str(len(blobs)), "label_dtype": labels.dtype.str}
        label_list = labels.tolist()
        self._build(
            path / FILE,
            "data",
            meta,
            len(blobs),
            lambda start, stop: ((i, label_list[i], blobs[i]) for i in range(start, stop)),
        )

    def _build(
        self,
        file: Path,
        column: str,
        meta: dict[str, str],
        n: int,
        rows: Callable[[int, int], Iterator[tuple]],
    ) -> None:
        """Create the store: the ``images`` table with its BLOB *column*, the metadata, then
        the rows ``rows(start, stop)`` in transactions of ``sqlite_txn_images``."""
        page = int(self.options["sqlite_page_size"])
        step = max(1, int(self.options["sqlite_txn_images"]))
        if page < 512 or page > 65536 or page & (page - 1):
            raise ValueError(f"sqlite_page_size {page}: must be a power of two, 512..65536")
        con = sqlite3.connect(file, isolation_level=None)  # explicit transactions below
        try:
            con.execute(f"PRAGMA page_size = {page}")  # before the first table exists
            con.execute("PRAGMA journal_mode = MEMORY")
            con.execute("PRAGMA synchronous = OFF")
            con.execute(
                "CREATE TABLE images"
                f" (id INTEGER PRIMARY KEY, label INTEGER NOT NULL, {column} BLOB NOT NULL)"
            )
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            insert = f"INSERT INTO images (id, label, {column}) VALUES (?, ?, ?)"
            for start in range(0, n, step):
                con.execute("BEGIN")
                con.executemany(insert, rows(start, min(n, start + step)))
                con.execute("COMMIT")
            got = con.execute("PRAGMA page_size").fetchone()[0]
            if got != page:
                raise StoreError(f"{file}: SQLite kept page size {got}, not {page}")
        finally:
            con.close()

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        file = path / FILE
        # No mmap here: a sequential scan through SQLite's small page cache (one pread per
        # page) beat faulting the whole file into a map (~0.12 s vs ~0.14 s at 100k).
        with open_readonly(file, mmap=False) as con:
            meta = _Meta(con, file)
            out = np.empty((meta.n, *meta.shape), dtype=np.uint8)
            flat = memoryview(out.reshape(-1))
            size, start, label_list = meta.nbytes, 0, []
            append = label_list.append
            try:
                # ids are a unique key: n rows from 0 to n - 1 are exactly 0, 1, ..., n - 1
                lo, hi = con.execute("SELECT min(id), max(id) FROM images").fetchone()
                for label, pixels in con.execute("SELECT label, pixels FROM images ORDER BY id"):
                    end = start + size
                    if len(pixels) != size or end > len(flat):
                        raise _fail(file, f"row {len(label_list)} is damaged or extra")
                    flat[start:end] = pixels
                    start = end
                    append(label)
            except sqlite3.DatabaseError as exc:
                raise _fail(file, f"damaged ({exc})") from None
            if len(label_list) != meta.n or (meta.n and (lo, hi) != (0, meta.n - 1)):
                raise _fail(file, f"{len(label_list)} rows with ids {lo}..{hi}, expected {meta.n}")
        return out, np.array(label_list, dtype=meta.label_dtype)

    def read_encoded(self, path: Path) -> tuple[list[bytes], np.ndarray]:
        file = path / FILE
        with open_readonly(file, mmap=False) as con:  # one sequential scan, as read_many
            try:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("payload") != "encoded":
                    raise KeyError("payload")
                n, dtype = int(meta["n"]), np.dtype(meta["label_dtype"])
            except (sqlite3.DatabaseError, KeyError, ValueError, TypeError) as exc:
                raise _fail(file, f"not an encoded-payload imgbench SQLite store ({exc})") from None
            try:
                lo, hi = con.execute("SELECT min(id), max(id) FROM images").fetchone()
                rows = con.execute("SELECT label, data FROM images ORDER BY id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise _fail(file, f"damaged ({exc})") from None
        if len(rows) != n or (n and (lo, hi) != (0, n - 1)):
            raise _fail(file, f"{len(rows)} rows with ids {lo}..{hi}, expected {n}")
        labels = np.array([row[0] for row in rows], dtype=dtype)
        return [row[1] for row in rows], labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        file = path / FILE
        with open_readonly(file, mmap=True) as con:  # random rows: ~1.6x faster mapped
            meta = _Meta(con, file)  # the first query: SQLite maps the file here
            advise_maps([file], self.random_reads)
            yield lambda indices: self._batch(con, meta, indices)

    @staticmethod
    def _batch(
        con: sqlite3.Connection, meta: _Meta, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= meta.n):
            raise IndexError(f"{meta.file}: index out of range 0..{meta.n - 1}")
        uniq, inverse = np.unique(idx, return_inverse=True)
        ids = uniq.tolist()
        where = {rowid: row for row, rowid in enumerate(ids)}
        size = meta.nbytes
        images = np.empty((len(ids), size), dtype=np.uint8)
        flat = memoryview(images.reshape(-1))
        label_list = [None] * len(ids)
        try:
            for start in range(0, len(ids), MAX_PARAMS):  # one statement for a usual batch
                chunk = ids[start : start + MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT id, label, pixels FROM images WHERE id IN ({marks})"
                for rowid, label, pixels in con.execute(sql, chunk):
                    row = where.get(rowid)
                    if row is None or len(pixels) != size:
                        raise _fail(meta.file, f"row {rowid} ({len(pixels)} bytes) is damaged")
                    flat[row * size : (row + 1) * size] = pixels
                    label_list[row] = label
        except sqlite3.DatabaseError as exc:
            raise _fail(meta.file, f"damaged ({exc})") from None
        if None in label_list:
            raise _fail(meta.file, f"{label_list.count(None)} rows of the batch are missing")
        labels = np.array(label_list, dtype=meta.label_dtype)
        return images[inverse].reshape(len(idx), *meta.shape), labels[inverse]
