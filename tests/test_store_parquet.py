"""The tuned Parquet store: its layout options reach the file, reads touch only the row
groups they need, labels keep their dtype, and damaged files fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores import parquet as parquet_module
from tests.conftest import random_data, run_threads


def _write(path: Path, n: int = 100, **options) -> tuple[np.ndarray, np.ndarray]:
    images, labels = random_data(n, seed=n)
    get_store("parquet", "tuned", options).write_many(path, images, labels)
    return images, labels


def test_row_group_option_sets_the_row_groups(tmp_path: Path) -> None:
    _write(tmp_path, 100, parquet_row_group_images=16)
    md = pq.ParquetFile(tmp_path / "store.parquet").metadata
    assert md.num_rows == 100
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [16] * 6 + [4]


def test_default_layout_is_plain_uncompressed_without_statistics(tmp_path: Path) -> None:
    _write(tmp_path, 40)
    pf = pq.ParquetFile(tmp_path / "store.parquet")
    image = pf.metadata.row_group(0).column(0)
    assert pf.metadata.row_group(0).num_rows == 16  # the registry default
    assert image.path_in_schema == "image"
    assert image.physical_type == "FIXED_LEN_BYTE_ARRAY"
    assert image.compression == "UNCOMPRESSED"
    assert "PLAIN_DICTIONARY" not in image.encodings and "RLE_DICTIONARY" not in image.encodings
    assert not image.is_stats_set
    schema = pf.schema_arrow
    assert schema.field("image").type == pa.binary(32 * 32 * 3)
    assert schema.field("label").type == pa.uint8()


@pytest.mark.parametrize("codec", ["zstd", "snappy"])
def test_compression_option_reaches_the_file(tmp_path: Path, codec: str) -> None:
    images, labels = _write(tmp_path, 50, parquet_compression=codec)
    column = pq.ParquetFile(tmp_path / "store.parquet").metadata.row_group(0).column(0)
    assert column.compression == codec.upper()
    store = get_store("parquet", "tuned", {"parquet_compression": codec})
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(store.read_batch(tmp_path, [49, 0, 17])[0], images[[49, 0, 17]])


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parquet_compression 'rar'"):
        _write(tmp_path, 3, parquet_compression="rar")


@pytest.mark.parametrize("dtype", [np.uint16, np.int64, np.dtype(">u2"), np.int8])
def test_label_dtype_is_kept(tmp_path: Path, dtype) -> None:
    images, _ = random_data(30)
    labels = np.arange(30).astype(dtype)
    store = get_store("parquet", "tuned")
    store.write_many(tmp_path, images, labels)
    for got in (store.read_many(tmp_path)[1], store.read_batch(tmp_path, [29, 3, 3])[1]):
        assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(store.read_many(tmp_path)[1], labels)
    assert store.read_one(tmp_path)[1] == 0


def test_other_image_shapes_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 5, 7, 1), dtype=np.uint8)
    labels = rng.integers(0, 1000, 37).astype(np.uint16)
    store = get_store("parquet", "tuned", {"parquet_row_group_images": 4})
    store.write_many(tmp_path, images, labels)
    got, got_labels = store.read_many(tmp_path)
    assert got.shape == (37, 5, 7, 1) and got.flags.owndata
    np.testing.assert_array_equal(got, images)
    idx = [36, 0, 5, 5, 20]
    np.testing.assert_array_equal(store.read_batch(tmp_path, idx)[0], images[idx])


def test_batches_read_only_the_touched_row_groups(tmp_path: Path, monkeypatch) -> None:
    images, labels = _write(tmp_path, 100, parquet_row_group_images=10)
    calls: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *args, **kwargs):
        calls.append(list(row_groups))
        return real(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    store = get_store("parquet", "tuned", {"parquet_row_group_images": 10})
    with store.batch_reader(tmp_path) as read:
        got, got_labels = read([95, 3, 57, 3, 51])
        empty, empty_labels = read([])
    assert calls == [[0, 5, 9]]  # one call, only the groups holding rows 3, 51/57, 95
    np.testing.assert_array_equal(got, images[[95, 3, 57, 3, 51]])
    np.testing.assert_array_equal(got_labels, labels[[95, 3, 57, 3, 51]])
    assert empty.shape == (0, 32, 32, 3) and empty_labels.dtype == labels.dtype


def test_out_of_range_index_raises(tmp_path: Path) -> None:
    _write(tmp_path, 20)
    store = get_store("parquet", "tuned")
    for bad in ([20], [-1]):
        with pytest.raises(IndexError, match="out of range"):
            store.read_batch(tmp_path, bad)


def test_threads_can_share_one_batch_reader(tmp_path: Path) -> None:
    images, _ = _write(tmp_path, 200, parquet_row_group_images=8)
    store = get_store("parquet", "tuned", {"parquet_row_group_images": 8})
    rng = np.random.default_rng(0)
    orders = [rng.permutation(200) for _ in range(4)]
    wrong: list[int] = []
    with store.batch_reader(tmp_path) as read:

        def work(r: int) -> None:
            for s in range(0, 200, 32):
                idx = orders[r][s : s + 32]
                if not np.array_equal(read(idx)[0], images[idx]):
                    wrong.append(r)

        run_threads(work, 4)
    assert not wrong


@pytest.mark.parametrize("cut", ["half", "last_byte"])
def test_truncated_file_raises(tmp_path: Path, cut: str) -> None:
    _write(tmp_path, 60)
    file = tmp_path / "store.parquet"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-1])
    store = get_store("parquet", "tuned")
    with pytest.raises(StoreError, match="store.parquet: unreadable.*rerun the build"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="store.parquet: unreadable"):
        store.read_batch(tmp_path, [1])


def test_corrupt_page_header_raises(tmp_path: Path) -> None:
    _write(tmp_path, 60, parquet_row_group_images=16)
    file = tmp_path / "store.parquet"
    pf = pq.ParquetFile(file)
    start = pf.metadata.row_group(1).column(0).data_page_offset  # the page header's bytes
    pf.close()
    data = bytearray(file.read_bytes())
    data[start : start + 16] = b"\xff" * 16
    file.write_bytes(bytes(data))
    store = get_store("parquet", "tuned", {"parquet_row_group_images": 16})
    with pytest.raises(StoreError, match="unreadable"):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match="unreadable"):
        store.read_batch(tmp_path, [20])  # row group 1
    np.testing.assert_array_equal(  # other row groups still read
        store.read_batch(tmp_path, [0])[0], random_data(60, seed=60)[0][[0]]
    )


def test_foreign_parquet_file_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "store.parquet")
    with pytest.raises(StoreError, match="not an imgbench image table"):
        get_store("parquet", "tuned").read_many(tmp_path)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="store.parquet: unreadable"):
        get_store("parquet", "tuned").read_many(tmp_path)


def test_codec_names() -> None:
    assert parquet_module.codec(None) == "none"
    assert parquet_module.codec("ZSTD") == "zstd"


def _maps(file: Path) -> int:
    return sum(str(file) in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_nothing_stays_mapped_after_reading(tmp_path: Path) -> None:
    # A page still mapped cannot be evicted: the next cold read would not be cold.
    _write(tmp_path, 40)
    store = get_store("parquet", "tuned")
    file = tmp_path / "store.parquet"
    with store.batch_reader(tmp_path) as read:
        kept = read([3, 39])  # results outlive the reader
        assert _maps(file) == 1
    assert _maps(file) == 0
    many = store.read_many(tmp_path)
    store.read_batch(tmp_path, [5])
    assert _maps(file) == 0
    assert kept[0].shape == (2, 32, 32, 3) and many[0].shape == (40, 32, 32, 3)
