"""LevelDB (plyvel): one database, one key per image, read through a private shadow.

Layout: ``<path>/db/`` is a LevelDB database. Image ``i`` is the key ``i`` as 8 big-endian
bytes (key order = index order), its value the raw pixel bytes (no pickle); the labels
(raw bytes, own dtype) and the metadata (JSON: n, shape, dtypes) sit under ``~labels``
and ``~meta``, which sort after every image key.

Write: ``leveldb_batch_images`` puts per ``WriteBatch`` (no sync: the harness flushes
every file). A batch enters the memtable whole, so each batch above the 4 MB write buffer
becomes one sorted table file of about batch x image bytes; keys arrive in order, so
LevelDB places the files without rewriting them (trivial moves). The build ends with
``compact_range()``, which here only flushes the last memtable (it never rewrites the
bottom level: the files keep their numbers), and then waits until no level is over
LevelDB's size limit, so the store is final: a reader never replays a log or compacts.
``leveldb_block_size`` (the unit LevelDB reads and caches) is 64 KB by default: a full
scan ran ~1.35x faster than with the 4 KB LevelDB default, shuffled ``get`` the same,
warm and cold (LevelDB reads tables through mmap, so the kernel's readahead, not the
block, decides a cold read). ``leveldb_compression`` is off by default: random pixels do
not compress, and LevelDB stores a block raw anyway when snappy saves < 12.5 %
(https://github.com/google/leveldb/blob/main/doc/index.md, "Performance").

Read: LevelDB is a single-process library ("A database may only be opened by one
process at a time", same page, "Concurrency") and it is never read-only: every open
writes a new MANIFEST and log into the database directory and deletes the old ones.
Opened in place, a reader would change the store under the harness (its file list for
cache eviction goes stale) and a second reader process would fail on the LOCK. So each
reader opens a private *shadow* directory (in the temp dir, outside the store): the few
KB of CURRENT, MANIFEST and log are copied and every immutable ``.ldb`` table is a
symlink to the store's file. The store is never modified by a read, the page cache is
shared, and any number of reader processes (or threads sharing one reader) can read.
``read_many`` iterates in key order into one preallocated array (``fill_cache=False``,
the LevelDB docs' advice for bulk reads); a batch is ``get`` per key in sorted key order,
scattered to its rows. ``paranoid_checks`` is on; ``leveldb_verify_checksums`` also
checks every block's CRC on read (a flipped byte then raises instead of returning
wrong pixels; with 4 KB blocks it cost ~35 % of scan and ~25 % of ``get`` speed here, and a
``get`` checks its whole block, so use small blocks with it). A missing table file, or one
whose size differs from what the MANIFEST recorded, raises before any read. Caveat: a
process forked from one that has run LevelDB inherits a LevelDB that believes its
background thread is alive; a compaction scheduled there never runs and closing the
database hangs. The settled store schedules none; a reader that finds a store that
would compact raises (after the open: in such a child its close could still hang).

Encoded payload (issue 13): the same database, build and reads, each value the original
file's bytes unchanged (``~meta`` says ``"payload": "encoded"``); ``read_encoded`` is one
iterator in key order, each value returned as the ``bytes`` plyvel makes of it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plyvel

from imgbench.core.errors import StoreError
from imgbench.stores.base import Store, advise_maps, encoded_header

DIR = "db"
META, LABELS = b"~meta", b"~labels"  # '~' sorts after the 8-byte image keys (< 2**56)
COMPRESSIONS = (None, "snappy")
LEVEL = re.compile(r"^--- level (\d+) ---")  # the leveldb.sstables property's lines
TABLE = re.compile(r"^\s*(\d+):(\d+)\[")  # "  5:31094720['...' .. '...']": number, bytes
L0_TRIGGER, LAST_LEVEL = 4, 6  # LevelDB 1.22's kL0_CompactionTrigger, kNumLevels - 1
SETTLE_S = 120.0


def key(i: int) -> bytes:
    """Image *i*'s key: 8 big-endian bytes, so byte order is index order."""
    return int(i).to_bytes(8, "big")


def _message(exc: BaseException) -> str:
    """plyvel's messages are bytes: one readable line."""
    arg = exc.args[0] if exc.args else type(exc).__name__
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split())


@contextlib.contextmanager
def _clear(where: Path, shadow: Path | None = None) -> Iterator[None]:
    """Turn LevelDB's errors (bytes messages) into one line that says what to do, naming
    the store's files rather than the shadow's."""
    try:
        yield
    except plyvel.Error as exc:
        why = _message(exc).replace(str(shadow), str(where)) if shadow else _message(exc)
        raise StoreError(
            f"{where}: LevelDB: {why}; delete the store directory and rerun the build"
        ) from None


def _levels(db: plyvel.DB) -> dict[int, dict[int, int]]:
    """The live table files by level (level -> file number -> bytes), as the MANIFEST
    records them (the ``leveldb.sstables`` property)."""
    listing = (db.get_property(b"leveldb.sstables") or b"").decode("utf-8", "replace")
    levels: dict[int, dict[int, int]] = {}
    level = 0
    for line in listing.splitlines():
        if header := LEVEL.match(line):
            level = int(header.group(1))
        elif table := TABLE.match(line):
            levels.setdefault(level, {})[int(table.group(1))] = int(table.group(2))
    return levels


def _overfull(levels: dict[int, dict[int, int]]) -> str | None:
    """Which level LevelDB would compact next (its compaction score >= 1: four files in
    level 0, more than 10 MB x 10**(L-1) in level L >= 1), or None if it is settled."""
    if len(levels.get(0, {})) >= L0_TRIGGER:
        return f"level 0 holds {len(levels[0])} files (>= {L0_TRIGGER})"
    for level in range(1, LAST_LEVEL):
        size, limit = sum(levels.get(level, {}).values()), 10 * (1 << 20) * 10 ** (level - 1)
        if size >= limit:
            return f"level {level} holds {size:,} bytes (>= {limit:,})"
    return None


def _settle(db: plyvel.DB, where: Path) -> None:
    """Wait until LevelDB's background thread has no compaction left to do, so the store
    is final when closed: a reader then never compacts (with keys written in order these
    are trivial moves, metadata only)."""
    deadline = time.monotonic() + SETTLE_S
    while (why := _overfull(_levels(db))) is not None:
        if time.monotonic() > deadline:
            raise StoreError(f"{where}: LevelDB still compacting after {SETTLE_S} s ({why})")
        time.sleep(0.01)


def _check_tables(store: Path, tables: dict[int, int]) -> None:
    """Every table file the MANIFEST lists is in the store, whole (LevelDB would say only
    "Invalid argument" for a truncated one)."""
    for num, want in tables.items():
        files = [store / f"{num:06d}.{ext}" for ext in ("ldb", "sst")]
        file = next((f for f in files if f.exists()), None)
        if file is None:
            raise StoreError(
                f"{files[0]}: table file missing; delete the store directory and rerun the build"
            )
        if file.stat().st_size != want:
            raise StoreError(
                f"{file}: {file.stat().st_size} bytes, the MANIFEST says {want}: the table "
                "file is truncated or damaged; delete the store directory and rerun the build"
            )


@contextlib.contextmanager
def open_shadow(store: Path) -> Iterator[plyvel.DB]:
    """Open the database at *store* through a private shadow directory (see the module
    docstring): small mutable files copied, tables symlinked; removed on exit."""
    if not (store / "CURRENT").is_file():
        raise StoreError(
            f"{store}: not a LevelDB database (no CURRENT file); delete the store directory "
            "and rerun the build"
        )
    shadow = Path(tempfile.mkdtemp(prefix="imgbench-leveldb-"))
    try:
        for f in store.iterdir():
            if f.suffix in (".ldb", ".sst"):
                (shadow / f.name).symlink_to(f.resolve())
            elif f.name == "CURRENT" or f.name.startswith("MANIFEST-") or f.suffix == ".log":
                shutil.copyfile(f, shadow / f.name)
        with _clear(store, shadow):
            db = plyvel.DB(str(shadow), create_if_missing=False, paranoid_checks=True)
        try:
            levels = _levels(db)
            _check_tables(store, {n: b for files in levels.values() for n, b in files.items()})
            if (why := _overfull(levels)) is not None:  # the build settles it: never here
                raise StoreError(
                    f"{store}: LevelDB would compact this store on open ({why}); delete the "
                    "store directory and rerun the build"
                )
            with _clear(store, shadow):  # errors while reading name the store's files too
                yield db
        finally:
            db.close()
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _meta(db: plyvel.DB, store: Path) -> tuple[int, tuple[int, ...], np.ndarray]:
    meta_raw, lab_raw = db.get(META), db.get(LABELS)
    if meta_raw is None or lab_raw is None:
        raise StoreError(f"{store}: no imgbench metadata keys; rebuild the store")
    meta = json.loads(meta_raw)
    labels = np.frombuffer(lab_raw, dtype=np.dtype(meta["label_dtype"])).copy()
    if len(labels) != meta["n"]:
        raise StoreError(f"{store}: {len(labels)} labels for {meta['n']} images; rebuild it")
    return int(meta["n"]), tuple(meta["shape"]), labels


class TunedLeveldb(Store):
    format = "leveldb"
    mode = "tuned"
    random_advice = (
        "madvise(MADV_RANDOM) on LevelDB's own maps of the table files (found in "
        "/proc/self/maps after each batch until every table is mapped: it maps them lazily)"
    )
    io_depth_why_not = (
        "read by key, not by offset: LevelDB finds each value through its index blocks and "
        "its table cache"
    )

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        n = len(images)
        meta = {"n": n, "shape": list(images.shape[1:]), "dtype": "uint8"}
        meta["label_dtype"] = labels.dtype.str
        flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(n, -1)
        self._build(
            path, n, lambda a, b: ((key(i), flat[i].data) for i in range(a, b)), labels, meta
        )

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # The same database and settings, each value the original file's bytes.
        labels = np.asarray(labels)
        if len(labels) != len(blobs):
            raise ValueError(f"{len(blobs)} blobs but {len(labels)} labels")
        meta = {"payload": "encoded", "n": len(blobs), "label_dtype": labels.dtype.str}
        self._build(
            path, len(blobs), lambda a, b: ((key(i), blobs[i]) for i in range(a, b)), labels, meta
        )

    def _build(
        self,
        path: Path,
        n: int,
        pairs: Callable[[int, int], Iterator[tuple[bytes, Any]]],
        labels: np.ndarray,
        meta: dict,
    ) -> None:
        """Write the images' ``pairs(start, stop)`` (key, value) in batches, then the labels and
        *meta*; flush and settle (see the module docstring)."""
        compression = self.options["leveldb_compression"]
        if compression not in COMPRESSIONS:
            raise ValueError(f"leveldb_compression must be one of {COMPRESSIONS}")
        step = max(1, int(self.options["leveldb_batch_images"]))
        db = plyvel.DB(
            str(path / DIR),
            create_if_missing=True,
            error_if_exists=True,
            paranoid_checks=True,
            block_size=int(self.options["leveldb_block_size"]),
            compression=compression,
        )
        try:
            for start in range(0, n, step):
                with db.write_batch() as batch:
                    for k, v in pairs(start, min(n, start + step)):
                        batch.put(k, v)
            with db.write_batch() as batch:
                batch.put(LABELS, labels.tobytes())
                batch.put(META, json.dumps(meta).encode())
            db.compact_range()  # flush the memtable: all in tables, nothing left to replay
            _settle(db, path / DIR)
        finally:
            db.close()

    def _verify(self) -> bool:
        return bool(self.options["leveldb_verify_checksums"])

    def _values(self, db: plyvel.DB, n: int) -> Iterator[bytes]:
        """The values of images 0 .. n-1 in key order, bypassing LevelDB's block cache."""
        return db.iterator(
            start=key(0),
            stop=key(n),
            include_key=False,
            fill_cache=False,
            verify_checksums=self._verify(),
        )

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        store = path / DIR
        with open_shadow(store) as db:  # LevelDB errors become one line, naming the store
            n, shape, labels = _meta(db, store)
            images = np.empty((n, *shape), dtype=np.uint8)
            size = int(np.prod(shape))
            flat = memoryview(images.reshape(-1))
            it = self._values(db, n)
            count = 0
            for count, value in enumerate(it, 1):
                if count > n or len(value) != size:
                    raise StoreError(f"{store}: image {count - 1} is not {size} bytes; rebuild")
                flat[(count - 1) * size : count * size] = value
            if count != n:
                raise StoreError(f"{store}: read {count} of {n} images; rebuild the store")
        return images, labels

    def read_encoded(self, path: Path) -> tuple[list[bytes], np.ndarray]:
        # One iterator in key order, as read_many: each value comes out as its own bytes.
        store = path / DIR
        with open_shadow(store) as db:
            n, labels = encoded_header(db.get(META), db.get(LABELS), store, "LevelDB")
            blobs = list(self._values(db, n))
        if len(blobs) != n or len(labels) != n:
            raise StoreError(
                f"{store}: {len(blobs)} values and {len(labels)} labels for {n} images; delete "
                "the store directory and rerun the build"
            )
        return blobs, labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        store = path / DIR
        with open_shadow(store) as db:  # opened here: each forked reader has its own shadow
            _, shape, labels = _meta(db, store)
            verify = self._verify()
            tables = [f for f in store.iterdir() if f.suffix in (".ldb", ".sst")]
            pending = self.random_reads and bool(tables)

            def read(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
                nonlocal pending
                got = self._batch(db, store, shape, labels, verify, indices)
                if pending:  # LevelDB maps a table when it first reads it
                    pending = advise_maps(tables, True) < len(tables)
                return got

            yield read

    @staticmethod
    def _batch(
        db: plyvel.DB,
        store: Path,
        shape: tuple,
        labels: np.ndarray,
        verify: bool,
        indices: Sequence[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        # Keys in sorted order (neighbours share blocks and files), scattered to their rows.
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), *shape), dtype=np.uint8)
        size = out[0].nbytes if len(idx) else 0
        flat = memoryview(out.reshape(-1))
        order = np.argsort(idx, kind="stable")
        get = db.get
        for row, i in zip(order.tolist(), idx[order].tolist(), strict=True):
            value = get(key(i), verify_checksums=verify, fill_cache=False)
            if value is None or len(value) != size:
                raise StoreError(f"{store}: image {i} missing or damaged; rebuild the store")
            flat[row * size : (row + 1) * size] = value
        return out, labels[idx]
