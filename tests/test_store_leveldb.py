"""LevelDB (tuned): raw values under ordered keys, options visible in the tables, reads that
never touch the store (so several reader processes work), and damage that raises."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import plyvel
import pytest

from imgbench.core.errors import StoreError
from imgbench.experiments import access
from imgbench.stores import get_store
from imgbench.stores.leveldb import DIR, LABELS, META, key
from tests.conftest import random_data


def _tables(path: Path) -> list[Path]:
    return sorted((path / DIR).glob("*.ldb"))


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in (path / DIR).iterdir()}


def test_keys_in_index_order_values_raw(tmp_path: Path) -> None:
    images, _ = random_data(300)
    labels = np.arange(300, dtype=np.uint16)
    get_store("leveldb", "tuned").write_many(tmp_path, images, labels)
    db = plyvel.DB(str(tmp_path / DIR))
    try:
        keys = [k for k, _ in db.iterator(stop=b"~")]
        assert keys == [key(i) for i in range(300)]  # byte order = index order (256 > 255)
        assert db.get(key(257)) == images[257].tobytes()  # raw pixels, no pickle
        assert db.get(LABELS) == labels.tobytes()
        meta = {"n": 300, "shape": [32, 32, 3], "dtype": "uint8", "label_dtype": "<u2"}
        assert json.loads(db.get(META)) == meta
    finally:
        db.close()


def test_build_leaves_everything_in_tables(tmp_path: Path) -> None:
    images, labels = random_data(50)
    get_store("leveldb", "tuned").write_many(tmp_path, images, labels)
    logs = list((tmp_path / DIR).glob("*.log"))
    assert logs and all(f.stat().st_size == 0 for f in logs)  # compact_range flushed it
    assert sum(f.stat().st_size for f in _tables(tmp_path)) > images.nbytes


def test_batch_images_sets_table_files(tmp_path: Path) -> None:
    # A batch enters the memtable whole: batch x 3 KB above the 4 MB write buffer gives
    # one table per batch; small batches give tables of the write buffer's size.
    images, labels = random_data(3000)
    one, small = tmp_path / "one", tmp_path / "small"
    for d, batch in ((one, 3000), (small, 100)):
        d.mkdir()
        store = get_store("leveldb", "tuned", {"leveldb_batch_images": batch})
        store.write_many(d, images, labels)
    big = [f for f in _tables(one) if f.stat().st_size > images.nbytes / 2]
    assert len(big) == 1
    assert len([f for f in _tables(small) if f.stat().st_size > 1 << 20]) >= 2


def test_block_size_and_compression_reach_the_tables(tmp_path: Path) -> None:
    images = np.zeros((200, 32, 32, 3), dtype=np.uint8)  # compressible
    images[:, ::2] = 7
    labels = np.zeros(200, dtype=np.uint8)
    sizes = {}
    for name, opts in {
        "small": {"leveldb_block_size": 1024},
        "big": {"leveldb_block_size": 65536},
        "snappy": {"leveldb_compression": "snappy"},
    }.items():
        d = tmp_path / name
        d.mkdir()
        store = get_store("leveldb", "tuned", opts)
        store.write_many(d, images, labels)
        np.testing.assert_array_equal(store.read_many(d)[0], images)
        sizes[name] = sum(f.stat().st_size for f in _tables(d))
    assert sizes["small"] > sizes["big"]  # one index entry per block: more blocks, more bytes
    assert sizes["snappy"] < images.nbytes / 4  # uncompressed stores at least images.nbytes
    with pytest.raises(ValueError, match="leveldb_compression"):
        get_store("leveldb", "tuned", {"leveldb_compression": "zstd"}).write_many(
            tmp_path / "small", images, labels
        )


def test_reads_never_touch_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadows = tmp_path / "tmp"
    shadows.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shadows))
    images, labels = random_data(40)
    store = get_store("leveldb", "tuned")
    store.write_many(tmp_path, images, labels)
    before = _snapshot(tmp_path)
    store.read_many(tmp_path)
    with store.batch_reader(tmp_path) as read:
        assert len(list(shadows.iterdir())) == 1  # the reader's private shadow directory
        read([3, 1, 3])
    assert _snapshot(tmp_path) == before  # no new MANIFEST or log, no LOG rotation
    assert list(shadows.iterdir()) == []  # shadows removed


@pytest.mark.filterwarnings("ignore:lance is not fork-safe")  # if Lance is imported too
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_several_readers_at_once(tmp_path: Path, kind: str) -> None:
    # LevelDB locks a database to one process; each reader opens its own shadow instead.
    images, labels = random_data(96, seed=6)
    store = get_store("leveldb", "tuned")
    store.write_many(tmp_path, images, labels)
    order = np.random.default_rng(1).permutation(96)
    parts = access.batches(order, "shuffled", 8)
    out = access.Epoch(96, images.shape[1:], labels.dtype, len(parts))
    access.run_epoch(store, tmp_path, parts, 3, kind, out)
    np.testing.assert_array_equal(out.images, images[order])
    np.testing.assert_array_equal(out.labels, labels[order])


def _build(tmp_path: Path) -> Path:
    images, labels = random_data(3000)  # > 4 MB: several table files
    get_store("leveldb", "tuned", {"leveldb_batch_images": 1000}).write_many(
        tmp_path, images, labels
    )
    return max(_tables(tmp_path), key=lambda f: f.stat().st_size)


@pytest.mark.parametrize(
    ("how", "word"), [("delete", "missing"), ("truncate", "truncated"), ("empty", "truncated")]
)
def test_damaged_table_raises(tmp_path: Path, how: str, word: str) -> None:
    victim = _build(tmp_path)
    if how == "delete":
        victim.unlink()
    else:
        os.truncate(victim, 0 if how == "empty" else victim.stat().st_size // 2)
    store = get_store("leveldb", "tuned")
    with pytest.raises(StoreError, match=word) as err:
        store.read_many(tmp_path)
    assert "\n" not in str(err.value) and str(victim) in str(err.value)  # the store's file
    with pytest.raises(StoreError, match=word):
        store.read_batch(tmp_path, [0])


def test_flipped_byte_raises_with_verify_checksums(tmp_path: Path) -> None:
    victim = _build(tmp_path)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF
    victim.write_bytes(data)
    store = get_store("leveldb", "tuned", {"leveldb_verify_checksums": True})
    with pytest.raises(StoreError, match="checksum mismatch") as err:
        store.read_many(tmp_path)
    assert "\n" not in str(err.value)


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    images, labels = random_data(5)
    get_store("leveldb", "tuned").write_many(tmp_path, images, labels)
    (tmp_path / DIR / "CURRENT").unlink()
    with pytest.raises(StoreError, match="not a LevelDB database"):
        get_store("leveldb", "tuned").read_many(tmp_path)
    for f in (tmp_path / DIR).glob("MANIFEST-*"):
        (tmp_path / DIR / "CURRENT").write_text(f.name + "\n")
        f.unlink()
    with pytest.raises(StoreError, match="CURRENT points to a non-existent file"):
        get_store("leveldb", "tuned").read_many(tmp_path)


def test_levels_and_compaction_score(tmp_path: Path) -> None:
    from imgbench.stores.leveldb import _levels, _overfull

    images, labels = random_data(100)
    get_store("leveldb", "tuned").write_many(tmp_path, images, labels)
    db = plyvel.DB(str(tmp_path / DIR))
    try:
        levels = _levels(db)
    finally:
        db.close()
    tables = {int(f.stem): f.stat().st_size for f in _tables(tmp_path)}
    assert {n: b for files in levels.values() for n, b in files.items()} == tables
    assert _overfull(levels) is None  # the build leaves nothing for a reader to compact
    assert "level 0" in _overfull({0: {1: 1, 2: 1, 3: 1, 4: 1}})
    assert "level 2" in _overfull({2: {7: 100 << 20}})
    assert _overfull({2: {7: 99 << 20}, 3: {8: 999 << 20}}) is None
