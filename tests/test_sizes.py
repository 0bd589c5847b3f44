"""Image sizes: scaled cutoffs, a streamed resize, sizes keyed through the DAG and tables."""

from __future__ import annotations

import json
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from imgbench.core.errors import DataError
from imgbench.data import sizes
from imgbench.report import tables
from tests.conftest import random_data
from tests.test_workflow import REPO, make_archive, smk, tiny_args


def test_scaled_cutoffs_hold_the_same_raw_bytes() -> None:
    assert sizes.scaled(100_000, 32) == 100_000
    assert sizes.scaled(100_000, 64) == 25_000  # 25,000 x 64^2 = 100,000 x 32^2 pixels
    assert sizes.scaled(100_000, 256) == 1562
    assert sizes.scaled(100, 256) == sizes.scaled(10, 256) == 10  # at least 10: these merge
    assert sizes.image_bytes("cifar128") == 128 * 128 * 3 and sizes.size_of("cifar7") == 7
    assert sizes.size_of("folder224") == 224 and sizes.image_bytes("folder2") == 12
    assert sizes.is_encoded("folderenc") and sizes.is_encoded(sizes.encoded_key("cifar"))
    assert not sizes.is_encoded("cifar32") and np.isnan(sizes.image_bytes("cifarenc"))
    for bad in ("imagenet32", "cifarenc", "cifar"):
        with pytest.raises(ValueError):
            sizes.size_of(bad)


def _source(tmp_path: Path, n: int) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    images, labels = random_data(n, seed=1)
    ip, lp = tmp_path / "images.npy", tmp_path / "labels.npy"
    np.save(ip, images)
    np.save(lp, labels)
    return ip, lp, images, labels


def test_resize_gives_the_shape_labels_and_pillow_pixels(tmp_path: Path) -> None:
    from PIL import Image

    ip, lp, images, labels = _source(tmp_path, 30)
    out_i, out_l = tmp_path / "o" / "images.npy", tmp_path / "o" / "labels.npy"
    sizes.resize(ip, lp, out_i, out_l, "cifar48", 25, "bilinear")
    got, got_labels = np.load(out_i), np.load(out_l)
    assert got.shape == (25, 48, 48, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got_labels, labels[:25])
    want = np.asarray(Image.fromarray(images[7]).resize((48, 48), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got[7], want)
    with pytest.raises(DataError, match="40 needed"):
        sizes.resize(ip, lp, out_i, out_l, "cifar48", 40)


def test_resize_streams_instead_of_holding_the_data(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sizes, "CHUNK", 10)
    ip, lp, _, _ = _source(tmp_path, 200)
    out = tmp_path / "images.npy"
    tracemalloc.start()
    sizes.resize(ip, lp, out, tmp_path / "labels.npy", "cifar128", 200)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = 200 * 128 * 128 * 3  # 9.8 MB of output
    assert peak < total / 4, f"peak {peak} bytes for {total} bytes of output"
    assert np.load(out, mmap_mode="r").shape == (200, 128, 128, 3)


def test_sizes_are_keyed_through_the_tables() -> None:
    def result(data: str, n: int, op: str, cache: str, median: float) -> dict:
        return {
            "data": data,
            "format": "hdf5",
            "mode": "tuned",
            "operation": op,
            "cache": cache,
            "n_images": n,
            "stats": {
                "median_s": median,
                "min_s": median,
                "max_s": median,
                "iqr_s": 0.0,
                "mean_s": median,
                "n_samples": 1,
            },
            "samples": [median],
            "threads": 1,
            "repeats": 1,
            "warmup": 0,
            "verified": True,
            "node": "n",
            "config_hash": "h",
            "start": 0.0,
            "end": 1.0,
        }

    rows = [
        result("cifar32", 1000, "read_many", "warm", 0.01),
        result("cifar64", 250, "read_many", "warm", 0.01),
    ]
    summary = tables.summary_table(rows)
    assert set(summary["data"]) == {"cifar32", "cifar64"}
    mbs = summary.set_index("data")["mb_per_s"]
    assert mbs["cifar32"] == pytest.approx(mbs["cifar64"])  # same raw bytes, same time
    disk = tables.disk_table(
        [
            {
                "data": "cifar64",
                "format": "lmdb",
                "mode": "tuned",
                "n_images": 250,
                "kib_allocated": 4000,
                "apparent_bytes": 4_000_000,
                "files": 2,
                "lmdb_stat": {"psize": 4096, "overflow_pages": 750},
            },
            {
                "data": "cifar64",
                "format": "hdf5",
                "mode": "tuned",
                "n_images": 250,
                "kib_allocated": 3000,
                "apparent_bytes": 3_072_000,
                "files": 1,
            },
        ]
    )
    lm = disk.set_index("format").loc["lmdb"]
    assert lm["lmdb_overflow_pages"] == 750 and lm["image_bytes"] == 64 * 64 * 3
    assert lm["disk_per_raw"] == pytest.approx(4000 * 1024 / (250 * 64 * 64 * 3))


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return smk("-n", "--cores", "2", "-d", str(tmp_path), *args, check=False)


def test_dry_run_of_a_sweep_prints_its_disk_estimate_and_scales_cutoffs(tmp_path: Path) -> None:
    proc = _dry_run(
        tmp_path, "--config", "image_sizes=[32,64,256]", "formats=[lmdb]", "modes=[tuned]"
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    assert "image-size sweep [32, 64, 256]: stores take about" in text
    for path in (
        "stores/cifar64/tuned/lmdb/25000",
        "stores/cifar256/tuned/lmdb/1562",
        "stores/cifar256/tuned/lmdb/156",
        "data/cifar256/images.npy",
    ):
        assert f"results/{path}" in text, path
    assert "stores/cifar256/tuned/lmdb/100\n" not in text  # 100 -> 10 at 256 px: merged


def test_a_resized_store_records_lmdb_pages_beside_du(tmp_path: Path) -> None:
    make_archive(tmp_path / "cifar.tar.gz", per_batch=10)
    target = "results/du/cifar64/tuned/lmdb/25.json"  # 100 images at 32 px -> 25 at 64 px
    proc = smk(*tiny_args(tmp_path, "image_sizes=[32,64]", "formats=[lmdb]"), target, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    du = json.loads((tmp_path / target).read_text())
    assert du["data"] == "cifar64" and du["n_images"] == 25
    assert du["lmdb_stat"]["overflow_pages"] >= 25 * 3  # 12 KB values: 3+ pages each
    images = np.load(tmp_path / "results/data/cifar64/images.npy")
    assert images.shape[1:] == (64, 64, 3)


def test_epoch_sizes_reads_epochs_at_the_listed_sizes_only(tmp_path: Path) -> None:
    proc = _dry_run(
        tmp_path,
        "--config",
        "image_sizes=[32,64]",
        "epoch_sizes=[64]",
        "formats=[lmdb]",
        "modes=[tuned]",
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    assert "results/stores/cifar32/tuned/lmdb/100000" in text  # stores: every size
    for rule in ("read_epoch_warm", "read_epoch_cold", "train_warm", "train_cold"):
        assert f"results/timings/{rule}/cifar64/tuned/lmdb/" in text, rule
        assert f"results/timings/{rule}/cifar32/" not in text, rule


def test_epoch_sizes_outside_image_sizes_stops_with_one_line(tmp_path: Path) -> None:
    proc = _dry_run(tmp_path, "--config", "image_sizes=[32,64]", "epoch_sizes=[32,128]")
    assert proc.returncode != 0
    assert "config key epoch_sizes: [128] not in image_sizes [32, 64]" in proc.stdout + proc.stderr


def test_the_full_sweep_profile_plans_every_size_and_epochs_at_32_px(tmp_path: Path) -> None:
    """The README's full-sweep command: its profile validates and plans what it says."""
    proc = _dry_run(tmp_path, "--workflow-profile", str(REPO / "profiles" / "full"))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    for size, n in ((32, 100000), (64, 25000), (128, 6250), (256, 1562)):
        assert f"results/stores/cifar{size}/tuned/tiledb/{n}" in text, size
        assert f"results/timings/write_writers/cifar{size}/tuned/png/{n}_w4.json" in text
    assert "results/timings/read_epoch_cold/cifar32/article/png/random_r4_thread.json" in text
    assert "results/timings/train_warm/cifar32/tuned/leveldb/r4_thread_0.064s.json" in text
    assert "results/timings/read_epoch_warm/cifar64/" not in text
    assert "results/timings/train_cold/cifar256/" not in text
