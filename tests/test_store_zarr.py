"""Zarr (tuned): the shard layout is what the options say, labels keep their dtype, and a
damaged store raises instead of returning zarr's fill values."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from tests.conftest import random_data, run_threads

INDEX_ENTRY = 16  # bytes per inner chunk in a shard index (offset, length), + 4 for its crc32c


def _store(tmp_path: Path, n: int = 100, **options):
    images, labels = random_data(n, seed=n)
    store = get_store("zarr", "tuned", options)
    store.write_many(tmp_path, images, labels)
    return store, images, labels


def _shards(path: Path) -> list[Path]:
    return sorted((path / "images" / "c").rglob("*"), key=lambda p: p.parts)


def test_chunk_and_shard_options_shape_the_files(tmp_path: Path) -> None:
    store, images, _ = _store(tmp_path, 100, zarr_chunk_images=8, zarr_shard_images=32)
    meta = json.loads((tmp_path / "images" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [32, 32, 32, 3]
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["chunk_shape"] == [8, 32, 32, 3]
    shard_files = [p for p in _shards(tmp_path) if p.is_file()]
    names = [p.relative_to(tmp_path / "images").as_posix() for p in shard_files]
    assert names == [f"c/{s}/0/0/0" for s in range(4)]  # 100 images, 32-image shards
    image = images[0].nbytes
    full = 32 * image + 4 * INDEX_ENTRY + 4  # 4 inner chunks of 8 images, then the index
    assert [p.stat().st_size for p in shard_files[:3]] == [full] * 3
    # the last shard holds 4 images: one (partial) inner chunk written, stored whole
    assert shard_files[3].stat().st_size == 8 * image + 4 * INDEX_ENTRY + 4
    got, _ = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)


def test_a_single_image_store_is_not_a_full_shard(tmp_path: Path) -> None:
    store = get_store("zarr", "tuned")  # defaults: 64-image chunks, 8192-image shards
    images, labels = random_data(1)
    store.write_one(tmp_path, images[0], int(labels[0]))
    (shard,) = [p for p in _shards(tmp_path) if p.is_file()]
    assert shard.stat().st_size == images[0].nbytes + INDEX_ENTRY + 4
    image, label = store.read_one(tmp_path)
    np.testing.assert_array_equal(image, images[0])
    assert label == int(labels[0])


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i8", "|i1"])
def test_labels_keep_their_dtype(tmp_path: Path, dtype: str) -> None:
    images, _ = random_data(30)
    labels = np.arange(-5, 25).astype(dtype) if dtype[1] == "i" else np.arange(970, 1000)
    labels = labels.astype(dtype)
    store = get_store("zarr", "tuned")
    store.write_many(tmp_path, images, labels)
    for got in (store.read_many(tmp_path)[1], store.read_batch(tmp_path, [29, 0, 29])[1]):
        assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(store.read_many(tmp_path)[1], labels)
    np.testing.assert_array_equal(store.read_batch(tmp_path, [29, 0, 29])[1], labels[[29, 0, 29]])


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.unlink(),
        lambda f: f.write_bytes(b""),
        lambda f: f.write_bytes(f.read_bytes()[:-10]),
        lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),
    ],
    ids=["deleted", "emptied", "truncated-tail", "truncated-half"],
)
def test_damaged_shard_raises_never_zeros(tmp_path: Path, damage) -> None:
    store, _, _ = _store(tmp_path, 100, zarr_chunk_images=8, zarr_shard_images=32)
    damage(tmp_path / "images" / "c" / "1" / "0" / "0" / "0")
    with pytest.raises(StoreError, match="images/c/1/0/0/0|damaged"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="images/c/1/0/0/0|damaged"):
        store.read_batch(tmp_path, [40])  # an image of the damaged shard
    with store.batch_reader(tmp_path) as read:  # the other shards still read
        read([0, 99])


def test_missing_shard_of_all_zero_images_is_still_an_error(tmp_path: Path) -> None:
    # Zero images equal zarr's fill value: without write_empty_chunks no shard would exist
    # and a deleted one could not be told from an empty one.
    images = np.zeros((40, 32, 32, 3), dtype=np.uint8)
    store = get_store("zarr", "tuned", {"zarr_chunk_images": 4, "zarr_shard_images": 16})
    store.write_many(tmp_path, images, np.zeros(40, dtype=np.uint8))
    assert len([p for p in _shards(tmp_path) if p.is_file()]) == 3
    (tmp_path / "images" / "c" / "2" / "0" / "0" / "0").unlink()
    with pytest.raises(StoreError, match="missing"):
        store.read_batch(tmp_path, [39])


def test_missing_or_truncated_labels_raise(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path, 50)
    chunk = tmp_path / "labels" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    with pytest.raises(StoreError, match="damaged"):
        store.read_many(tmp_path)
    chunk.unlink()
    with pytest.raises(StoreError, match="labels/c/0: chunk/shard file missing"):
        store.read_batch(tmp_path, [1])


def test_missing_array_metadata_raises(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path, 20)
    (tmp_path / "images" / "zarr.json").unlink()
    with pytest.raises(StoreError, match="damaged or incomplete"):
        store.read_many(tmp_path)


def test_checksum_option_catches_a_flipped_byte(tmp_path: Path) -> None:
    plain, summed = tmp_path / "plain", tmp_path / "summed"
    plain.mkdir()
    summed.mkdir()
    opts = {"zarr_chunk_images": 8, "zarr_shard_images": 32}
    store, images, _ = _store(plain, 64, **opts)
    checked, _, _ = _store(summed, 64, zarr_checksum=True, **opts)
    codecs = json.loads((summed / "images" / "zarr.json").read_text())["codecs"][0]
    assert [c["name"] for c in codecs["configuration"]["codecs"]] == ["bytes", "crc32c"]
    for path in (plain, summed):
        shard = path / "images" / "c" / "0" / "0" / "0" / "0"
        data = bytearray(shard.read_bytes())
        data[100] ^= 0xFF
        shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum"):
        checked.read_batch(summed, [0])
    got, _ = store.read_batch(plain, [0, 1])  # without a checksum a flipped pixel is data
    assert not np.array_equal(got[0], images[0]) and np.array_equal(got[1], images[1])


def test_compressor_option(tmp_path: Path) -> None:
    images = np.zeros((50, 32, 32, 3), dtype=np.uint8)  # compressible
    images[:, ::4] = 200
    labels = np.arange(50, dtype=np.uint8)
    store = get_store("zarr", "tuned", {"zarr_compressor": "zstd"})
    store.write_many(tmp_path, images, labels)
    codecs = json.loads((tmp_path / "images" / "zarr.json").read_text())["codecs"][0]
    assert [c["name"] for c in codecs["configuration"]["codecs"]] == ["bytes", "zstd"]
    assert (tmp_path / "images" / "c" / "0" / "0" / "0" / "0").stat().st_size < images.nbytes / 10
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    images, labels = random_data(10)
    with pytest.raises(ValueError, match="zarr_compressor"):
        get_store("zarr", "tuned", {"zarr_compressor": "lzma9"}).write_many(
            tmp_path, images, labels
        )
    with pytest.raises(ValueError, match="multiple of the chunk"):
        get_store("zarr", "tuned", {"zarr_chunk_images": 3, "zarr_shard_images": 10}).write_many(
            tmp_path, images, labels
        )


def test_forked_reader_after_the_parent_used_zarr(tmp_path: Path) -> None:
    # The parent has run zarr's event loop (write and read); a forked child must open its
    # own reader and read, not hang on the parent's loop thread.
    store, images, labels = _store(tmp_path, 200, zarr_chunk_images=8, zarr_shard_images=64)
    store.read_many(tmp_path)
    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    idx = [199, 3, 3, 120, 64]

    def child() -> None:
        with store.batch_reader(tmp_path) as read:
            got, got_labels = read(idx)
        results.put(
            bool(np.array_equal(got, images[idx]) and np.array_equal(got_labels, labels[idx]))
        )

    procs = [ctx.Process(target=child) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a forked zarr reader hung"
    assert [p.exitcode for p in procs] == [0, 0]
    assert [results.get(), results.get()] == [True, True]


def test_threads_share_one_reader(tmp_path: Path) -> None:
    store, images, _ = _store(tmp_path, 300, zarr_chunk_images=8, zarr_shard_images=64)
    perm = np.random.default_rng(0).permutation(300)
    parts = [perm[s : s + 32] for s in range(0, 300, 32)]
    out: dict[int, np.ndarray] = {}
    with store.batch_reader(tmp_path) as read:

        def work(r: int) -> None:
            for b in range(r, len(parts), 2):
                out[b] = read(parts[b])[0]

        run_threads(work, 2)
    for b, part in enumerate(parts):
        np.testing.assert_array_equal(out[b], images[part])
