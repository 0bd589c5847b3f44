"""The tuned Feather (Arrow IPC file) store: its batch and compression options reach the
file, uncompressed batches are gathered straight from the memory map, results never alias
the map, labels keep their dtype, and damaged files fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import feather as feather_module
from imgbench.stores import get_store
from tests.conftest import random_data, run_threads


def _write(path: Path, n: int = 100, images=None, **options) -> tuple[np.ndarray, np.ndarray]:
    if images is None:
        images, labels = random_data(n, seed=n)
    else:
        labels = np.arange(len(images), dtype=np.uint8)
    get_store("feather", "tuned", options).write_many(path, images, labels)
    return images, labels


def _batches(path: Path) -> list[pa.RecordBatch]:
    with pa.memory_map(str(path / "store.arrow")) as src:
        reader = ipc.open_file(src)
        return [reader.get_batch(i) for i in range(reader.num_record_batches)]


def test_batch_option_sets_the_record_batches(tmp_path: Path) -> None:
    _write(tmp_path, 100, feather_batch_images=32)
    assert [b.num_rows for b in _batches(tmp_path)] == [32, 32, 32, 4]
    table = feather.read_table(tmp_path / "store.arrow")  # a plain Feather v2 file
    assert table.schema.field("image").type == pa.binary(32 * 32 * 3)
    assert table.schema.field("label").type == pa.uint8()


def test_uncompressed_batches_gather_from_the_map(tmp_path: Path) -> None:
    images, labels = _write(tmp_path, 50, feather_batch_images=8)
    batches = feather_module._Batches(tmp_path / "store.arrow")
    try:
        assert batches.offsets is not None  # the zero-copy path, not the decoding one
        got, got_labels = batches.read([49, 0, 9, 9, 31])
    finally:
        batches.close()
    np.testing.assert_array_equal(got, images[[49, 0, 9, 9, 31]])
    np.testing.assert_array_equal(got_labels, labels[[49, 0, 9, 9, 31]])
    got[:] = 0  # a copy: writing to it leaves the store alone
    np.testing.assert_array_equal(
        get_store("feather", "tuned").read_batch(tmp_path, [49])[0], images[[49]]
    )


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compression_option_reaches_the_file_and_reads_back(tmp_path: Path, codec: str) -> None:
    images = np.zeros((64, 32, 32, 3), dtype=np.uint8)  # compressible
    images[:, :, :, 0] = np.arange(64, dtype=np.uint8)[:, None, None]
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    _write(plain, images=images, feather_batch_images=16)
    _write(packed, images=images, feather_batch_images=16, feather_compression=codec)
    assert (packed / "store.arrow").stat().st_size < (plain / "store.arrow").stat().st_size / 10
    store = get_store(
        "feather", "tuned", {"feather_batch_images": 16, "feather_compression": codec}
    )
    batches = feather_module._Batches(packed / "store.arrow")
    assert batches.offsets is None  # compressed pixels are not in the map: decoded per batch
    batches.close()
    got, got_labels = store.read_many(packed)
    np.testing.assert_array_equal(got, images)
    idx = [63, 0, 17, 17, 40]
    got, got_labels = store.read_batch(packed, idx)
    np.testing.assert_array_equal(got, images[idx])
    np.testing.assert_array_equal(got_labels, np.array(idx, dtype=np.uint8))


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feather_compression 'snappy'"):
        _write(tmp_path, 3, feather_compression="snappy")


def test_read_many_returns_owned_arrays_not_views_of_the_map(tmp_path: Path) -> None:
    images, labels = _write(tmp_path, 40)
    got, got_labels = get_store("feather", "tuned").read_many(tmp_path)
    assert got.flags.owndata and got_labels.flags.owndata
    (tmp_path / "store.arrow").write_bytes(b"")  # the file changes: what was read does not
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("dtype", [np.uint16, np.int64, np.dtype(">u2")])
@pytest.mark.parametrize("codec", [None, "lz4"])
def test_label_dtype_is_kept(tmp_path: Path, dtype, codec) -> None:
    images, _ = random_data(30)
    labels = np.arange(970, 1000).astype(dtype)
    store = get_store("feather", "tuned", {"feather_batch_images": 8, "feather_compression": codec})
    store.write_many(tmp_path, images, labels)
    for got in (store.read_many(tmp_path)[1], store.read_batch(tmp_path, [29, 3, 3])[1]):
        assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(store.read_batch(tmp_path, [29, 3, 3])[1], labels[[29, 3, 3]])
    assert store.read_one(tmp_path)[1] == 970


def test_other_image_shapes_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (21, 3, 5, 4), dtype=np.uint8)  # odd row size: 60 bytes
    labels = rng.integers(0, 10, 21).astype(np.uint8)
    store = get_store("feather", "tuned", {"feather_batch_images": 5})
    store.write_many(tmp_path, images, labels)
    np.testing.assert_array_equal(store.read_many(tmp_path)[0], images)
    idx = [20, 0, 4, 5, 5, 13]
    np.testing.assert_array_equal(store.read_batch(tmp_path, idx)[0], images[idx])
    empty, empty_labels = store.read_batch(tmp_path, [])
    assert empty.shape == (0, 3, 5, 4) and empty_labels.dtype == np.uint8


def test_out_of_range_index_raises(tmp_path: Path) -> None:
    _write(tmp_path, 20)
    store = get_store("feather", "tuned")
    for bad in ([20], [-1]):
        with pytest.raises(IndexError, match="out of range"):
            store.read_batch(tmp_path, bad)


def test_threads_can_share_one_batch_reader(tmp_path: Path) -> None:
    images, _ = _write(tmp_path, 120, feather_batch_images=16, feather_compression="lz4")
    store = get_store(
        "feather", "tuned", {"feather_batch_images": 16, "feather_compression": "lz4"}
    )
    rng = np.random.default_rng(0)
    orders = [rng.permutation(120) for _ in range(4)]
    wrong: list[int] = []
    with store.batch_reader(tmp_path) as read:

        def work(r: int) -> None:
            for s in range(0, 120, 16):
                idx = orders[r][s : s + 16]
                if not np.array_equal(read(idx)[0], images[idx]):
                    wrong.append(r)

        run_threads(work, 4)
    assert not wrong


@pytest.mark.parametrize("codec", [None, "lz4"])
@pytest.mark.parametrize("cut", ["half", "last_byte"])
def test_truncated_file_raises(tmp_path: Path, cut: str, codec) -> None:
    _write(tmp_path, 60, feather_batch_images=16, feather_compression=codec)
    file = tmp_path / "store.arrow"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-1])
    store = get_store("feather", "tuned", {"feather_compression": codec})
    with pytest.raises(StoreError, match="store.arrow: unreadable.*rerun the build"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="store.arrow: unreadable"):
        store.read_batch(tmp_path, [1])


def test_corrupt_footer_raises(tmp_path: Path) -> None:
    _write(tmp_path, 60)
    file = tmp_path / "store.arrow"
    data = bytearray(file.read_bytes())
    data[-400:-10] = b"\x00" * 390  # the footer flatbuffer, before its length and magic
    file.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="unreadable"):
        get_store("feather", "tuned").read_many(tmp_path)


def test_batches_that_disagree_with_the_metadata_are_refused(tmp_path: Path) -> None:
    images, labels = random_data(10)
    table = feather_module.to_table(images, labels, batch_rows=4)  # says 4 rows a batch
    feather.write_feather(table, tmp_path / "store.arrow", "uncompressed", chunksize=5)
    with pytest.raises(StoreError, match="record batch"):
        get_store("feather", "tuned").read_batch(tmp_path, [0])


def test_foreign_feather_file_is_refused(tmp_path: Path) -> None:
    feather.write_feather(pa.table({"x": [1, 2, 3]}), tmp_path / "store.arrow")
    with pytest.raises(StoreError, match="not an imgbench image table"):
        get_store("feather", "tuned").read_many(tmp_path)


def test_codec_names() -> None:
    assert feather_module.codec(None) == feather_module.codec("none") == "uncompressed"
    assert feather_module.codec("LZ4") == "lz4"


def _maps(file: Path) -> int:
    return sum(str(file) in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("codec", [None, "lz4"])
def test_nothing_stays_mapped_after_reading(tmp_path: Path, codec) -> None:
    # A page still mapped cannot be evicted: the next cold read would not be cold.
    _write(tmp_path, 40, feather_batch_images=8, feather_compression=codec)
    store = get_store("feather", "tuned", {"feather_compression": codec})
    file = tmp_path / "store.arrow"
    with store.batch_reader(tmp_path) as read:
        kept = read([3, 39])  # results outlive the reader
        assert _maps(file) == 1
    assert _maps(file) == 0  # at once: no pyarrow IO thread may still hold a slice of it
    many = store.read_many(tmp_path)
    store.read_batch(tmp_path, [5])
    assert _maps(file) == 0
    assert kept[0].shape == (2, 32, 32, 3) and many[0].shape == (40, 32, 32, 3)
