"""Timed stages: repeats, warm and cold reads with residency, single-image stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgbench import cache, steps


def _fadvise_works(d: Path) -> bool:
    probe = d / "probe.bin"
    probe.write_bytes(b"x" * (1 << 20))
    cache.evict_fadvise([probe])
    ok = cache.resident_fraction([probe]) < 0.05
    probe.unlink()
    return ok


@pytest.mark.parametrize(
    ("fmt", "mode"), [("png", "article"), ("lmdb", "tuned"), ("hdf5", "tuned")]
)
def test_build_then_read_warm_and_cold(tmp_path: Path, source, fmt: str, mode: str) -> None:
    ip, lp, images, labels = source
    if not _fadvise_works(tmp_path):
        pytest.skip(f"{tmp_path}: file system ignores posix_fadvise (tmpfs?)")
    store = tmp_path / "store"
    build = steps.build_store(fmt, mode, {}, 2, ip, lp, 300, 3, 1, store, tmp_path / "b.json", "h")
    assert store.is_dir() and len(build["samples"]) == 3 and len(build["warmup_samples"]) == 1
    assert build["operation"] == "write_many" and build["config_hash"] == "h"
    assert not list(tmp_path.glob(".store.tmp-*")), "a repeat's temporary store was left behind"
    for state in ("warm", "cold"):
        out = tmp_path / f"{state}.json"
        r = steps.read_many(fmt, mode, {}, 2, store, ip, lp, 300, state, 4, 1, "fadvise", out, "h")
        assert r == json.loads(out.read_text())
        assert len(r["samples"]) == 4 and r["verified"] and len(r["resident_fraction"]) == 4
        if state == "cold":
            assert max(r["resident_fraction"]) <= 0.05
            assert r["evict_method"] == "fadvise"
        else:
            assert min(r["resident_fraction"]) > 0.5  # warm really is warm
        assert r["start"] <= r["end"]


def test_single_image_write_and_read(tmp_path: Path, source) -> None:
    ip, lp, images, labels = source
    if not _fadvise_works(tmp_path):
        pytest.skip("file system ignores posix_fadvise")
    stores = tmp_path / "single"
    w = steps.write_one(
        "hdf5", "article", {}, ip, lp, 1200, 12, 2, 1, stores, tmp_path / "w.json", "h"
    )
    assert len(w["samples"]) == 24 and len(w["extra"]["ids"]) == 12
    assert sorted(int(p.name) for p in stores.iterdir()) == w["extra"]["ids"]
    assert w["extra"]["single_store_disk"]["files"] == 1
    for state in ("warm", "cold"):
        r = steps.read_one(
            "hdf5",
            "article",
            {},
            stores,
            ip,
            lp,
            1200,
            state,
            2,
            1,
            "fadvise",
            tmp_path / f"r{state}.json",
            "h",
        )
        assert len(r["samples"]) == 24 and r["verified"]
        if state == "cold":
            assert max(r["resident_fraction"]) <= 0.05


def test_sample_ids_fixed_and_distinct() -> None:
    a = steps.sample_ids(100_000, 100)
    assert a == steps.sample_ids(100_000, 100)
    assert len(set(a)) == 100 and a == sorted(a) and max(a) < 100_000
    assert steps.sample_ids(5, 100) == [0, 1, 2, 3, 4]


def test_load_source_refuses_cutoff_above_data(source) -> None:
    ip, lp, _, _ = source
    with pytest.raises(steps.StoreError, match="need 5000"):
        steps.load_source(ip, lp, 5000)


def test_chunked_verify_finds_difference_in_later_chunk(source) -> None:
    _, _, images, labels = source
    got = images.copy()
    got[1100, 3, 3, 1] ^= 1
    with pytest.raises(steps.verify.VerificationError, match="first at index 1100"):
        monkey = steps.VERIFY_CHUNK
        steps.VERIFY_CHUNK = 512
        try:
            steps.verify_chunked("x", (got, labels), images, labels)
        finally:
            steps.VERIFY_CHUNK = monkey
    steps.verify_chunked("x", (images.copy(), labels.copy()), images, np.asarray(labels))
