"""Repeats and statistics; du parsing and marker exclusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbench.du import disk_use, parse_du
from imgbench.timing import Result, measure, summarize


def test_measure_counts_repeats_and_warmups() -> None:
    calls: list[tuple[str, bool]] = []
    warm: list[float] = []
    samples = measure(
        lambda: calls.append(("run", False)) or 42,
        repeats=4,
        warmup=2,
        before=lambda timed: calls.append(("before", timed)),
        after=lambda result, timed: calls.append(("after", timed)) or (result == 42) or 1 / 0,
        warmups=warm,
    )
    assert len(samples) == 4 and len(warm) == 2
    assert all(s >= 0 for s in samples)
    assert [t for c, t in calls if c == "before"] == [False, False, True, True, True, True]


def test_summarize_values() -> None:
    st = summarize([4.0, 1.0, 3.0, 2.0])
    assert st["median_s"] == 2.5 and st["min_s"] == 1.0 and st["max_s"] == 4.0
    assert st["iqr_s"] == pytest.approx(1.5) and st["n_samples"] == 4
    with pytest.raises(ValueError):
        summarize([])


def test_result_records_times_and_stats() -> None:
    r = Result("png", "article", "read_many", "warm", 10, samples=[0.5, 0.7, 0.6])
    out = r.finish()
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
