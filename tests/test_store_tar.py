"""The tar store: WebDataset-compatible shards, an honoured shard size, a checked index."""

from __future__ import annotations

import io
import json
import re
import tarfile
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores import tar as tar_store
from imgbench.stores.base import PARALLEL_MIN_IMAGES
from tests.conftest import random_data


def build(path: Path, n: int = 25, per: int = 10, labels: np.ndarray | None = None, **kw):
    images, default_labels = random_data(n, seed=n)
    labels = default_labels if labels is None else labels
    store = get_store("tar", "tuned", {"tar_shard_images": per}, **kw)
    store.write_many(path, images, labels)
    return store, images, labels


def webdataset_samples(file: Path) -> list[dict]:
    """Group members the way WebDataset does: consecutive members sharing the name up to
    the first dot (its base_plus_ext), streamed with tarfile as its reader does."""
    samples: list[dict] = []
    with tarfile.open(file, "r|") as tar:
        for member in tar:
            key, ext = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", member.name).groups()
            if not samples or samples[-1]["__key__"] != key:
                samples.append({"__key__": key})
            samples[-1][ext] = tar.extractfile(member).read()
    return samples


def test_shard_size_is_honoured_and_shards_stream_as_webdataset(tmp_path: Path) -> None:
    labels = np.arange(990, 1015, dtype=np.uint16)  # > 255: the .cls text must carry them
    _, images, labels = build(tmp_path, 25, 10, labels)
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    got = [s for name in names for s in webdataset_samples(tmp_path / name)]
    assert [len(webdataset_samples(tmp_path / n)) for n in names] == [10, 10, 5]
    assert [s["__key__"] for s in got] == [f"{i:08d}" for i in range(25)]
    for i, sample in enumerate(got):
        assert set(sample) == {"__key__", "npy", "cls"}
        buf = io.BytesIO()
        np.save(buf, images[i])
        assert sample["npy"] == buf.getvalue()  # exactly np.save: WebDataset's npy decoder
        np.testing.assert_array_equal(np.load(io.BytesIO(sample["npy"])), images[i])
        assert int(sample["cls"]) == labels[i]  # WebDataset's cls decoder: int(text)


def test_ustar_members_at_a_fixed_stride_and_a_wids_description(tmp_path: Path) -> None:
    build(tmp_path, 25, 10)
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        members = tar.getmembers()
        assert not any(m.pax_headers for m in members)
        assert {m.mtime for m in members} == {0}
    index = np.load(tmp_path / "index.npy")
    assert index.shape == (25, 2) and index.dtype == np.int64
    assert list(index[:, 0]) == [0] * 10 + [1] * 10 + [2] * 5
    # header 512 + npy 3,200 padded to 3,584, then the .cls member: 512 + 512
    assert set(np.diff(index[:10, 1])) == {5120} and index[0, 1] == 512
    meta = json.loads((tmp_path / "shards.json").read_text())
    assert meta["wids_version"] == 1
    assert [s["nsamples"] for s in meta["shardlist"]] == [10, 10, 5]
    assert meta["imgbench"]["label_dtype"] == "|u1"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "index.npy",
        "labels.npy",
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
        "shards.json",
    ]


def test_other_shapes_round_trip_through_every_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 5, 7, 1), dtype=np.uint8)
    labels = np.arange(9, dtype=np.int64)
    store = get_store("tar", "tuned", {"tar_shard_images": 4})
    store.write_many(tmp_path, images, labels)
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    assert got_labels.dtype == np.int64
    with store.batch_reader(tmp_path) as read:
        for idx in ([8, 0, 0, 5], [3], []):
            b, bl = read(idx)
            np.testing.assert_array_equal(b, images[idx])
            np.testing.assert_array_equal(bl, labels[idx])


def test_parallel_write_is_byte_identical(tmp_path: Path) -> None:
    images, labels = random_data(PARALLEL_MIN_IMAGES + 3, seed=2)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    opts = {"tar_shard_images": 300}
    get_store("tar", "tuned", opts, workers=1).write_many(one, images, labels)
    get_store("tar", "tuned", opts, workers=2).write_many(two, images, labels)
    for file in sorted(one.iterdir()):
        assert file.read_bytes() == (two / file.name).read_bytes(), file.name


def test_truncated_shard_raises(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path)
    shard = tmp_path / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:7000])
    with pytest.raises(StoreError, match="truncated"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="truncated"):
        store.read_batch(tmp_path, [0])
    with pytest.raises(StoreError, match="truncated"):
        next(tar_store.stream(tmp_path))


def test_damaged_npy_header_raises(tmp_path: Path) -> None:
    store, images, _ = build(tmp_path)
    index = np.load(tmp_path / "index.npy")
    shard = tmp_path / "shard-000001.tar"
    raw = bytearray(shard.read_bytes())
    at = int(index[13, 1]) + 20  # inside image 13's npy header ("{'descr': ...")
    raw[at] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="npy header"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="npy header"):
        store.read_batch(tmp_path, [2, 13])
    np.testing.assert_array_equal(store.read_batch(tmp_path, [12, 14])[0], images[[12, 14]])


def test_damaged_index_or_tar_header_raises(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path)
    index = np.load(tmp_path / "index.npy")
    shifted = index.copy()
    shifted[4, 1] += 512
    np.save(tmp_path / "index.npy", shifted)
    with pytest.raises(StoreError, match="offsets of shard 0"):
        store.read_batch(tmp_path, [0])
    np.save(tmp_path / "index.npy", index)
    shard = tmp_path / "shard-000002.tar"
    raw = bytearray(shard.read_bytes())
    raw[0:8] = b"garbage!"  # the first member's name and checksum no longer match
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="shard-000002.tar"):
        store.read_many(tmp_path)


def test_missing_metadata_raises(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path)
    (tmp_path / "shards.json").write_text("{")
    with pytest.raises(StoreError, match="unreadable tar-store metadata"):
        store.read_many(tmp_path)


def test_batch_reader_rejects_out_of_range(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path)
    with store.batch_reader(tmp_path) as read, pytest.raises(IndexError):
        read([25])


def test_stream_yields_every_sample_once_in_a_seeded_shuffle(tmp_path: Path) -> None:
    _, images, labels = build(tmp_path, 57, 10)
    first = list(tar_store.stream(tmp_path, shuffle_buffer=16, seed=3))
    assert sorted(i for i, _, _ in first) == list(range(57))
    for i, image, label in first:
        np.testing.assert_array_equal(image, images[i])
        assert label == labels[i] and isinstance(label, int)
    again = [i for i, _, _ in tar_store.stream(tmp_path, shuffle_buffer=16, seed=3)]
    other = [i for i, _, _ in tar_store.stream(tmp_path, shuffle_buffer=16, seed=4)]
    assert again == [i for i, _, _ in first] and other != again
    assert again != sorted(again)


def test_stream_without_buffer_keeps_shard_order(tmp_path: Path) -> None:
    build(tmp_path, 25, 10)
    order = [i for i, _, _ in tar_store.stream(tmp_path, shuffle_buffer=0, seed=1)]
    shards = [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    # whole shards, each front to back, in some shard order
    assert any(order == sum((shards[k] for k in p), []) for p in permutations(range(3)))
