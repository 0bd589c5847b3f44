"""Time-boxed epochs with the page cache capped below the store (imgbench.experiments.capped)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import pytest

from imgbench import experiments
from imgbench.experiments import access, capped
from imgbench.measure import memcap
from imgbench.stores.npy import NpyStore
from tests.conftest import make_job, random_data


def _source(tmp_path: Path, n: int) -> tuple[Path, Path]:
    images, labels = random_data(n, seed=5)
    ip, lp = tmp_path / "images.npy", tmp_path / "labels.npy"
    np.save(ip, images)
    np.save(lp, labels)
    return ip, lp


def _job(tmp_path: Path, src: tuple[Path, Path], n: int, **kw):
    defaults = dict(
        cache="capped",
        cache_cap=0.2,
        pattern="shuffled",
        batch_size=10,
        readers=1,
        capped_warmup_s=0.3,
        capped_seconds=0.6,
        capped_windows=3,
    )
    return make_job(tmp_path, src, "npy", "tuned", n, **{**defaults, **kw})


class _FakeCap:
    """A cap that limits nothing: for the time-box logic where no cgroup is needed."""

    version = 0

    def enter(self, pid=None):
        pass

    def leave(self):
        pass

    def set_limit(self, limit):
        pass

    def hold_at_limit(self):
        pass

    def memory(self):
        return {"anon": 0, "file": 0, "total": 0, "usage": 0}

    def limit_hits(self):
        return 0


@pytest.fixture
def no_cgroup(monkeypatch):
    monkeypatch.setattr(capped.memcap, "usable", lambda: (True, ""))
    monkeypatch.setattr(capped.memcap, "capped", lambda limit: contextlib.nullcontext(_FakeCap()))
    monkeypatch.setattr(
        capped, "prepare_cache", lambda res, job, path, files: res.resident_fraction.append(0.0)
    )
    monkeypatch.setattr(capped.cache, "resident_fraction", lambda files: 0.0)


class _Slow(NpyStore):
    """npy reads that take 20 ms a batch: an epoch longer than any window here."""

    @contextlib.contextmanager
    def batch_reader(self, path):
        with super().batch_reader(path) as read:

            def slow(indices):
                time.sleep(0.02)
                return read(indices)

            yield slow


def test_the_time_box_stops_the_epoch_and_counts_completed_batches(
    tmp_path, no_cgroup, monkeypatch
):
    src = _source(tmp_path, 2000)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 2000))
    monkeypatch.setattr(capped, "open_store", lambda job, workers=1: _Slow({}, 1))
    orders = []
    real_order = access.epoch_order
    monkeypatch.setattr(capped.access, "epoch_order", lambda *a: orders.append(a) or real_order(*a))
    r = capped.read_capped(_job(tmp_path, src, 2000))
    x = r["extra"]
    assert len(orders) == 1  # one seeded permutation: the window goes on where warm-up stopped
    assert r["verified"] and x["epoch_ended"] is None
    assert x["window_images"] == sum(x["window_parts"]) and len(x["window_parts"]) == 3
    assert x["window_images"] % 10 == 0  # whole batches only
    # 20 ms a batch of 10, one reader: about 300 images in 0.6 s, about 150 before it
    assert 100 <= x["window_images"] <= 400
    before = x["epoch_fraction"] * 2000 - x["window_images"]
    assert before >= 50  # the warm-up read on in the same order, and is not counted
    assert x["epoch_fraction"] < 1  # stopped: the epoch would take 4 s
    assert x["images_per_s"] == pytest.approx(x["window_images"] / x["window_seconds"])
    assert len(r["samples"]) == 3 and r["stats"]["n_samples"] == 3
    # the reader's CPU over the window: a sleeping reader, so well under its wall time
    (user,), (system,) = r["cpu_user_s"], r["cpu_sys_s"]
    assert 0 < user + system < 0.5 * x["window_seconds"] and x["cores"] >= 1


class _Stuck(NpyStore):
    """npy reads whose every batch takes longer than the warm-up and the window together."""

    @contextlib.contextmanager
    def batch_reader(self, path):
        with super().batch_reader(path) as read:

            def stuck(indices):
                time.sleep(1.0)
                return read(indices)

            yield stuck


def test_a_window_with_no_completed_batch_is_a_row_that_says_so(tmp_path, no_cgroup, monkeypatch):
    src = _source(tmp_path, 200)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 200))
    monkeypatch.setattr(capped, "open_store", lambda job, workers=1: _Stuck({}, 1))
    r = capped.read_capped(_job(tmp_path, src, 200, capped_warmup_s=0.1, capped_seconds=0.2))
    x = r["extra"]
    assert x["window_images"] == 0 and x["images_per_s"] is None and r["samples"] == []
    assert x["not_measured"].startswith("no batch of 10 images completed in")


class _Refusing(_FakeCap):
    """A cap whose controller refuses every limit after the first (v1's EBUSY)."""

    def __init__(self):
        self.calls = 0

    def set_limit(self, limit):
        self.calls += 1
        if self.calls > 1:
            raise capped.memcap.CapError("cannot set the memory limit (Device or resource busy)")

    def memory(self):
        return {"anon": 50 << 20, "file": 0, "total": 50 << 20, "usage": 50 << 20}


def test_a_refused_limit_is_counted_and_the_governor_keeps_going():
    cap = _Refusing()
    gov = capped._Governor(cap, 10 << 20)
    gov.start()
    time.sleep(0.1)
    gov.halt.set()
    gov.join()
    assert gov.failures >= 2 and gov.error is None  # still running after the first refusal
    assert gov.own_peak == 50 << 20


def test_an_epoch_shorter_than_the_warm_up_is_used_whole(tmp_path, no_cgroup):
    src = _source(tmp_path, 200)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 200))
    r = capped.read_capped(_job(tmp_path, src, 200, capped_warmup_s=2.0))
    x = r["extra"]
    assert x["epoch_ended"] == "warmup" and x["epoch_fraction"] == 1.0
    assert x["window_images"] == 200 and r["verified"]


def test_without_a_memory_controller_the_row_says_why(tmp_path, monkeypatch):
    src = _source(tmp_path, 200)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 200))
    reason = "no memory cgroup controller here: run as root on a host with one"
    monkeypatch.setattr(capped.memcap, "usable", lambda: (False, reason))
    r = capped.read_capped(_job(tmp_path, src, 200))
    assert r["extra"]["not_measured"] == reason
    assert r["samples"] == [] and r["stats"] is None and not r["verified"]


@pytest.mark.skipif(not memcap.usable()[0], reason=f"no usable memory cgroup: {memcap.usable()[1]}")
@pytest.mark.parametrize("advice", ["default", "random"])
@pytest.mark.parametrize("readers", [1, 2])
def test_a_real_cap_holds_the_store_to_the_cap_and_charges_it_in_the_group(
    tmp_path, readers, advice
):
    n = 60_000  # 184 MB: its cap (37 MB) is above the governor's floor, 5 % above its slack
    src = _source(tmp_path, n)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", n))
    # With the kernel's readahead (8 MiB here) a capped shuffled npy batch of 16 faults in
    # ~128 MB: the window is long enough for a few such batches.
    job = _job(
        tmp_path,
        src,
        n,
        batch_size=16,
        readers=readers,
        advice=advice,
        capped_warmup_s=0.5,
        capped_seconds=1.5,
    )
    r = capped.read_capped(job)
    x = r["extra"]
    assert r["verified"] and (x["images_per_s"] or 0) > 0 and "not_measured" not in x, x
    assert x["epoch_ended"] is None  # a real window: the bound below is not the cold start's
    assert x["resident_start"] <= 0.2 + 0.05
    assert x["resident_peak"] <= 0.2 + 0.05, x
    # nothing of the store is charged outside the group: its resident pages are the group's
    assert x["group_file_bytes_end"] >= x["resident_end"] * x["store_bytes"] - (1 << 20), x
    assert x["cgroup_version"] in (1, 2)


def test_the_capped_table_reads_each_row_against_the_device(tmp_path, no_cgroup):
    from imgbench.report.capped import capped_md, capped_table

    src = _source(tmp_path, 2000)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 2000))
    r = capped.read_capped(_job(tmp_path, src, 2000, capped_warmup_s=0.05, capped_seconds=0.1))
    device = tmp_path / "device.json"
    device.write_text(
        '{"random_4k_iops_qd1": 1000, "random_4k_iops_qd32": 10000, "seq_read_mb_s": 500}'
    )
    row = capped_table([r], device).iloc[0]
    rate = r["extra"]["images_per_s"]
    assert row["cache"] == "capped" and row["images_per_s"] == pytest.approx(rate)
    assert row["limit"] == "random_4k_iops_qd32"
    assert row["limit_fraction"] == pytest.approx(rate / 10000)
    assert row["epoch_fraction"] == r["extra"]["epoch_fraction"] and row["verified"]
    assert row["effective"] and row["tuning"] == ""  # default advice, depth 1: nothing to apply
    noop = {
        **r,
        "extra": {**r["extra"], "advice": "random", "tuning": {"advice": "not applied: x"}},
    }
    assert not capped_table([noop], device).iloc[0]["effective"]
    head = capped_md(capped_table([r], device))[0]
    assert head == "## Epochs from a store 5x the readers' page cache (capped.csv)"


def test_unmeasured_capped_rows_are_one_line_in_the_summary(tmp_path, monkeypatch):
    from imgbench.report.capped import capped_md, capped_table

    src = _source(tmp_path, 200)
    experiments.build_store(make_job(tmp_path, src, "npy", "tuned", 200))
    monkeypatch.setattr(capped.memcap, "usable", lambda: (False, "not root: run as root"))
    rows = [capped.read_capped(_job(tmp_path, src, 200, readers=k)) for k in (1, 2)]
    table = capped_table(rows)
    assert table["not_measured"].eq("not root: run as root").all()
    assert table["images_per_s"].isna().all()
    assert capped_md(table)[2] == "Not measured: not root: run as root."
