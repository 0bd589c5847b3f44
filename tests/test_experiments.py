"""Timed experiments: repeats, warm and cold reads with residency, single-image stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgbench import experiments
from imgbench.core import atomic
from imgbench.core.errors import StoreError, VerificationError
from imgbench.data.cifar import load_source
from imgbench.experiments import common
from imgbench.measure import cache, verify
from imgbench.measure.timing import process_age
from tests.conftest import make_job


def _fadvise_works(d: Path) -> bool:
    probe = d / "probe.bin"
    probe.write_bytes(b"x" * (1 << 20))
    try:
        return cache.evict(probe, "fadvise").fraction < 0.05
    except cache.ColdCacheError:
        return False
    finally:
        probe.unlink()


@pytest.mark.parametrize(
    ("fmt", "mode"), [("png", "article"), ("lmdb", "tuned"), ("hdf5", "tuned")]
)
def test_build_then_read_warm_and_cold(tmp_path: Path, source, fmt: str, mode: str) -> None:
    ip, lp, images, labels = source
    if not _fadvise_works(tmp_path):
        pytest.skip(f"{tmp_path}: file system ignores posix_fadvise (tmpfs?)")
    job = make_job(tmp_path, (ip, lp), fmt, mode, 300, repeats=3, warmup=1, workers=2)
    build = experiments.build_store(job)
    assert job.store.is_dir() and len(build["samples"]) == 3
    assert len(build["warmup_samples"]) == 1
    assert build["operation"] == "write_many" and build["config_hash"] == "h"
    assert 0 < build["startup_s"] <= process_age()
    assert not list(tmp_path.glob(".store.tmp-*")), "a repeat's temporary store was left behind"
    for state in ("warm", "cold"):
        read = make_job(
            tmp_path, (ip, lp), fmt, mode, 300, repeats=4, warmup=1, cache=state, evict="fadvise"
        )
        r = experiments.read_many(read)
        assert r == json.loads(read.result.read_text())
        assert len(r["samples"]) == 4 and r["verified"] and len(r["resident_fraction"]) == 4
        if state == "cold":
            assert max(r["resident_fraction"]) <= 0.05
            assert r["evict_method"] == "fadvise" and r["cache_scope"] == "data"
        else:
            assert min(r["resident_fraction"]) >= cache.WARM_LIMIT  # warm really is warm
            assert r["cache_scope"] == "resident"
        assert r["start"] <= r["end"]


def test_warm_read_makes_an_evicted_store_resident_first(tmp_path: Path, source) -> None:
    ip, lp, _, _ = source
    if not _fadvise_works(tmp_path):
        pytest.skip("file system ignores posix_fadvise")
    experiments.build_store(make_job(tmp_path, (ip, lp), "npy", "tuned", 1000))
    job = make_job(tmp_path, (ip, lp), "npy", "tuned", 1000, cache="warm", repeats=2)
    seen = []

    def evict_then_record(files: list[Path]) -> float:
        cache.evict(job.store, "fadvise", files)  # as if the store had been pushed out
        seen.append(cache.resident_fraction(files))
        return real(files)

    real = cache.make_resident
    try:
        cache.make_resident = evict_then_record
        r = experiments.read_many(job)
    finally:
        cache.make_resident = real
    assert max(seen) <= 0.05, "the store was not cold before make_resident"
    assert min(r["resident_fraction"]) >= cache.WARM_LIMIT and r["cache_scope"] == "resident"


def test_single_image_write_and_read(tmp_path: Path, source) -> None:
    ip, lp, images, labels = source
    if not _fadvise_works(tmp_path):
        pytest.skip("file system ignores posix_fadvise")
    w = experiments.write_one(
        make_job(
            tmp_path, (ip, lp), "hdf5", "article", 1, samples=12, n_images=1200, repeats=2, warmup=1
        )
    )
    stores = tmp_path / "store"
    assert len(w["samples"]) == 24 and len(w["extra"]["ids"]) == 12
    assert len(w["warmup_samples"]) == 12
    assert sorted(int(p.name) for p in stores.iterdir()) == w["extra"]["ids"]
    assert w["extra"]["single_store_disk"]["files"] == 1
    for state in ("warm", "cold"):
        r = experiments.read_one(
            make_job(
                tmp_path,
                (ip, lp),
                "hdf5",
                "article",
                1,
                n_images=1200,
                cache=state,
                evict="fadvise",
                repeats=2,
                warmup=1,
            )
        )
        assert len(r["samples"]) == 24 and r["verified"]
        if state == "cold":
            assert max(r["resident_fraction"]) <= 0.05


def test_sample_ids_fixed_and_distinct() -> None:
    a = common.sample_ids(100_000, 100)
    assert a == common.sample_ids(100_000, 100)
    assert len(set(a)) == 100 and a == sorted(a) and max(a) < 100_000
    assert common.sample_ids(5, 100) == [0, 1, 2, 3, 4]


def test_load_source_refuses_cutoff_above_data(source) -> None:
    ip, lp, _, _ = source
    with pytest.raises(StoreError, match="need 5000"):
        load_source(ip, lp, 5000)


def test_chunked_verify_finds_difference_in_later_chunk(source, monkeypatch) -> None:
    _, _, images, labels = source
    got = images.copy()
    got[1100, 3, 3, 1] ^= 1
    monkeypatch.setattr(verify, "CHUNK", 512)
    with pytest.raises(VerificationError, match="first at index 1100"):
        verify.against_source("x", (got, labels), images, labels)
    verify.against_source("x", (images.copy(), labels.copy()), images, np.asarray(labels))


@pytest.mark.parametrize(("fmt", "deferred"), [("png", 2), ("npy", 0)])
def test_earlier_builds_of_many_files_wait_for_the_end_of_the_run(
    tmp_path: Path, source, monkeypatch, fmt: str, deferred: int
) -> None:
    # Deleting many files slows the next job's timed builds (journal-less ext4): such builds
    # stay hidden until sweep_deferred; a store of few files is deleted by its own job.
    monkeypatch.setattr(atomic, "DEFER_MIN_FILES", 50)
    store = tmp_path / "results" / "stores" / "cifar32" / "tuned" / fmt / "100"
    job = make_job(tmp_path, source[:2], fmt, "tuned", 100, repeats=2, warmup=1, store=store)
    experiments.build_store(job)
    left = sorted(store.parent.glob(".100.tmp-*.build*"))
    assert len(left) == deferred
    assert all(len(list(old.iterdir())) == len(list(store.iterdir())) for old in left)
    assert atomic.sweep_deferred(tmp_path / "results")[0] == deferred
    assert not list(store.parent.glob(".*")), "a deferred build outlived the sweep"
    assert len(list(store.iterdir())) == (101 if fmt == "png" else 2)  # the store stays


@pytest.mark.parametrize("fmt", ["png", "hdf5", "npy"])
def test_build_writers_times_verifies_and_deletes(tmp_path: Path, source, fmt: str) -> None:
    ip, lp, _, _ = source  # 1,200 images: above PARALLEL_MIN_IMAGES, so the writers really run
    job = make_job(tmp_path, (ip, lp), fmt, "tuned", 1200, repeats=2, workers=3)
    r = experiments.build_writers(job)
    assert r["verified"] and len(r["samples"]) == 2
    assert r["extra"]["writers"] == 3 and r["extra"]["parallel_writes"]
    assert r["extra"]["cores"] >= 1
    assert job.store.is_dir(), "the store goes when the workflow deletes it, not here"
    assert json.loads(job.result.read_text()) == r


def _first_share_only(bounds: tuple[int, int]) -> None:
    """A writer bug: every share but the first is lost (module level: the pool pickles it)."""
    from imgbench.stores import npy

    if bounds[0] == 0:
        npy._SHARED["real"](bounds)


def test_build_writers_fails_on_a_store_that_does_not_round_trip(
    tmp_path: Path, source, monkeypatch
) -> None:
    from imgbench.stores import npy

    ip, lp, _, _ = source
    job = make_job(tmp_path, (ip, lp), "npy", "tuned", 1200, workers=2)
    real = npy._pwrite_range
    monkeypatch.setattr(npy, "_pwrite_range", _first_share_only)
    monkeypatch.setattr(npy, "_SHARED", {"real": real})
    with pytest.raises(VerificationError, match="differ"):
        experiments.build_writers(job)
    assert not job.store.exists() and not job.result.exists()
