"""The same rules for every format: durable writes, honest cold and warm, clear damage."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgbench import experiments
from imgbench.core.errors import StoreError
from imgbench.experiments import builds
from imgbench.measure import cache
from imgbench.measure.du import disk_use
from imgbench.report import tables
from imgbench.stores import FORMATS, lmdb_store, modes
from tests.conftest import make_job

COMBOS = [(f, m) for f in FORMATS for m in modes(f)]


@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
def test_write_timing_includes_the_common_flush(tmp_path, source, monkeypatch, fmt, mode):
    import time

    real = builds.fsync_tree
    flushes = []

    def slow_flush(path: Path) -> None:
        flushes.append(path)
        time.sleep(0.05)
        real(path)

    monkeypatch.setattr(builds, "fsync_tree", slow_flush)
    r = experiments.build_store(make_job(tmp_path, source[:2], fmt, mode, 50, repeats=2))
    assert len(r["returned_samples"]) == len(r["samples"]) == 2
    for durable, returned in zip(r["samples"], r["returned_samples"], strict=True):
        assert durable >= returned + 0.05  # the flush is inside the durable time
    # the article's LMDB (sync=True) and TileDB (fsyncs every file it writes; no switch) pay
    # for durability inside the call as well: the tables say so
    assert r["extra"]["library_sync"] == ((fmt, mode) in {("lmdb", "article"), ("tiledb", "tuned")})


def test_lmdb_sync_only_where_the_article_had_it(tmp_path, source, monkeypatch):
    opened = []
    real = lmdb_store.lmdb.open

    def spy(path: str, **kwargs: object):
        if not kwargs.get("readonly"):
            opened.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(lmdb_store.lmdb, "open", spy)
    for mode in ("article", "tuned"):
        d = tmp_path / mode
        experiments.build_store(make_job(d, source[:2], "lmdb", mode, 20, store=d / "s"))
    article, tuned = opened
    assert "sync" not in article  # the article's default: sync=True, fsync at every commit
    assert tuned["sync"] is False  # tuned relies on the harness's flush, like every format


def test_du_apparent_bytes_are_the_sum_of_file_sizes(tmp_path):
    for i in range(30):
        (tmp_path / f"{i}.bin").write_bytes(b"x" * (100 + i))
    use = disk_use(tmp_path)
    assert use["apparent_bytes"] == sum(100 + i for i in range(30))
    assert use["files"] == 30 and use["kib_allocated"] >= 30 * 4  # one block per file


def _damage(store: Path, how: str) -> Path:
    files = sorted((p for p in store.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim = files[-1] if how == "truncate" else files[len(files) // 2]
    if how == "truncate":
        os.truncate(victim, victim.stat().st_size // 3)
    else:
        victim.unlink()
    return victim


@pytest.mark.parametrize("how", ["truncate", "missing"])
@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
def test_damaged_store_fails_with_one_line(tmp_path, source, fmt, mode, how):
    build = make_job(tmp_path, source[:2], fmt, mode, 40)
    experiments.build_store(build)
    victim = _damage(build.store, how)
    read = make_job(tmp_path, source[:2], fmt, mode, 40, cache="warm")
    with pytest.raises(StoreError) as info:
        experiments.read_many(read)
    msg = str(info.value)
    assert "\n" not in msg and "rerun" in msg
    assert str(build.store) in msg or str(victim) in msg, msg


def test_cold_full_read_opens_nothing_between_drop_and_timer(tmp_path, source, monkeypatch):
    build = make_job(tmp_path, source[:2], "npy", "tuned", 100)
    experiments.build_store(build)
    store = str(build.store)
    state = {"after_drop": False}
    opened_after_drop: list[str] = []
    drops: list[str] = []
    monkeypatch.setattr(cache, "can_drop_caches", lambda: True)

    def fake_drop(what: str = cache.PAGES) -> None:
        drops.append(what)
        state["after_drop"] = what == cache.INODES

    monkeypatch.setattr(cache, "drop_caches", fake_drop)
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *a, **k):
        if state["after_drop"] and str(file).startswith(store):
            opened_after_drop.append(str(file))
        return real_open(file, *a, **k)

    def spy_os_open(file, *a, **k):
        if state["after_drop"] and str(file).startswith(store):
            opened_after_drop.append(str(file))
        return real_os_open(file, *a, **k)

    from imgbench.stores.npy import NpyStore

    real_read = NpyStore.read_many

    def timed_read(self, path):  # the timed call: from here on, opening the store is the job
        state["after_drop"] = False
        return real_read(self, path)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(NpyStore, "read_many", timed_read)
    read = make_job(tmp_path, source[:2], "npy", "tuned", 100, cache="cold", repeats=3)
    r = experiments.read_many(read)
    assert drops.count(cache.INODES) == 3 and r["cache_scope"] == "full"
    assert opened_after_drop == []


def test_spread_flag_marks_repeats_that_disagree():
    base = {
        "data": "cifar32",
        "format": "png",
        "mode": "tuned",
        "operation": "read_many",
        "cache": "warm",
        "n_images": 10,
        "repeats": 3,
        "warmup": 1,
        "threads": 1,
        "verified": True,
        "node": "n",
        "config_hash": "h",
        "start": 0,
        "end": 1,
    }
    rows = []
    for samples in ([1.0, 1.01, 1.02], [1.0, 1.2, 1.1]):
        st = {"median_s": float(np.median(samples)), "min_s": min(samples), "max_s": max(samples)}
        rows.append(
            {**base, "samples": samples, "stats": {**st, "iqr_s": 0, "mean_s": 1, "n_samples": 3}}
        )
    df = tables.summary_table(rows)
    assert list(df["spread_flag"]) == [False, True]


def test_no_timed_build_follows_a_delete(tmp_path, source, monkeypatch):
    from imgbench.stores.npy import NpyStore

    events: list[str] = []
    real_write, real_remove = NpyStore.write_many, builds.remove
    monkeypatch.setattr(
        NpyStore, "write_many", lambda self, *a: events.append("build") or real_write(self, *a)
    )
    monkeypatch.setattr(builds, "remove", lambda p: events.append("delete") or real_remove(p))
    job = make_job(tmp_path, source[:2], "npy", "tuned", 100, repeats=3, warmup=1)
    r = experiments.build_store(job)
    assert events == ["build"] * 4 + ["delete"] * 3  # earlier builds go only after the last
    assert len(r["cpu_user_s"]) == len(r["cpu_sys_s"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert job.store.is_dir()


def test_article_comparison_keeps_a_row_with_only_write_data():
    from tests.conftest import summary_row

    summary = pd.DataFrame([summary_row("png", "write_many_returned", 10, 0.02)])
    disk = pd.DataFrame(columns=["format", "mode", "n_images", "kib_allocated"])
    art = tables.article_table(summary, disk)
    assert len(art) == 1 and art["write_many_s_ours"].iloc[0] == 0.02
    assert np.isnan(art["read_many_s_ours"].iloc[0])
