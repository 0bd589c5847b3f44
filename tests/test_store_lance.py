"""Lance (tuned): the layout options reach the files, rows come back in take order, a
damaged dataset raises, and forked readers each open their own dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores.lance_store import DIR, META
from tests.conftest import REPO, random_data


def _data_files(path: Path) -> list[Path]:
    return sorted((path / DIR / "data").glob("*.lance"))


def test_every_file_under_the_store_directory(tmp_path: Path) -> None:
    images, labels = random_data(20)
    get_store("lance", "tuned").write_many(tmp_path, images, labels)
    assert [p.name for p in tmp_path.iterdir()] == [DIR]
    names = {p.name for p in (tmp_path / DIR).iterdir()}
    assert {"data", "_versions"} <= names


def test_rows_per_file_makes_fragments(tmp_path: Path) -> None:
    images, labels = random_data(25)
    get_store("lance", "tuned", {"lance_rows_per_file": 10}).write_many(tmp_path, images, labels)
    ds = lance.dataset(str(tmp_path / DIR))
    assert [f.count_rows() for f in ds.get_fragments()] == [10, 10, 5]
    assert len(_data_files(tmp_path)) == 3


@pytest.mark.parametrize("version", ["2.0", "2.2"])
def test_storage_version_is_used(tmp_path: Path, version: str) -> None:
    images, labels = random_data(9)
    store = get_store("lance", "tuned", {"lance_storage_version": version})
    store.write_many(tmp_path, images, labels)
    ds = lance.dataset(str(tmp_path / DIR))
    (data,) = ds.get_fragments()[0].metadata.files
    assert f"{data.file_major_version}.{data.file_minor_version}" == version
    np.testing.assert_array_equal(store.read_many(tmp_path)[0], images)


def test_schema_is_fixed_width_pixels_and_native_labels(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (6, 5, 7, 1), dtype=np.uint8)
    labels = np.arange(1000, 1006, dtype=">u2")  # big-endian in, same dtype out
    store = get_store("lance", "tuned")
    store.write_many(tmp_path, images, labels)
    schema = lance.dataset(str(tmp_path / DIR)).schema
    assert schema.field("image").type == pa.binary(5 * 7 * 1)
    assert schema.field("label").type == pa.uint16()
    assert json.loads(schema.metadata[META]) == {"n": 6, "shape": [5, 7, 1], "label_dtype": ">u2"}
    got, got_labels = store.read_many(tmp_path)
    assert got.shape == images.shape and got_labels.dtype == np.dtype(">u2")
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_take_keeps_order_and_repeats_across_files(tmp_path: Path) -> None:
    images, labels = random_data(40, seed=2)
    store = get_store("lance", "tuned", {"lance_rows_per_file": 16})
    store.write_many(tmp_path, images, labels)
    idx = [39, 0, 17, 17, 16, 15, 3, 39]
    with store.batch_reader(tmp_path) as read:
        for batch in (idx, idx[::-1], [5]):
            got, got_labels = read(batch)
            assert got.flags.writeable
            np.testing.assert_array_equal(got, images[batch])
            np.testing.assert_array_equal(got_labels, labels[batch])


def _damaged(tmp_path: Path, how: str) -> Path:
    images, labels = random_data(30)
    get_store("lance", "tuned", {"lance_rows_per_file": 10}).write_many(tmp_path, images, labels)
    victim = _data_files(tmp_path)[1]
    if how == "delete":
        victim.unlink()
    else:
        os.truncate(victim, victim.stat().st_size - 7)
    return victim


@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_damaged_data_file_raises_not_fewer_rows(tmp_path: Path, how: str) -> None:
    victim = _damaged(tmp_path, how)
    store = get_store("lance", "tuned")
    word = "missing" if how == "delete" else "truncated"
    with pytest.raises(StoreError, match=word) as err:
        store.read_many(tmp_path)
    assert victim.name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError, match=word):
        store.read_batch(tmp_path, [0])  # even a batch that needs no row of that file


def test_missing_manifest_is_one_line(tmp_path: Path) -> None:
    images, labels = random_data(5)
    get_store("lance", "tuned").write_many(tmp_path, images, labels)
    for f in (tmp_path / DIR / "_versions").iterdir():
        f.unlink()
    with pytest.raises(StoreError, match="not a readable Lance dataset") as err:
        get_store("lance", "tuned").read_many(tmp_path)
    assert "\n" not in str(err.value)


FORKED = """
import sys, warnings
import numpy as np
from pathlib import Path
from imgbench.experiments import access
from imgbench.stores import get_store
warnings.simplefilter("ignore")  # lance warns at every fork that it is not fork-safe
path, n = Path(sys.argv[1]), int(sys.argv[2])
store = get_store("lance", "tuned")
order = np.random.default_rng(0).permutation(n)
parts = access.batches(order, "shuffled", 8)
out = access.Epoch(n, (32, 32, 3), np.dtype("uint8"), len(parts))
access.run_epoch(store, path, parts, 2, "process", out)
np.save(path.parent / "got.npy", out.images)
np.save(path.parent / "order.npy", order)
"""


def test_forked_readers_open_their_own_dataset(tmp_path: Path) -> None:
    # A fresh interpreter that has never used Lance forks two readers, as the epoch jobs
    # do (this pytest process has written Lance datasets: forking from it is what Lance
    # warns about). Each child opens the dataset in batch_reader and reads its share.
    images, labels = random_data(64, seed=9)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    get_store("lance", "tuned").write_many(store_dir, images, labels)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-c", FORKED, str(store_dir), "64"],
        check=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    order = np.load(tmp_path / "order.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), images[order])


def test_fork_after_lance_use_is_a_clear_error(tmp_path: Path) -> None:
    # This process has used Lance (the write): a forked reader must refuse in one line
    # rather than risk Lance's runtime in the child (random SIGSEGV or hangs).
    from imgbench.experiments import access

    images, labels = random_data(16)
    store = get_store("lance", "tuned")
    store.write_many(tmp_path, images, labels)
    parts = access.batches(np.arange(16), "sequential", 8)
    out = access.Epoch(16, images.shape[1:], labels.dtype, len(parts))
    with pytest.warns(UserWarning, match="fork-safe"), pytest.raises(StoreError) as err:
        access.run_epoch(store, tmp_path, parts, 1, "process", out)
    assert "not fork-safe" in str(err.value) and "\n" not in str(err.value)
    access.run_epoch(store, tmp_path, parts, 2, "thread", out)  # threads share one dataset
    np.testing.assert_array_equal(out.images, images)
