"""Repeats and statistics; du parsing and marker exclusion."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from imgbench.measure.du import disk_use, parse_du
from imgbench.measure.results import Result
from imgbench.measure.stats import summarize
from imgbench.measure.timing import cpu_delta, cpu_now, measure, process_age


def test_measure_counts_repeats_and_warmups() -> None:
    calls: list[tuple[str, object, bool]] = []
    res = Result("png", "article", "read_one", "warm", 1, repeats=4, warmup=2)
    measure(
        res,
        lambda item: calls.append(("run", item, False)) or 42,
        ["a", "b"],
        before=lambda item, timed: calls.append(("before", item, timed)),
        after=lambda item, out, timed: calls.append(("after", item, timed)) or out == 42 or 1 / 0,
    )
    assert len(res.samples) == 8 and len(res.warmup_samples) == 4  # rounds x items
    assert all(s >= 0 for s in res.samples)
    befores = [(item, t) for c, item, t in calls if c == "before"]
    assert befores[:4] == [("a", False), ("b", False), ("a", False), ("b", False)]
    assert befores[4:] == [("a", True), ("b", True)] * 4
    assert 0 < res.startup_s <= process_age()  # the process's age when its first run began


def test_summarize_values() -> None:
    st = summarize([4.0, 1.0, 3.0, 2.0])
    assert st["median_s"] == 2.5 and st["min_s"] == 1.0 and st["max_s"] == 4.0
    assert st["iqr_s"] == pytest.approx(1.5) and st["n_samples"] == 4
    with pytest.raises(ValueError):
        summarize([])


def test_result_records_times_and_stats(tmp_path: Path) -> None:
    r = Result("png", "article", "read_many", "warm", 10, samples=[0.5, 0.7, 0.6])
    out = r.save(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == out
    assert out["end"] >= out["start"] > 0
    assert out["stats"]["median_s"] == 0.6 and out["node"]


def test_parse_du() -> None:
    assert parse_du("1234\t/some/path\n") == 1234
    assert parse_du("8\tx\n16\ttotal\n") == 8
    with pytest.raises(ValueError):
        parse_du("du: cannot access 'x': No such file or directory")
    with pytest.raises(ValueError):
        parse_du("")


def test_disk_use_excludes_snakemake_markers(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 5000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 100)
    before = disk_use(tmp_path)
    (tmp_path / ".snakemake_timestamp").write_bytes(b"z" * 100_000)
    after = disk_use(tmp_path)
    assert after == before
    assert before["files"] == 2
    assert before["apparent_bytes"] >= 5100
    assert before["kib_allocated"] >= 5  # at least 5,100 bytes allocated


def test_cpu_time_counts_microseconds_and_is_never_negative():
    # 0.1 + 0.2 - 0.3 leaves -5.6e-17 in floats: the reading must still be zero, not negative
    assert 0.1 + 0.2 - 0.3 != 0
    assert cpu_delta((0.3, 0.3), (0.1 + 0.2, 0.1 + 0.2)) == (0.0, 0.0)
    assert cpu_delta((1.0, 2.0), (1.000003, 2.5)) == (0.000003, 0.5)
    before, t0 = cpu_now(), time.process_time()
    while time.process_time() - t0 < 0.003:  # 3 ms of CPU: under os.times' 10 ms tick
        pass
    user, system = cpu_delta(before, cpu_now())
    assert 0.002 < user + system < 0.008  # a 10 ms tick clock reads 0 or 0.01


def test_remove_many_deletes_every_tree_and_leaves_the_rest(tmp_path):
    from imgbench.core.atomic import remove_many

    trees = [tmp_path / f"build{k}" for k in range(3)]
    for t in trees:
        (t / "sub").mkdir(parents=True)
        for i in range(20):
            (t / "sub" / f"{i}.png").write_bytes(b"x")
    keep = tmp_path / "store"
    keep.mkdir()
    remove_many(trees)
    assert not any(t.exists() for t in trees) and keep.is_dir()
