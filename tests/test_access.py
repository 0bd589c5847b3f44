"""Epochs as training reads them: orders, batches, readers, verification, cold proof."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgbench import experiments
from imgbench.core.errors import StoreError, VerificationError
from imgbench.experiments import access
from imgbench.stores import get_store
from imgbench.stores.npy import NpyStore
from tests.conftest import make_job, random_data
from tests.test_capped import _Slow


def test_orders_are_reproducible_and_differ():
    seq = access.epoch_order("sequential", 1000, 7, 0, 50)
    assert (seq == np.arange(1000)).all()
    a, b = (
        access.epoch_order("shuffled", 1000, 7, 0, 50),
        access.epoch_order("shuffled", 1000, 7, 0, 50),
    )
    assert (a == b).all() and sorted(a) == list(range(1000))  # a permutation, from its seed
    assert not (a == seq).all()
    assert not (a == access.epoch_order("shuffled", 1000, 7, 1, 50)).all()  # new each repeat
    r = access.epoch_order("random", 1000, 7, 0, 50)
    assert len(r) == len(set(r)) == 50
    with pytest.raises(ValueError, match="unknown access pattern"):
        access.epoch_order("zigzag", 10, 0, 0, 1)


def test_batches_cover_the_order_once():
    order = access.epoch_order("shuffled", 1000, 1, 0, 0)
    parts = access.batches(order, "shuffled", 256)
    assert [len(p) for p in parts] == [256, 256, 256, 232]
    assert (np.concatenate(parts) == order).all()
    assert all(len(p) == 1 for p in access.batches(order[:9], "random", 256))


@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("readers", [1, 3])
def test_readers_cover_every_index_exactly_once(tmp_path, kind, readers):
    images, labels = random_data(300, seed=2)
    store = get_store("lmdb", "tuned")
    store.write_many(tmp_path, images, labels)
    order = access.epoch_order("shuffled", 300, 0, 0, 0)
    parts = access.batches(order, "shuffled", 16)
    out = access.Epoch(len(order), images.shape[1:], labels.dtype, len(parts))
    access.run_epoch(store, str(tmp_path), parts, readers, kind, out)
    np.testing.assert_array_equal(out.images, images[order])
    np.testing.assert_array_equal(out.labels, labels[order])
    assert not np.isnan(out.latency).any() and (out.latency > 0).all()


@pytest.mark.parametrize("pattern", ["sequential", "shuffled", "random"])
def test_read_epoch_counts_and_verifies(tmp_path, source, pattern):
    experiments.build_store(make_job(tmp_path, source[:2], "hdf5", "tuned", 1000))
    job = make_job(
        tmp_path,
        source[:2],
        "hdf5",
        "tuned",
        1000,
        cache="warm",
        pattern=pattern,
        batch_size=64,
        readers=2,
        random_samples=40,
        repeats=2,
        warmup=1,
    )
    r = experiments.read_epoch(job)
    x = r["extra"]
    want = 40 if pattern == "random" else 1000
    assert x["epoch_images"] == want and r["verified"] and len(r["samples"]) == 2
    assert x["batches"] == (40 if pattern == "random" else 16)  # ceil(1000 / 64)
    assert 0 < x["batch_latency_p50_s"] <= x["batch_latency_p99_s"]


def test_a_wrong_image_at_one_index_fails_the_job(tmp_path, source, monkeypatch):
    experiments.build_store(make_job(tmp_path, source[:2], "npy", "tuned", 500))
    real = NpyStore.batch_reader

    @contextlib.contextmanager
    def lying(self, path):
        with real(self, path) as read:

            def wrong(indices):
                images, labels = read(indices)
                images = images.copy()
                images[np.asarray(indices) == 123] ^= 1  # wrong pixels at store index 123 only
                return images, labels

            yield wrong

    monkeypatch.setattr(NpyStore, "batch_reader", lying)
    job = make_job(
        tmp_path,
        source[:2],
        "npy",
        "tuned",
        500,
        cache="warm",
        pattern="shuffled",
        batch_size=32,
        readers=2,
    )
    with pytest.raises(VerificationError, match="store index 123"):
        experiments.read_epoch(job)


def test_cold_epochs_prove_residency(tmp_path, source):
    from tests.test_experiments import _fadvise_works

    if not _fadvise_works(tmp_path):
        pytest.skip("file system ignores posix_fadvise")
    experiments.build_store(make_job(tmp_path, source[:2], "lmdb", "tuned", 1000))
    job = make_job(
        tmp_path,
        source[:2],
        "lmdb",
        "tuned",
        1000,
        cache="cold",
        evict="fadvise",
        pattern="shuffled",
        batch_size=100,
        readers=2,
        repeats=2,
    )
    r = experiments.read_epoch(job)
    assert len(r["resident_fraction"]) == 2 and max(r["resident_fraction"]) <= 0.05
    assert r["cache_scope"] == "data"


class _FakeStore:
    """A store with known behaviour: every batch takes *read_s*; a batch holding image
    *fail_at* fails, as a damaged file would."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        read_s: float = 0.0,
        fail_at: int | None = None,
    ) -> None:
        self.images, self.labels, self.read_s, self.fail_at = images, labels, read_s, fail_at

    @contextlib.contextmanager
    def batch_reader(self, path):
        def read(idx):
            time.sleep(self.read_s)
            if self.fail_at in idx:
                raise OSError("truncated file read")
            return self.images[idx], self.labels[idx]

        yield read


@pytest.mark.parametrize(("read_s", "lo", "hi"), [(0.002, 0.85, 1.0), (0.04, 0.35, 0.6)])
def test_au_on_a_synthetic_case_with_known_times(tmp_path, read_s, lo, hi):
    # compute 20 ms per batch; one reader: reading 2 ms keeps the accelerator busy (AU ~1),
    # reading 40 ms leaves it waiting half the time (steady state AU = 20 / 40 = 0.5)
    images, labels = random_data(64, seed=1)
    order = access.epoch_order("shuffled", 64, 0, 0, 0)
    parts = access.batches(order, "shuffled", 4)
    out = access.Epoch(64, images.shape[1:], labels.dtype, len(parts))
    got = access.run_training(
        _FakeStore(images, labels, read_s), tmp_path, parts, 1, "thread", out, 0.02
    )
    assert lo <= got["au"] <= hi, got
    assert got["compute_s"] >= 0.02 * len(parts)
    np.testing.assert_array_equal(out.images, images[order])


def test_accelerators_at_90_formula():
    from imgbench.report import epoch_tables

    result = {
        "format": "npy",
        "mode": "tuned",
        "cache": "warm",
        "verified": True,
        "node": "n",
        "config_hash": "h",
        "extra": {
            "au": [0.5, 0.6],
            "stall_s": [1.0],
            "readers": 1,
            "reader_kind": "process",
            "computation_time": 0.016,
            "batch_size": 256,
            "batches": 10,
            "prefetch": 2,
            "cores": 2,
        },
    }
    acc = pd.DataFrame(
        [
            {
                "data": "cifar32",
                "format": "npy",
                "mode": "tuned",
                "reader_kind": "process",
                "readers": 1,
                "cache": "warm",
                "pattern": "shuffled",
                "images_per_s": 100_000.0,
            }
        ]
    )
    t = epoch_tables.au_table([result], acc)
    # 100,000 images/s x 0.016 s / (0.9 x 256) = 6.94 -> 6 accelerators at >= 90 %
    assert t["accelerators_at_90"].iloc[0] == 6 and t["au"].iloc[0] == 0.55


def test_train_experiment_verifies_and_records_au(tmp_path, source):
    experiments.build_store(make_job(tmp_path, source[:2], "npy", "tuned", 1000))
    job = make_job(
        tmp_path,
        source[:2],
        "npy",
        "tuned",
        1000,
        cache="warm",
        batch_size=50,
        readers=2,
        computation_time=0.005,
        au_batches=8,
        repeats=2,
    )
    r = experiments.train(job)
    assert r["verified"] and len(r["extra"]["au"]) == 2 and r["extra"]["batches"] == 8
    assert all(0 < a <= 1.0 for a in r["extra"]["au"])


@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("run", ["epoch", "training"])
def test_a_failing_reader_fails_the_run_with_one_line(tmp_path, kind, run):
    images, labels = random_data(64, seed=3)
    store = _FakeStore(images, labels, fail_at=30)
    parts = access.batches(np.arange(64), "sequential", 4)
    out = access.Epoch(64, images.shape[1:], labels.dtype, len(parts))
    with pytest.raises(StoreError) as info:  # and no reader left waiting: the run returns
        if run == "epoch":
            access.run_epoch(store, tmp_path, parts, 2, kind, out)
        else:
            access.run_training(store, tmp_path, parts, 2, kind, out, 0.001)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg and "truncated file read" in msg


@pytest.mark.parametrize(("kind", "readers"), [("process", 2), ("thread", 3)])
def test_buffered_epoch_streams_every_image_once(tmp_path, source, kind, readers):
    ip, lp, images, _ = source
    experiments.build_store(
        make_job(tmp_path, (ip, lp), "tar", "tuned", 1200, options={"tar_shard_images": 100})
    )
    job = make_job(
        tmp_path,
        (ip, lp),
        "tar",
        "tuned",
        1200,
        options={"tar_shard_images": 100},
        cache="warm",
        pattern="buffered",
        batch_size=64,
        readers=readers,
        reader_kind=kind,
        shuffle_buffer=50,
        repeats=2,
    )
    r = experiments.read_epoch(job)
    x = r["extra"]
    assert r["verified"] and x["epoch_images"] == 1200 and x["shuffle_buffer"] == 50
    assert x["batches"] >= 1200 // 64


def test_stream_plan_deals_shards_and_regions():
    shares, starts, slots = access.stream_plan(
        [100, 100, 50, 100], 2, seed=1, repeat=0, batch_size=64
    )
    assert sorted(s for share in shares for s in share) == [0, 1, 2, 3]
    plans = {
        str(access.stream_plan([1] * 8, 2, seed=1, repeat=k, batch_size=4)[0]) for k in range(5)
    }
    assert len(plans) > 1  # a new shard order per repeat
    sizes = [100, 100, 50, 100]
    assert starts == [0, sum(sizes[s] for s in shares[0])]
    assert slots[0] == 0 and slots[1] == -(-sum(sizes[s] for s in shares[0]) // 64)


def test_buffered_order_is_shuffled_reproducible_and_complete(tmp_path):
    from imgbench.stores import tar

    images, labels = random_data(600, seed=9)
    get_store("tar", "tuned", {"tar_shard_images": 100}).write_many(tmp_path, images, labels)
    a = [i for i, _, _ in tar.stream(tmp_path, 50, seed=3, shards=[4, 0, 2])]
    b = [i for i, _, _ in tar.stream(tmp_path, 50, seed=3, shards=[4, 0, 2])]
    assert a == b and sorted(a) == [*range(0, 100), *range(200, 300), *range(400, 500)]
    last_of_4 = max(k for k, i in enumerate(a) if i >= 400)
    first_of_0 = min(k for k, i in enumerate(a) if i < 100)
    assert first_of_0 < last_of_4  # the buffer mixes across shards, not only within one
    assert [i for i in a if i >= 400] != sorted(i for i in a if i >= 400)  # and within one


def test_buffered_pattern_on_a_format_that_does_not_stream_is_one_line(tmp_path, source):
    from imgbench.core.errors import BenchError

    ip, lp, _, _ = source
    experiments.build_store(make_job(tmp_path, (ip, lp), "npy", "tuned", 100))
    job = make_job(tmp_path, (ip, lp), "npy", "tuned", 100, cache="warm", pattern="buffered")
    with pytest.raises(BenchError, match="only formats that stream"):
        experiments.read_epoch(job)


def test_a_streamed_epoch_that_loses_an_image_fails(tmp_path, source, monkeypatch):
    from imgbench.stores import tar

    ip, lp, _, _ = source
    opts = {"tar_shard_images": 100}
    experiments.build_store(make_job(tmp_path, (ip, lp), "tar", "tuned", 300, options=opts))
    real = tar.stream

    def lossy(path, shuffle_buffer=1000, seed=0, shards=None):
        for k, item in enumerate(real(path, shuffle_buffer, seed, shards)):
            yield item if k != 7 else (item[0] - 1 if item[0] else item[0] + 1, *item[1:])

    monkeypatch.setattr(tar, "stream", lossy)
    job = make_job(
        tmp_path, (ip, lp), "tar", "tuned", 300, options=opts, cache="warm", pattern="buffered"
    )
    with pytest.raises(VerificationError, match="did not deliver each of the 300 images once"):
        experiments.read_epoch(job)


def test_epoch_rows_carry_the_readers_cpu(tmp_path, source):
    from imgbench.report.epoch_tables import access_table
    from imgbench.report.load import expand

    experiments.build_store(make_job(tmp_path, source[:2], "npy", "tuned", 1000))
    job = make_job(
        tmp_path,
        source[:2],
        "npy",
        "tuned",
        1000,
        cache="warm",
        pattern="shuffled",
        batch_size=64,
        readers=2,
        repeats=2,
        warmup=0,
    )
    r = experiments.read_epoch(job)
    row = access_table(expand([{**r, "commit": "c", "dirty": False}])).iloc[0]
    assert row["cpu_user_s"] >= 0 and row["cpu_sys_s"] >= 0 and len(r["cpu_user_s"]) == 2
    assert row["cpu_user_s"] == pytest.approx(np.median(r["cpu_user_s"]))


@pytest.mark.parametrize("op", ["read_epoch", "train"])
def test_a_warmup_stops_after_its_seconds_and_the_timed_epochs_read_all(
    tmp_path, source, monkeypatch, op
):
    """epoch_warmup_s stops the untimed warm-up at the readers' next batch; it is verified
    as far as it went, and every timed epoch still reads every batch."""
    from imgbench.experiments import epochs

    experiments.build_store(make_job(tmp_path, source[:2], "npy", "tuned", 1000))
    monkeypatch.setattr(epochs, "open_store", lambda job, workers=1: _Slow({}, 1))  # 20 ms a batch
    done: list[int] = []
    real_after = epochs.verify.against_indices

    def counting(what, got, images, labels, order):
        done.append(len(order))
        return real_after(what, got, images, labels, order)

    monkeypatch.setattr(epochs.verify, "against_indices", counting)
    kw = {"computation_time": 0.001, "au_batches": 16} if op == "train" else {}
    job = make_job(tmp_path, source[:2], "npy", "tuned", 1000, cache="warm", pattern="shuffled",
                   batch_size=64, readers=2, repeats=2, warmup=1, warmup_s=0.08, **kw)  # fmt: skip
    r = getattr(experiments, op)(job)
    # 2 readers x 20 ms a batch: about 4 batches in 0.08 s, then each reader's current one
    assert 64 <= done[0] <= 8 * 64 and done[0] % 64 == 0, done
    assert done[1:] == [1000, 1000] and len(r["samples"]) == 2


def test_window_cpu_is_each_readers_cpu_between_the_batches_around_the_window():
    out = access.Epoch(8, (2,), np.dtype(np.int64), 8, stamp_cpu=True)
    # two reader processes (batches 0, 2, 4, 6 and 1, 3, 5, 7), done at t = b + 1
    out.done_at[:] = np.arange(1.0, 9.0)
    out.cpu_user[:] = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]
    out.cpu_sys[:] = [0.5, 5.0, 1.0, 10.0, 1.5, 15.0, 2.0, 20.0]
    # window (2.5, 6.5]: reader 0 from batch 0 (cpu 1) to batch 4 (3); reader 1 from 1 to 5
    assert access.window_cpu(out, [2.5, 4.0, 6.5], 2, "process") == (2.0 + 20.0, 1.0 + 10.0)
    # no batch before a window that starts before the readers: their clocks start at 0
    out.started_at = 0.6
    assert access.window_cpu(out, [0.5, 6.5], 2, "process") == (3.0 + 30.0, 1.5 + 15.0)
    out.started_at = 0.4  # ... but a window after they started needs their clocks read then
    assert access.window_cpu(out, [0.5, 6.5], 2, "process") is None
    out.window_start_cpu = [(0.25, 0.125), (0.5, 0.25)]  # as timed_windows read /proc
    assert access.window_cpu(out, [0.5, 6.5], 2, "process") == (2.75 + 29.5, 1.375 + 14.75)
    out.window_start_cpu = [(9.0, 4.0)]  # thread readers: the process's clock
    assert access.window_cpu(out, [0.5, 6.5], 2, "thread") == (30.0 - 9.0, 15.0 - 4.0)
    # threads share one clock: the last stamps before each end, whoever wrote them
    assert access.window_cpu(out, [2.5, 6.5], 2, "thread") == (30.0 - 10.0, 15.0 - 5.0)
    out.window_start_cpu = []
    assert access.window_cpu(out, [0.5, 6.5], 2, "thread") is None  # no start on that clock
    out.done_at[5:] = np.nan  # batches not done are not stamps
    assert access.window_cpu(out, [2.5, 9.0], 2, "process") == (3.0 - 1.0 + 20.0 - 10.0, 1.0 + 5.0)
    out.cpu_user[4] = np.nan  # an epoch that did not stamp: no CPU, not a zero
    assert access.window_cpu(out, [2.5, 9.0], 2, "process") is None


def test_reader_cpu_reads_a_live_process_clock_and_none_for_an_ended_one():
    import os
    import resource

    out = access.Epoch(1, (1,), np.dtype(np.int64), 1)
    gone_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has it
    out.pids = [os.getpid(), gone_pid]
    here, gone = access.reader_cpu(out)
    use = resource.getrusage(resource.RUSAGE_SELF)
    assert abs(sum(here) - (use.ru_utime + use.ru_stime)) < 0.05 and gone is None
