"""Your own images (images_dir): labels, every policy case, every bad-file case, fitting,
the encoded source, and the decoders: tiny folders generated here."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgbench.core.errors import DataError
from imgbench.data import decode, folder


def _save(path: Path, im: Image.Image, fmt: str, **kw: object) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _rgb(seed: int, w: int = 40, h: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    """Two classes, mixed sizes and formats, all readable."""
    root = tmp_path / "imgs"
    _save(root / "dog" / "a.png", Image.fromarray(_rgb(1)), "PNG")
    _save(root / "dog" / "b.jpg", Image.fromarray(_rgb(2, 64, 48)), "JPEG", quality=90)
    _save(root / "cat" / "c.webp", Image.fromarray(_rgb(3, 20, 50)), "WEBP", lossless=True)
    _save(root / "cat" / "sub" / "d.png", Image.fromarray(_rgb(4, 32, 32)), "PNG")
    (root / "cat" / ".DS_Store").write_bytes(b"\0junk")  # hidden: ignored
    return root


def test_listing_labels_sorted_class_folders(good_dir: Path) -> None:
    classes, files = folder.listing(good_dir)
    assert classes == ["cat", "dog"]  # sorted, as ImageFolder numbers them
    assert files == [("cat/c.webp", 0), ("cat/sub/d.png", 0), ("dog/a.png", 1), ("dog/b.jpg", 1)]
    assert len(files) == 4  # the default n_images of a folder run (common.smk counts these)


def test_label_dtype_widens_with_the_class_count() -> None:
    assert folder.label_dtype(10) == np.uint8 and folder.label_dtype(256) == np.uint8
    assert folder.label_dtype(257) == np.uint16 and folder.label_dtype(1000) == np.uint16
    assert folder.label_dtype(70_000) == np.uint32


def test_a_thousand_classes_get_uint16_labels(tmp_path: Path) -> None:
    root = tmp_path / "many"
    png = _save(tmp_path / "x.png", Image.fromarray(_rgb(0, 8, 8)), "PNG")
    for c in range(300):
        (root / f"c{c:04}").mkdir(parents=True)
        (root / f"c{c:04}" / "0.png").write_bytes(png)
    scan = tmp_path / "scan.json"
    folder.scan(root, scan)
    rec = json.loads(scan.read_text())
    assert rec["label_dtype"] == "uint16" and len(rec["classes"]) == 300
    folder.ingest(scan, tmp_path / "i.npy", tmp_path / "l.npy", 8)
    labels = np.load(tmp_path / "l.npy")
    assert labels.dtype == np.uint16 and labels[-1] == 299


def test_scan_checksum_counts_and_changes_with_a_byte(good_dir: Path, tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1.json", tmp_path / "s2.json"
    folder.scan(good_dir, s1)
    rec = json.loads(s1.read_text())
    assert rec["images"] == rec["files"] == 4 and rec["skipped"] == []
    assert rec["distinct_shapes"] == 4
    f = good_dir / "dog" / "a.png"
    sig = folder.signature(good_dir)
    f.write_bytes(f.read_bytes() + b"\0")  # still a valid PNG (trailing byte), other bytes
    folder.scan(good_dir, s2)
    assert json.loads(s2.read_text())["sha256"] != rec["sha256"]
    assert folder.signature(good_dir) != sig


def _modes_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """One image per policy case, with the RGB each must become."""
    root = tmp_path / "modes"
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgba = np.dstack([_rgb(5, 8, 8), np.full((8, 8), 7, np.uint8)])
    pal = Image.fromarray(_rgb(6, 8, 8)).quantize(16)
    g16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 255).astype(np.uint16)
    cmyk = Image.fromarray(_rgb(7, 8, 8)).convert("CMYK")
    expect = {}
    _save(root / "a" / "grey.png", Image.fromarray(grey), "PNG")
    expect["a/grey.png"] = np.repeat(grey[..., None], 3, axis=2)
    _save(root / "a" / "rgba.png", Image.fromarray(rgba), "PNG")
    expect["a/rgba.png"] = rgba[..., :3]
    _save(root / "a" / "pal.png", pal, "PNG")
    expect["a/pal.png"] = np.asarray(pal.convert("RGB"))
    _save(root / "a" / "g16.png", Image.fromarray(g16), "PNG")
    expect["a/g16.png"] = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
    _save(root / "a" / "cmyk.jpg", cmyk, "JPEG", quality=100)
    with Image.open(root / "a" / "cmyk.jpg") as im:
        expect["a/cmyk.jpg"] = np.asarray(im.convert("RGB"))
    _save(root / "a" / "bw.png", Image.fromarray(grey > 100), "PNG")
    expect["a/bw.png"] = np.repeat(np.where(grey > 100, 255, 0).astype(np.uint8)[..., None], 3, 2)
    return root, expect


def test_every_policy_case_is_converted_and_counted(tmp_path: Path) -> None:
    root, expect = _modes_dir(tmp_path)
    scan = tmp_path / "scan.json"
    folder.scan(root, scan)
    counts = json.loads(scan.read_text())["policy_counts"]
    assert counts == {
        "16-bit to 8-bit": 1,
        "CMYK to RGB": 1,
        "alpha dropped": 1,
        "grey or palette to RGB": 3,  # L, P and 1-bit
    }
    folder.ingest(scan, tmp_path / "i.npy", tmp_path / "l.npy", 8)
    images = np.load(tmp_path / "i.npy")
    for k, (rel, _) in enumerate(folder.listing(root)[1]):
        np.testing.assert_array_equal(images[k], expect[rel], err_msg=rel)


BAD = {
    "truncated.jpg": lambda good: good[: len(good) // 2],
    "empty.png": lambda good: b"",
    "notes.txt": lambda good: b"not an image at all\n",
    "garbage.png": lambda good: b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_fails_in_one_line_naming_it(tmp_path: Path, name: str) -> None:
    root = tmp_path / "imgs"
    good = _save(root / "a" / "ok.jpg", Image.fromarray(_rgb(1, 64, 64)), "JPEG")
    (root / "a" / name).write_bytes(BAD[name](good))
    out = tmp_path / "scan.json"
    with pytest.raises(DataError) as err:
        folder.scan(root, out, "fail")
    msg = str(err.value)
    assert "\n" not in msg and str(root / "a" / name) in msg and "bad_images: skip" in msg
    assert not out.exists()  # nothing a rerun would trust


def test_an_empty_class_fails_or_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _save(root / "a" / "ok.png", Image.fromarray(_rgb(1)), "PNG")
    (root / "b").mkdir()
    with pytest.raises(DataError, match="class folder has no readable images"):
        folder.scan(root, tmp_path / "s.json", "fail")
    folder.scan(root, tmp_path / "s.json", "skip")
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["classes"] == ["a", "b"] and rec["images"] == 1  # label 1 stays reserved
    assert rec["skipped"] == [{"file": "b/", "why": "empty class (its label stays reserved)"}]


def test_skip_lists_every_bad_file_and_keeps_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    good = _save(root / "a" / "ok.jpg", Image.fromarray(_rgb(1, 64, 64)), "JPEG")
    _save(root / "b" / "ok.png", Image.fromarray(_rgb(2)), "PNG")
    for name, make in BAD.items():
        (root / "b" / name).write_bytes(make(good))
    out = tmp_path / "scan.json"
    folder.scan(root, out, "skip", n_images=2)
    rec = json.loads(out.read_text())
    assert rec["files"] == 6 and rec["images"] == 2
    assert sorted(b["file"] for b in rec["skipped"]) == sorted(f"b/{n}" for n in BAD)
    listed = Path(f"{out}.bad.txt").read_text().splitlines()
    assert len(listed) == len(BAD)
    # every file asked for (n_images = the folder's count) but 4 are bad: one line, the fix,
    # and the good count for the next run's DAG (same folder and policy only)
    s2 = tmp_path / "s2.json"
    with pytest.raises(DataError, match=r"run the same command again to use the 2 good images"):
        folder.scan(root, s2, "skip", n_images=6, signature="sig")
    assert not s2.exists() and folder.good_count(s2, "sig", "skip") == 2
    assert folder.good_count(s2, "other", "skip") is None
    assert folder.good_count(s2, "sig", "fail") is None
    folder.scan(root, s2, "skip", n_images=2, signature="sig")  # the rerun: 2 good images
    assert json.loads(s2.read_text())["images"] == 2


def test_ingest_fits_crop_and_resize(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 200  # the centre third is bright
    _save(root / "a" / "wide.png", Image.fromarray(wide), "PNG")
    scan = tmp_path / "scan.json"
    folder.scan(root, scan)
    folder.ingest(scan, tmp_path / "c.npy", tmp_path / "l.npy", 10, images_fit="crop")
    folder.ingest(scan, tmp_path / "r.npy", tmp_path / "l2.npy", 10, images_fit="resize")
    crop, squash = np.load(tmp_path / "c.npy"), np.load(tmp_path / "r.npy")
    assert crop.shape == squash.shape == (1, 10, 10, 3)
    assert (crop[0] == 200).all()  # the centre 10 x 10 of the 30 x 10 image
    assert squash[0, :, 0].max() < 50 and squash[0, :, 5].min() > 150  # squashed thirds


def test_ingest_repeats_only_when_asked_and_streams(
    good_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = tmp_path / "scan.json"
    folder.scan(good_dir, scan)
    folder.ingest(scan, tmp_path / "i.npy", tmp_path / "l.npy", 16)
    assert np.load(tmp_path / "i.npy").shape == (4, 16, 16, 3)  # n_images 0: the folder
    folder.ingest(scan, tmp_path / "i.npy", tmp_path / "l.npy", 16, n_images=10)
    images, labels = np.load(tmp_path / "i.npy"), np.load(tmp_path / "l.npy")
    assert images.shape[0] == 10 and (images[4] == images[0]).all()  # repeated, in order
    assert labels.tolist() == [0, 0, 1, 1] * 2 + [0, 0]
    # streamed: a big ingest holds about one chunk of images, not the data set
    monkeypatch.setattr(folder, "CHUNK", 8)
    n, size = 400, 64  # 400 x 64 x 64 x 3 = 4.9 MB of output
    tracemalloc.start()
    folder.ingest(scan, tmp_path / "big.npy", tmp_path / "bl.npy", size, n_images=n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < n * size * size * 3 / 4, peak


def test_encoded_source_keeps_the_bytes_exactly(good_dir: Path, tmp_path: Path) -> None:
    scan = tmp_path / "scan.json"
    folder.scan(good_dir, scan)
    d = tmp_path / "enc"
    d.mkdir()
    folder.encoded_source(
        scan, d / "blobs.bin", d / "offsets.npy", d / "labels.npy", source=d / "source.json"
    )
    blobs, labels = folder.load_blobs(d / "blobs.bin", d / "labels.npy", 4)
    files = folder.listing(good_dir)[1]
    assert [bytes(b) for b in blobs] == [(good_dir / f).read_bytes() for f, _ in files]
    assert labels.tolist() == [lab for _, lab in files] and labels.dtype == np.uint8
    assert folder.source_id(d / "blobs.bin")["sha256"] == json.loads(scan.read_text())["sha256"]
    with pytest.raises(DataError, match="need 5"):
        folder.load_blobs(d / "blobs.bin", d / "labels.npy", 5)


def test_encode_cifar_is_lossless(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "i.npy", images)
    np.save(tmp_path / "l.npy", np.arange(5, dtype=np.uint8))
    out = [tmp_path / n for n in ("blobs.bin", "offsets.npy", "labels.npy")]
    folder.encode_cifar(tmp_path / "i.npy", tmp_path / "l.npy", *out, n_images=4)
    blobs, labels = folder.load_blobs(out[0], out[2], 4)
    for name in decode.DECODERS:
        got = [decode.get(name)(b) for b in blobs]  # PNG: simplejpeg hands it to Pillow
        np.testing.assert_array_equal(np.stack(got), images[:4])
    assert labels.tolist() == [0, 1, 2, 3]


def test_decoders_agree_with_the_scan_policy(tmp_path: Path) -> None:
    root, expect = _modes_dir(tmp_path)
    for rel, want in expect.items():
        data = (root / rel).read_bytes()
        for name in decode.DECODERS:
            got = decode.get(name)(data)
            assert got.dtype == np.uint8 and got.shape == want.shape, (rel, name)
            if name == "pillow" or not rel.endswith(".jpg"):
                np.testing.assert_array_equal(got, want, err_msg=f"{rel} {name}")
    blobs = [(root / r).read_bytes() for r in expect] * 5
    serial = decode.decode_all(blobs, decode.pillow, 1)
    threaded = decode.decode_all(blobs, decode.pillow, 3)
    assert all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))
    with pytest.raises(ValueError, match="decoder 'turbo'"):
        decode.get("turbo")


def test_not_a_folder_says_what_the_layout_is(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        folder.listing(tmp_path / "nope")
    (tmp_path / "flat.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="no class subfolders"):
        folder.listing(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "lmdb", "hdf5"])
def test_article_mode_widens_labels_only_when_they_do_not_fit(tmp_path: Path, fmt: str) -> None:
    from imgbench.stores import get_store

    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    cases = [([0, 9, 255], np.uint8), ([0, 300, 999], np.uint16)]
    for values, dtype in cases:
        labels = np.array(values, np.uint16)
        store = tmp_path / f"{fmt}{np.dtype(dtype).name}"
        store.mkdir()
        get_store(fmt, "article").write_many(store, images, labels)
        got_images, got = get_store(fmt, "article").read_many(store)
        assert got.dtype == dtype and got.tolist() == values
        np.testing.assert_array_equal(got_images, images)
        _, batch = get_store(fmt, "article").read_batch(store, [2, 0])
        assert batch.tolist() == [values[2], values[0]]
