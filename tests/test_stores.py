"""Every registered store round-trips images and labels exactly, in every mode."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import lmdb
import numpy as np
import pytest

from imgbench import stores
from imgbench.stores import FORMATS, get_store, modes, option_defaults, store_class
from imgbench.stores import png as png_module
from imgbench.stores.lmdb_store import LABELS, META
from tests.conftest import random_data

COMBOS = [(f, m) for f in FORMATS for m in modes(f)]


@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
@pytest.mark.parametrize("n", [1, 7, 1025])
def test_round_trip_many(tmp_path: Path, fmt: str, mode: str, n: int) -> None:
    images, labels = random_data(n, seed=n)
    store = get_store(fmt, mode, workers=2)
    store.write_many(tmp_path, images, labels)
    got_images, got_labels = store.read_many(tmp_path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
def test_round_trip_one(tmp_path: Path, fmt: str, mode: str) -> None:
    images, labels = random_data(3, seed=5)
    store = get_store(fmt, mode)
    store.write_one(tmp_path, images[2], int(labels[2]))
    image, label = store.read_one(tmp_path)
    np.testing.assert_array_equal(image, images[2])
    assert label == int(labels[2])


@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
def test_read_batch_returns_indices_in_order(tmp_path: Path, fmt: str, mode: str) -> None:
    images, labels = random_data(50, seed=3)
    store = get_store(fmt, mode)
    store.write_many(tmp_path, images, labels)
    idx = [41, 3, 3, 17, 0, 49, 8]  # unsorted, with a repeat: what a shuffled batch holds
    got_images, got_labels = store.read_batch(tmp_path, idx)
    np.testing.assert_array_equal(got_images, images[idx])
    np.testing.assert_array_equal(got_labels, labels[idx])


@pytest.mark.parametrize(("fmt", "mode"), [c for c in COMBOS if c[1] == "tuned"])
def test_tuned_stores_keep_wide_labels(tmp_path: Path, fmt: str, mode: str) -> None:
    images, _ = random_data(20, seed=4)
    labels = np.arange(980, 1000, dtype=np.uint16)  # ImageNet's 1,000 classes need > uint8
    store = get_store(fmt, mode)
    store.write_many(tmp_path, images, labels)
    for got in (store.read_many(tmp_path)[1], store.read_batch(tmp_path, [19, 0])[1]):
        assert got.dtype == np.uint16
    np.testing.assert_array_equal(store.read_many(tmp_path)[1], labels)
    np.testing.assert_array_equal(store.read_batch(tmp_path, [19, 0])[1], labels[[19, 0]])


def test_registry_imports_no_format_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, imgbench.stores as s; s.options('hdf5', 'tuned'); s.modes('png'); "
        "print(sorted(m for m in ('h5py', 'lmdb', 'PIL', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_format_library_is_one_line(monkeypatch) -> None:
    import builtins

    from imgbench.stores import MissingLibraryError

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ModuleNotFoundError("No module named 'h5py'", name="h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "imgbench.stores.hdf5", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(MissingLibraryError, match="needs the Python package h5py"):
        store_class("hdf5", "tuned")


def test_parallel_png_equals_serial(tmp_path: Path) -> None:
    n = png_module.PARALLEL_MIN_IMAGES + 37  # forces the pool, not a multiple of any split
    images, labels = random_data(n, seed=11)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir()
    parallel.mkdir()
    get_store("png", "tuned", workers=1).write_many(serial, images, labels)
    par = get_store("png", "tuned", workers=2)
    assert par._parallel(n)
    par.write_many(parallel, images, labels)
    for i in (0, n // 2, n - 1):  # the same PNG bytes either way
        assert (serial / f"{i}.png").read_bytes() == (parallel / f"{i}.png").read_bytes()
    a, la = get_store("png", "tuned", workers=1).read_many(parallel)
    b, lb = par.read_many(serial)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, images)
    np.testing.assert_array_equal(la, lb)


def test_png_compress_level_is_used(tmp_path: Path) -> None:
    images = np.zeros((20, 32, 32, 3), dtype=np.uint8)
    images[:, ::2] = 255
    labels = np.zeros(20, dtype=np.uint8)
    fast, small = tmp_path / "l0", tmp_path / "l9"
    fast.mkdir()
    small.mkdir()
    get_store("png", "tuned", {"png_compress_level": 0}).write_many(fast, images, labels)
    get_store("png", "tuned", {"png_compress_level": 9}).write_many(small, images, labels)
    assert (fast / "0.png").stat().st_size > 2 * (small / "0.png").stat().st_size


def test_tuned_lmdb_holds_no_pickle(tmp_path: Path) -> None:
    images, labels = random_data(50)
    get_store("lmdb", "tuned").write_many(tmp_path, images, labels)
    env = lmdb.open(str(tmp_path), readonly=True, lock=False)
    with env.begin() as txn:
        keys = []
        for k, v in txn.cursor():
            keys.append(k)
            if k not in (META, LABELS):  # exactly the raw pixels: no pickle wrapper
                assert v == images[int(k)].tobytes()
        assert txn.get(LABELS) == labels.tobytes()
        meta = {"n": 50, "shape": [32, 32, 3], "dtype": "uint8", "label_dtype": "|u1"}
        assert json.loads(txn.get(META)) == meta
    assert len(keys) == 52
    env.close()


def test_article_lmdb_values_are_pickled_records(tmp_path: Path) -> None:
    images, labels = random_data(3)
    get_store("lmdb", "article").write_many(tmp_path, images, labels)
    env = lmdb.open(str(tmp_path), readonly=True)
    with env.begin() as txn:
        assert txn.get(b"00000001").startswith(b"\x80")  # faithful: a pickle, as in the article
    env.close()
    assert pickle.HIGHEST_PROTOCOL >= 2


def test_tuned_lmdb_map_grows_when_far_too_small(tmp_path: Path) -> None:
    images, labels = random_data(700)
    store = get_store("lmdb", "tuned", {"lmdb_map_headroom": 0.001, "lmdb_txn_images": 64})
    assert store._initial_map_size(images) < images.nbytes / 2
    store.write_many(tmp_path, images, labels)
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)
    env = lmdb.open(str(tmp_path), readonly=True, lock=False)
    assert env.info()["map_size"] > store._initial_map_size(images)
    env.close()


@pytest.mark.parametrize(
    "options",
    [
        {"hdf5_chunk_images": 100},
        {"hdf5_chunk_images": 0, "hdf5_compression": "gzip"},
        {"hdf5_chunk_images": 64, "hdf5_compression": "lzf"},
    ],
)
def test_hdf5_layout_options_round_trip(tmp_path: Path, options: dict) -> None:
    import h5py

    images, labels = random_data(333)  # not a multiple of any chunk size
    store = get_store("hdf5", "tuned", options)
    store.write_many(tmp_path, images, labels)
    with h5py.File(tmp_path / "store.h5") as f:
        assert f["images"].chunks is not None
        assert f["images"].compression == options.get("hdf5_compression")
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_hdf5_article_uses_big_endian_u8_and_tuned_native(tmp_path: Path) -> None:
    import h5py

    images, labels = random_data(4)
    a, t = tmp_path / "a", tmp_path / "t"
    a.mkdir()
    t.mkdir()
    get_store("hdf5", "article").write_many(a, images, labels)
    get_store("hdf5", "tuned").write_many(t, images, labels)
    with h5py.File(a / "store.h5") as fa, h5py.File(t / "store.h5") as ft:
        assert fa["images"].id.get_type().get_order() == h5py.h5t.ORDER_BE
        assert fa["images"].chunks is None and ft["images"].chunks is None
        assert ft["images"].dtype == np.uint8


def test_registry_errors_and_options() -> None:
    with pytest.raises(KeyError, match="unknown format 'tiff'"):
        store_class("tiff", "article")
    with pytest.raises(KeyError, match="no mode 'article'"):
        store_class("npy", "article")
    with pytest.raises(ValueError, match="unknown options"):
        get_store("png", "tuned", {"hdf5_compression": "gzip"})
    assert {"png_compress_level", "lmdb_txn_images", "hdf5_compression"} <= set(option_defaults())
    for fmt, spec in FORMATS.items():  # one namespace per format: no key shared or clashing
        assert all(o.name.startswith(f"{fmt}_") for o in spec.options), fmt


def test_store_options_are_all_in_the_schema() -> None:
    import yaml

    from tests.conftest import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    for key in option_defaults():
        assert key in schema["properties"] and key in schema["required"], key


def test_store_options_are_all_config_keys() -> None:
    import yaml

    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, default in option_defaults().items():
        assert config[key] == default, f"config.yaml {key} differs from the store default"


@pytest.mark.parametrize("fmt", [f for f in FORMATS if stores.parallel_writes(f)])
def test_parallel_writers_store_what_one_writer_stores(tmp_path: Path, fmt: str) -> None:
    from imgbench.stores.base import PARALLEL_MIN_IMAGES

    images, labels = random_data(PARALLEL_MIN_IMAGES + 7, seed=2)
    one, three = tmp_path / "one", tmp_path / "three"
    one.mkdir()
    three.mkdir()
    get_store(fmt, "tuned", workers=1).write_many(one, images, labels)
    get_store(fmt, "tuned", workers=3).write_many(three, images, labels)
    for path in (one, three):
        got, got_labels = get_store(fmt, "tuned").read_many(path)
        np.testing.assert_array_equal(got, images)
        np.testing.assert_array_equal(got_labels, labels)
        got, _ = get_store(fmt, "tuned").read_batch(path, [PARALLEL_MIN_IMAGES + 6, 0, 500])
        np.testing.assert_array_equal(got, images[[PARALLEL_MIN_IMAGES + 6, 0, 500]])
    if fmt == "npy":  # byte for byte what np.save writes
        assert (one / "images.npy").read_bytes() == (three / "images.npy").read_bytes()
    if fmt == "hdf5":
        assert sorted(p.name for p in three.iterdir()) == [
            "part-0.h5",
            "part-1.h5",
            "part-2.h5",
            "store.h5",
        ]


def test_hdf5_missing_part_file_is_an_error_not_zeros(tmp_path: Path) -> None:
    from imgbench.core.errors import StoreError
    from imgbench.stores.base import PARALLEL_MIN_IMAGES

    images, labels = random_data(PARALLEL_MIN_IMAGES, seed=3)
    get_store("hdf5", "tuned", workers=2).write_many(tmp_path, images, labels)
    (tmp_path / "part-1.h5").unlink()
    with pytest.raises(StoreError, match="part-1.h5: part file of the HDF5 virtual dataset"):
        get_store("hdf5", "tuned").read_many(tmp_path)
