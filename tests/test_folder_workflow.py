"""images_dir and payload: encoded end to end: a tiny generated folder through the workflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgbench.stores import encoded
from tests.test_workflow import job_counts, smk

pytestmark = pytest.mark.workflow

FORMATS = ["png", "lmdb", "npy", "tar"]


def make_folder(root: Path, per_class: int = 12) -> None:
    """Three classes of JPEG, PNG and WebP files of mixed sizes and modes."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["bird", "cat", "dog"]):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            kind = (c + i) % 4
            if kind == 0:
                im.save(d / f"{i}.jpg", quality=85)
            elif kind == 1:
                im.convert("L").save(d / f"{i}.png")
            elif kind == 2:
                im.save(d / f"{i}.webp", lossless=True)
            else:
                im.convert("RGBA").save(d / f"{i}.png")


def folder_args(work: Path, *config: str) -> list[str]:
    return [
        "--cores",
        "2",
        "--workflow-profile",
        str(Path(__file__).resolve().parents[1] / "profiles" / "default"),
        "--config",
        f"images_dir={work / 'imgs'}",
        "payload=encoded",
        f"formats=[{','.join(FORMATS)}]",
        "modes=[tuned]",
        "cutoffs=[10,100]",
        "image_sizes=[16]",
        "repeats=1",
        "warmup=0",
        "single_samples=3",
        "device_probe_mib=4",
        "device_probe_seconds=0.1",
        "access_patterns=[shuffled]",
        "readers=[1]",
        "batch_size=8",
        "epoch_repeats=1",
        "epoch_warmup=0",
        "computation_time=[]",
        "writers=[1]",
        *config,
        "-d",
        str(work),
    ]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("folder")
    make_folder(work / "imgs")
    smk(*folder_args(work))
    return work


def test_folder_run_has_pixel_and_encoded_rows(folder_run: Path) -> None:
    tables = folder_run / "results" / "tables"
    summary = pd.read_csv(tables / "summary.csv")
    assert set(summary["data"]) == {"folder16", "folderenc"}  # n_images: the 36 files
    assert sorted(set(summary["n_images"]) - {1}) == [10, 36]
    assert summary["verified"][summary["operation"].str.startswith("read")].all()
    enc_ops = set(summary[summary["data"] == "folderenc"]["operation"])
    assert {"read_many", "read_many_read_only", "read_many_pillow", "write_many"} <= enc_ops
    payload = pd.read_csv(tables / "payload.csv")
    enc = sorted(f for f in FORMATS if encoded(f))
    assert sorted(set(payload["format"])) == enc and set(payload["pixels_data"]) == {"folder16"}
    assert len(payload) == len(enc) * 2 * 2  # cutoffs x warm/cold
    for col in ("encoded_read_only_s", "encoded_read_decode_s", "encoded_read_pillow_s"):
        assert (payload[col] > 0).all(), col
    assert "Stored pixels vs stored encoded files" in (tables / "summary.md").read_text()
    # the encoded store holds the files byte for byte: its disk use is about their size
    files = sum(p.stat().st_size for p in (folder_run / "imgs").rglob("*.*"))
    top = payload[(payload["n_images"] == 36) & (payload["format"] == "lmdb")]
    assert top["encoded_disk_mb"].iloc[0] * 1e6 >= files


def test_folder_checksum_is_in_provenance_and_every_row(folder_run: Path) -> None:
    prov = json.loads((folder_run / "results" / "provenance.json").read_text())
    scan = json.loads((folder_run / "results" / "data" / "folder" / "scan.json").read_text())
    assert prov["data"]["source"] == "images_dir" and prov["data"]["sha256"] == scan["sha256"]
    assert prov["data"]["policy_counts"]["alpha dropped"] == 9
    rows = [json.loads(p.read_text()) for p in (folder_run / "results" / "timings").rglob("*.json")]
    assert rows and all(r["config_hash"] for r in rows)


def test_a_changed_image_reruns_the_scan_and_everything_after(folder_run: Path) -> None:
    f = next((folder_run / "imgs" / "cat").glob("*.jpg"))
    dry = smk(*folder_args(folder_run), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    f.write_bytes(f.read_bytes() + b"\0")  # still decodes: new bytes, new checksum
    counts = job_counts(smk(*folder_args(folder_run), "-n").stdout)
    assert counts["scan_folder"] == 1 and counts["ingest_folder"] == 1
    assert counts["encode_folder"] == 1 and counts["build_store"] >= 2 * len(FORMATS)


def test_bad_file_fails_before_any_store(tmp_path: Path) -> None:
    make_folder(tmp_path / "imgs", per_class=3)
    (tmp_path / "imgs" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = smk(*folder_args(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "broken.jpg: not a readable image" in out
    assert not (tmp_path / "results" / "stores").exists()
