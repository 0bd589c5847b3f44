"""Unpickling the archive in the official layout, in sorted batch order, and doubling."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from imgbench.data.cifar import BATCHES, PREFIX, read_cifar_archive, repeat_to, save_arrays
from imgbench.data.synthetic import batch_dict, make_archive


def test_reads_official_layout(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tar.gz", per_batch=30, seed=3)
    images, labels = read_cifar_archive(archive)
    assert images.shape == (150, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (150,) and labels.dtype == np.uint8
    # Pixel layout: 1024 R, then 1024 G, then 1024 B values, row-major 32x32.
    rng = np.random.default_rng(3)
    first = batch_dict(30, rng, BATCHES[0])
    raw = first[b"data"][0]
    assert images[0, 0, 1, 0] == raw[1]  # R plane, row 0, column 1
    assert images[0, 1, 0, 1] == raw[1024 + 32]  # G plane, row 1, column 0
    assert images[0, 31, 31, 2] == raw[3071]  # B plane, last pixel
    np.testing.assert_array_equal(labels[:30], first[b"labels"])


def test_batches_in_sorted_order_whatever_the_tar_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    batches = {b: batch_dict(4, rng, b) for b in BATCHES}
    archive = tmp_path / "shuffled.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in reversed(BATCHES):  # data_batch_5 first in the tar
            payload = pickle.dumps(batches[name], protocol=2)
            info = tarfile.TarInfo(PREFIX + name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    _, labels = read_cifar_archive(archive)
    expected = np.concatenate([batches[b][b"labels"] for b in BATCHES])
    np.testing.assert_array_equal(labels, expected)


def test_repeat_to_doubles_and_handles_partial(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 50, dtype=np.uint8)
    src_i, src_l = tmp_path / "si.npy", tmp_path / "sl.npy"
    save_arrays(images, labels, src_i, src_l)
    for n in (100, 123, 20):
        out_i, out_l = tmp_path / f"i{n}.npy", tmp_path / f"l{n}.npy"
        repeat_to(src_i, src_l, n, out_i, out_l)
        got, got_l = np.load(out_i), np.load(out_l)
        assert got.shape == (n, 32, 32, 3)
        idx = np.arange(n) % 50
        np.testing.assert_array_equal(got, images[idx])
        np.testing.assert_array_equal(got_l, labels[idx])
    # Doubling as in the article: the second half repeats the first exactly.
    doubled = np.load(tmp_path / "i100.npy")
    np.testing.assert_array_equal(doubled[:50], doubled[50:])
    assert not list(tmp_path.glob(".*tmp-*")), "temporary files left behind"
