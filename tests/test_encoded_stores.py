"""Encoded payload (issue 13): every format whose registry entry says ``encoded`` stores the
original files' bytes unchanged, in order, with labels in their own dtype."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgbench.core.errors import StoreError
from imgbench.stores import FORMATS, _arrow, get_store, options, store_class
from imgbench.stores.base import PARALLEL_MIN_IMAGES, Store
from tests.conftest import random_data

ENCODED = [fmt for fmt, spec in FORMATS.items() if spec.encoded]

#: Small values of each format's layout options: many shards, row groups, batches, tiles.
SMALL = {
    "tar_shard_images": 3,
    "parquet_row_group_images": 2,
    "feather_batch_images": 3,
    "lance_rows_per_file": 4,
    "zarr_chunk_images": 2,
    "zarr_shard_images": 4,
    "tiledb_tile_images": 2,
    "lmdb_txn_images": 3,
    "sqlite_txn_images": 3,
    "leveldb_batch_images": 3,
    "hdf5_chunk_images": 2,
}


def encode(seed: int, fmt: str, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def make_blobs(n: int = 12) -> list[bytes]:
    """Real JPEG, PNG and WebP files of different sizes, plus the edge cases: an empty
    blob, one byte, trailing NULs, and bytes of no known type."""
    kinds = ("JPEG", "PNG", "WEBP")
    blobs = [encode(i, kinds[i % 3], (5 + 3 * i, 7 + 2 * i)) for i in range(max(0, n - 4))]
    return [*blobs, b"", b"\xff", b"no magic\x00\x00", b"\x89PNG\r\n\x1a\n\x00"][:n]


def labels_for(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.uint16) * 997 + 300) % 65000  # > 255: uint8 would wrap


def small_opts(fmt: str) -> dict:
    return {k: v for k, v in SMALL.items() if k in options(fmt, "tuned")}


def round_trip(path: Path, fmt: str, blobs: list[bytes], labels: np.ndarray, **kw) -> list:
    path.mkdir()
    get_store(fmt, "tuned", **kw).write_encoded(path, blobs, labels)
    got, got_labels = get_store(fmt, "tuned", **kw).read_encoded(path)  # a fresh object
    assert len(got) == len(blobs)
    for i, blob in enumerate(blobs):
        assert bytes(got[i]) == blob, f"blob {i}"
    assert got_labels.dtype == labels.dtype
    np.testing.assert_array_equal(got_labels, labels)
    return got


@pytest.mark.parametrize("fmt", ENCODED)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    blobs = make_blobs()
    round_trip(tmp_path / "s", fmt, blobs, labels_for(len(blobs)))


@pytest.mark.parametrize("fmt", ENCODED)
def test_round_trip_over_many_shards_and_groups(tmp_path: Path, fmt: str) -> None:
    blobs = make_blobs(23)
    labels = labels_for(len(blobs))
    opts = small_opts(fmt)
    got = round_trip(tmp_path / "s", fmt, blobs, labels, opts=opts)
    del got  # nothing returned may depend on the store staying open
    if fmt == "tar":
        assert len(list((tmp_path / "s").glob("shard-*.tar"))) == 8
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.ParquetFile(tmp_path / "s" / "store.parquet").metadata.num_row_groups == 12


@pytest.mark.parametrize("fmt", ENCODED)
@pytest.mark.parametrize("n", [0, 1])
def test_round_trip_tiny(tmp_path: Path, fmt: str, n: int) -> None:
    round_trip(tmp_path / "s", fmt, make_blobs(20)[:n], labels_for(n).astype(np.int64))


@pytest.mark.parametrize("fmt", ENCODED)
def test_blobs_of_equal_length(tmp_path: Path, fmt: str) -> None:
    # libraries that take an object array of arrays may see one 2-D array instead
    blobs = [bytes([i]) * 4 for i in range(3)]
    round_trip(tmp_path / "s", fmt, blobs, labels_for(3))


@pytest.mark.parametrize("fmt", ["parquet", "feather", "lance"])
def test_large_binary_past_32_bit_offsets(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_arrow, "BINARY_MAX", 100)  # as if the blobs totalled > 2 GiB
    blobs = make_blobs()
    round_trip(tmp_path / "s", fmt, blobs, labels_for(len(blobs)), opts=small_opts(fmt))


@pytest.mark.filterwarnings("ignore:lance is not fork-safe")  # a test before used Lance
@pytest.mark.parametrize("fmt", [f for f in ENCODED if FORMATS[f].parallel_writes])
def test_parallel_writers(tmp_path: Path, fmt: str) -> None:
    n = PARALLEL_MIN_IMAGES
    blobs = [bytes([i % 251]) * (i % 37) for i in range(n)]
    round_trip(tmp_path / "s", fmt, blobs, labels_for(n), workers=2)


@pytest.mark.parametrize("fmt", ENCODED)
def test_a_pixel_store_is_refused(tmp_path: Path, fmt: str) -> None:
    images, labels = random_data(4)
    get_store(fmt, "tuned").write_many(tmp_path, images, labels)
    with pytest.raises(StoreError):
        get_store(fmt, "tuned").read_encoded(tmp_path)


def test_tar_members_are_webdataset_samples(tmp_path: Path) -> None:
    blobs = make_blobs(8)
    labels = labels_for(8)
    get_store("tar", "tuned", {"tar_shard_images": 5}).write_encoded(tmp_path, blobs, labels)
    names, data = [], []
    for shard in sorted(tmp_path.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                names.append(member.name)
                data.append(tar.extractfile(member).read())
    exts = ["jpg", "png", "webp", "jpg", "bin", "bin", "bin", "png"]  # as make_blobs(8)
    expect = [n for i in range(8) for n in (f"{i:08d}.{exts[i]}", f"{i:08d}.cls")]
    assert names == expect
    assert data[0::2] == blobs
    assert [int(x) for x in data[1::2]] == labels.tolist()


def test_png_names_files_by_their_type(tmp_path: Path) -> None:
    blobs = make_blobs(8)
    get_store("png", "tuned").write_encoded(tmp_path, blobs, labels_for(8))
    files = {p.name for p in tmp_path.iterdir()}
    assert {"0.jpg", "1.png", "2.webp", "4.bin", "7.png"} <= files
    (tmp_path / "1.png").unlink()
    with pytest.raises(StoreError, match=r"1\.png: missing"):
        get_store("png", "tuned").read_encoded(tmp_path)


def test_registry_says_how_or_why_not() -> None:
    for fmt, spec in FORMATS.items():
        cls = store_class(fmt, "tuned")
        if spec.encoded:
            assert not spec.encoded_why_not, fmt
            assert cls.write_encoded is not Store.write_encoded, fmt
            assert cls.read_encoded is not Store.read_encoded, fmt
        else:
            assert spec.encoded_why_not.strip(), f"{fmt}: no encoded and no encoded_why_not"
