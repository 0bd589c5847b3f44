"""The SQLite store: one file, a rowid table, honoured page size and transaction size, and
damaged files that raise instead of returning data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores import sqlite as sqlite_store
from tests.conftest import random_data


def build(path: Path, n: int = 60, **options):
    images, labels = random_data(n, seed=n)
    store = get_store("sqlite", "tuned", options)
    store.write_many(path, images, labels)
    return store, images, labels


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / "store.sqlite")


@pytest.mark.parametrize(("page", "rows_per_leaf"), [(4096, 1), (16384, 5), (65536, 21)])
def test_page_size_is_honoured(tmp_path: Path, page: int, rows_per_leaf: int) -> None:
    build(tmp_path, 210, sqlite_page_size=page)
    con = connect(tmp_path)
    assert con.execute("PRAGMA page_size").fetchone()[0] == page
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    # A ~3,085-byte row: one per 4 KB leaf, five per 16 KB leaf, 21 per 64 KB leaf.
    assert 210 / rows_per_leaf <= pages <= 210 / rows_per_leaf * 1.3 + 4


def test_invalid_page_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="power of two"):
        build(tmp_path, 3, sqlite_page_size=5000)


def test_rows_per_transaction_is_honoured(tmp_path: Path, monkeypatch) -> None:
    statements: list[str] = []
    real = sqlite3.connect

    def traced(*args, **kwargs):
        con = real(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(sqlite_store.sqlite3, "connect", traced)
    build(tmp_path, 25, sqlite_txn_images=10)
    assert statements.count("BEGIN") == 3 and statements.count("COMMIT") == 3


def test_one_file_rowid_table_and_metadata(tmp_path: Path) -> None:
    store, images, labels = build(tmp_path)
    store.read_many(tmp_path)
    with store.batch_reader(tmp_path) as read:
        read([3, 1])
    assert [p.name for p in tmp_path.iterdir()] == ["store.sqlite"]  # no -journal/-wal/-shm
    con = connect(tmp_path)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'images'").fetchone()[0]
    assert "id INTEGER PRIMARY KEY" in sql and "WITHOUT ROWID" not in sql
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no WAL left on
    rowid, i, label, pixels = con.execute(
        "SELECT rowid, id, label, pixels FROM images WHERE id = 7"
    ).fetchone()
    assert rowid == i == 7 and label == labels[7] and pixels == images[7].tobytes()
    meta = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    assert meta == {"n": "60", "shape": "[32, 32, 3]", "dtype": "uint8", "label_dtype": "|u1"}


def test_other_shapes_and_wide_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)  # 12 KB: overflow pages
    labels = np.arange(40_000, 40_009, dtype=np.uint32)
    store = get_store("sqlite", "tuned", {"sqlite_page_size": 4096})
    store.write_many(tmp_path, images, labels)
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    assert got_labels.dtype == np.uint32
    np.testing.assert_array_equal(got_labels, labels)
    with store.batch_reader(tmp_path) as read:
        for idx in ([8, 0, 0, 5], []):
            b, bl = read(idx)
            np.testing.assert_array_equal(b, images[idx])
            np.testing.assert_array_equal(bl, labels[idx])
            assert bl.dtype == np.uint32


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.01])
def test_truncated_file_raises(tmp_path: Path, keep: float) -> None:
    store, _, _ = build(tmp_path, 200)
    file = tmp_path / "store.sqlite"
    raw = file.read_bytes()
    file.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(StoreError, match="store.sqlite"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="store.sqlite"):
        store.read_batch(tmp_path, [0, 199])


def test_not_a_database_raises(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path)
    file = tmp_path / "store.sqlite"
    raw = bytearray(file.read_bytes())
    raw[:16] = b"definitely not!!"
    file.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="not a readable imgbench SQLite store"):
        store.read_many(tmp_path)


def test_missing_or_short_rows_raise(tmp_path: Path) -> None:
    store, images, _ = build(tmp_path)
    con = connect(tmp_path)
    con.execute("DELETE FROM images WHERE id = 5")
    con.execute("UPDATE images SET pixels = x'00' WHERE id = 9")
    con.commit()
    con.close()
    with pytest.raises(StoreError):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="missing"):
        store.read_batch(tmp_path, [4, 5])
    with pytest.raises(StoreError, match="row 9"):
        store.read_batch(tmp_path, [9])
    np.testing.assert_array_equal(store.read_batch(tmp_path, [6, 4])[0], images[[6, 4]])


def test_missing_file_and_out_of_range(tmp_path: Path) -> None:
    store = get_store("sqlite", "tuned")
    with pytest.raises(StoreError, match="missing"):
        store.read_many(tmp_path)
    build(tmp_path, 5)
    with store.batch_reader(tmp_path) as read, pytest.raises(IndexError):
        read([5])


def test_batches_beyond_the_bound_parameter_limit(tmp_path: Path, monkeypatch) -> None:
    store, images, labels = build(tmp_path, 20)
    monkeypatch.setattr(sqlite_store, "MAX_PARAMS", 3)  # one IN (...) per 3 distinct ids
    idx = [19, 2, 2, 7, 0, 11, 5, 18, 3]
    got, got_labels = store.read_batch(tmp_path, idx)
    np.testing.assert_array_equal(got, images[idx])
    np.testing.assert_array_equal(got_labels, labels[idx])
