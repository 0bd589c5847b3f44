"""The zarr, HDF5 and staged (LMDB, SQLite, LevelDB) object-storage readers against a real
SeaweedFS server: what they GET (counted by the proxy), and that a missing or truncated object
fails in one line naming it."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores.remote import staged
from imgbench.stores.remote.zarr import chunk_runs
from imgbench.stores.s3 import Proxy, S3Target
from tests.conftest import random_data
from tests.remote_check import remote, upload_tiny


@pytest.fixture(scope="module")
def proxy(s3_server):
    with Proxy(s3_server.endpoint) as p:
        yield p


def target(server, proxy: Proxy, prefix: str) -> S3Target:
    return S3Target(proxy.endpoint, server.bucket, prefix, server.creds)


def counted(proxy: Proxy, fn) -> tuple[Any, dict[str, int]]:
    """``fn()`` and the requests and bytes it made through the proxy."""
    before = proxy.stats()
    out = fn()
    after = proxy.stats()
    return out, {k: after[k] - before[k] for k in ("requests", "bytes_down")}


def one_line_naming(exc: pytest.ExceptionInfo, url: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and url in msg and "upload" in msg, msg


# --- zarr --------------------------------------------------------------------------------


def test_chunk_runs_cut_at_chunk_boundaries():
    uniq = np.unique(np.random.default_rng(0).integers(0, 1000, 200))
    for parts in (1, 3, 8, 500):
        runs = chunk_runs(uniq, 64, parts)
        assert np.array_equal(np.concatenate(runs), uniq)
        assert len(runs) == min(parts, len(np.unique(uniq // 64)))
        chunks = [set((r // 64).tolist()) for r in runs]
        assert all(not (a & b) for i, a in enumerate(chunks) for b in chunks[i + 1 :])
    assert chunk_runs(np.array([], dtype=np.int64), 64, 4) == []


def test_zarr_reads_each_shard_index_once_per_reader(s3_server, proxy, tmp_path):
    prefix, images, _ = upload_tiny(s3_server, "zarr", tmp_path)  # one shard, 64-image chunks
    store = remote("zarr", target(s3_server, proxy, prefix), 2)
    with store.batch_reader() as read:
        idx = np.array([3, 70, 200, 201])  # chunks 0, 1, 3
        (got, _), first = counted(proxy, lambda: read(idx))
        assert np.array_equal(got, images[idx])
        (got, _), second = counted(proxy, lambda: read(idx[::-1]))
        assert np.array_equal(got, images[idx[::-1]])
    chunk_bytes = 64 * 32 * 32 * 3
    assert second["requests"] == 3, second  # three inner-chunk GETs, the index kept
    assert first["requests"] == 4, first  # the same plus the shard's index
    assert second["bytes_down"] >= 3 * chunk_bytes


def test_zarr_missing_shard_is_named(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "zarr", tmp_path)
    s3_server.client().delete(f"{prefix}/images/c/0/0/0/0")
    t = target(s3_server, proxy, prefix)
    store = remote("zarr", t, 1)
    with pytest.raises(StoreError) as exc, store.batch_reader() as read:
        read([5])
    one_line_naming(exc, t.url("images/c/0/0/0/0"))
    with pytest.raises(StoreError) as exc:
        store.read_all()
    one_line_naming(exc, t.url("images/c/0/0/0/0"))


def test_zarr_truncated_shard_fails_in_one_line(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "zarr", tmp_path)
    key = f"{prefix}/images/c/0/0/0/0"
    client = s3_server.client()
    client.put(key, client.get(key)[:-100])
    t = target(s3_server, proxy, prefix)
    with pytest.raises(StoreError) as exc, remote("zarr", t, 1).batch_reader() as read:
        read([5])
    one_line_naming(exc, t.url())


# --- HDF5 --------------------------------------------------------------------------------


def test_hdf5_batch_gets_one_range_per_image(s3_server, proxy, tmp_path):
    prefix, images, labels = upload_tiny(s3_server, "hdf5", tmp_path)
    store = remote("hdf5", target(s3_server, proxy, prefix), 4)
    with store.batch_reader() as read:
        idx = np.array([7, 0, 299, 150, 7])
        (got, lab), n = counted(proxy, lambda: read(idx))
    assert np.array_equal(got, images[idx]) and np.array_equal(lab, labels[idx])
    assert n["requests"] == len(idx), n  # one GET per image, a repeat included: no cache
    assert 3072 * len(idx) <= n["bytes_down"] < 3072 * len(idx) + 2000 * len(idx), n


def test_hdf5_open_reads_metadata_in_one_block(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "hdf5", tmp_path)
    store = remote("hdf5", target(s3_server, proxy, prefix), 1)

    def open_reader() -> None:
        with store.batch_reader():
            pass

    _, n = counted(proxy, open_reader)
    assert n["requests"] == 3, n  # HEAD, one 64 KiB metadata block, the labels


def test_hdf5_virtual_dataset_reads_its_part_files(s3_server, proxy, tmp_path):
    n = 1200  # above PARALLEL_MIN_IMAGES: two writers build part files and a virtual dataset
    images, labels = random_data(n, seed=3)
    local = tmp_path / "vds"
    local.mkdir()
    get_store("hdf5", "tuned", workers=2).write_many(local, images, labels)
    assert (local / "part-1.h5").exists()
    prefix = f"test/hdf5-vds/{uuid.uuid4().hex[:8]}"
    s3_server.client().upload_tree(local, prefix)
    t = target(s3_server, proxy, prefix)
    store = type(remote("hdf5", t, 1))(t, get_store("hdf5", "tuned"), n, (32, 32, 3), 3)
    got, lab = store.read_all()
    assert np.array_equal(got, images) and np.array_equal(lab, labels)
    idx = np.array([1199, 0, 600, 599])
    with store.batch_reader() as read:
        got, lab = read(idx)
    assert np.array_equal(got, images[idx]) and np.array_equal(lab, labels[idx])
    s3_server.client().delete(f"{prefix}/part-1.h5")
    with pytest.raises(StoreError) as exc:
        store.read_all()
    one_line_naming(exc, t.url("part-1.h5"))


def test_hdf5_missing_or_truncated_file_is_named(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "hdf5", tmp_path)
    key, client = f"{prefix}/store.h5", s3_server.client()
    t = target(s3_server, proxy, prefix)
    client.put(key, client.get(key)[:-5000])
    with pytest.raises(StoreError) as exc:
        remote("hdf5", t, 1).read_all()
    one_line_naming(exc, t.url("store.h5"))
    client.delete(key)
    with pytest.raises(StoreError) as exc, remote("hdf5", t, 1).batch_reader():
        pass
    one_line_naming(exc, t.url("store.h5"))


# --- staged ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["lmdb", "sqlite", "leveldb"])
def test_staging_downloads_the_store_s_bytes(s3_server, proxy, tmp_path, fmt, monkeypatch):
    monkeypatch.setattr(staged, "PART", 64 * 1024)  # large objects split into ranged GETs
    prefix, images, labels = upload_tiny(s3_server, fmt, tmp_path)
    local = tmp_path / f"{fmt}-store"
    files = {p.relative_to(local): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    store = remote(fmt, target(s3_server, proxy, prefix), 3, tmp_path / "stage")
    info, n = counted(proxy, store.stage)
    total = sum(len(b) for b in files.values())
    assert info == store.staged and info["stage_s"] > 0
    assert info["stage_bytes"] == total and info["stage_objects"] == len(files), info
    assert n["bytes_down"] >= total
    parts = sum(-(-len(b) // staged.PART) for b in files.values())
    assert n["requests"] == 1 + parts, n  # one LIST, then a GET per 64 KiB range
    for rel, data in files.items():
        assert (tmp_path / "stage" / rel).read_bytes() == data, rel
    got, lab = store.read_all()
    assert np.array_equal(got, images) and np.array_equal(lab, labels)


@pytest.mark.parametrize(
    "fmt, rel", [("lmdb", "data.mdb"), ("sqlite", "store.sqlite"), ("leveldb", "db/CURRENT")]
)
def test_staging_names_a_missing_object(s3_server, proxy, tmp_path, fmt, rel):
    prefix, _, _ = upload_tiny(s3_server, fmt, tmp_path)
    s3_server.client().delete(f"{prefix}/{rel}")
    t = target(s3_server, proxy, prefix)
    with pytest.raises(StoreError) as exc:
        remote(fmt, t, 2, tmp_path / "stage").stage()
    one_line_naming(exc, t.url(rel))


def test_staged_read_names_the_object_of_a_missing_table(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "leveldb", tmp_path)
    table = next(p for p in (tmp_path / "leveldb-store" / "db").iterdir() if p.suffix == ".ldb")
    rel = f"db/{table.name}"
    s3_server.client().delete(f"{prefix}/{rel}")
    t = target(s3_server, proxy, prefix)
    store = remote("leveldb", t, 2, tmp_path / "stage")
    store.stage()
    with pytest.raises(StoreError) as exc:
        store.read_all()
    one_line_naming(exc, t.url(rel))
    assert "rerun the build" not in str(exc.value)


def test_staged_store_reads_only_after_staging(s3_server, proxy, tmp_path):
    prefix, _, _ = upload_tiny(s3_server, "sqlite", tmp_path)
    store = remote("sqlite", target(s3_server, proxy, prefix), 1, tmp_path / "stage")
    with pytest.raises(StoreError, match="stage"):
        store.read_all()
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "stale").write_bytes(b"x")
    with pytest.raises(StoreError, match="not empty"):
        store.stage()
