"""The report picks the right rows: the article's data set beside other image sizes, no
partially resident warm rows, unknown spreads, and results that say which code measured them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imgbench.measure.stats import summarize
from imgbench.report import tables
from imgbench.report.epoch_tables import writers_table
from imgbench.report.load import load, provenance_note, read_result
from imgbench.report.markdown import md_table
from imgbench.report.select import ANY, ReportError, one, select
from imgbench.report.summary import which_format
from imgbench.report.write import write_tables
from tests.test_claims import FORMATS, epochs, extras, judge, published, writers

#: "cifar128" sorts before "cifar32", "cifar256" after: both beside the article's rows.
OTHER = ("cifar128", "cifar256")


def _as(rows: list[dict], data: str, scale: float) -> list[dict]:
    """The same rows for another data set, every median scaled."""
    return [{**r, "data": data, "median_s": r["median_s"] * scale} for r in rows]


def test_select_fixes_the_data_set_unless_named():
    df = pd.DataFrame({"data": ["cifar128", "cifar32", "cifar256"], "format": ["png"] * 3})
    assert select(df, format="png")["data"].tolist() == ["cifar32"]
    assert select(df, format="png", data="cifar256")["data"].tolist() == ["cifar256"]
    assert len(select(df, format="png", data=ANY)) == 3
    with pytest.raises(ReportError, match="no column mode"):
        select(df, mode="article")
    with pytest.raises(ReportError, match="3 rows match"):
        one(df, format="png", data=ANY)


def test_select_leaves_out_partially_resident_warm_rows():
    df = pd.DataFrame(
        {
            "data": ["cifar32"] * 3,
            "cache": ["warm", "warm", "cold"],
            "cache_scope": ["resident", "partial,resident", "data"],
        }
    )
    assert select(df)["cache_scope"].tolist() == ["resident", "data"]
    assert len(select(df, partial=True)) == 3


def test_claims_ignore_other_image_sizes_in_every_table():
    base = published()
    # the other sizes say the opposite: PNG as fast as the others, writers that scale
    flat = [{**r, "median_s": 1.0} for r in base]
    rows = base + [r for d in OTHER for r in _as(flat, d, 1.0)]
    acc = epochs(lmdb_sequential_1_process=1.0, lmdb_sequential_2_process=0.9)
    acc["data"] = "cifar32"
    fast = epochs(lmdb_sequential_1_process=1.0, lmdb_sequential_2_process=0.5)
    acc = pd.concat([acc, *(fast.assign(data=d) for d in OTHER)], ignore_index=True)
    w = writers(hdf5_1=10.0, hdf5_2=9.0).assign(data="cifar32")
    scaling = writers(hdf5_1=10.0, hdf5_2=5.2)
    w = pd.concat([*(scaling.assign(data=d) for d in OTHER), w], ignore_index=True)
    v = judge(rows, ext=extras(access=acc, writers=w))
    assert v["many-store-png-slow"][0] == "holds"
    assert v["many-read-png-slow"][0] == "holds"
    assert v["lmdb-readers"][0] == "fails", v["lmdb-readers"]
    assert v["hdf5-write-lock"][0] == "fails", v["hdf5-write-lock"]


def test_article_table_ignores_other_image_sizes():
    rows = [
        {**r, "operation": "read_many", "cache": "warm", "n_images": 10, "format": f}
        for f in FORMATS
        for r in [{"data": "cifar32", "mode": "article", "median_s": 1.0}]
    ]
    rows += [r for d in OTHER for r in _as(rows, d, 9.0)]
    art = tables.article_table(pd.DataFrame(rows), tables.disk_table([]))
    assert (art[art["n_images"] == 10]["read_many_s_ours"] == 1.0).all()


def test_which_format_judges_one_data_set():
    rows = []
    for data, png, lmdb in (("cifar32", 1.0, 2.0), ("cifar128", 9.0, 0.1), ("cifar256", 9.0, 0.1)):
        for fmt, med in (("png", png), ("lmdb", lmdb)):
            rows.append(
                {
                    "data": data,
                    "format": fmt,
                    "mode": "tuned",
                    "operation": "read_one",
                    "cache": "warm",
                    "n_images": 1,
                    "median_s": med,
                }
            )
    text = "\n".join(
        which_format(pd.DataFrame(rows), tables.disk_table([]), pd.DataFrame(), "cifar32")
    )
    line = next(x for x in text.splitlines() if x.startswith("| one image"))
    assert line.split("|")[2].strip() == "png" and "`cifar32`" in text


def test_unknown_spread_calls_no_difference_real():
    rows = [{**r, "spread": np.nan} if r["operation"] == "write_one" else r for r in published()]
    verdict, numbers = judge(rows)["single-store-lmdb-edge"]
    assert verdict == "not tested" and "spread is unknown" in numbers
    acc = epochs(lmdb_sequential_1_process=1.0, lmdb_shuffled_1_process=2.0)
    acc.loc[acc["pattern"] == "shuffled", "spread"] = np.nan
    verdict, numbers = judge(published(), ext=extras(access=acc))["lmdb-sequential"]
    assert verdict == "not tested" and "not decided" in numbers


def test_partially_resident_warm_rows_decide_no_claim():
    rows = [
        {**r, "cache_scope": "partial"} if r["operation"] == "read_many" else r for r in published()
    ]
    verdict, numbers = judge(rows)["many-read-png-slow"]
    assert verdict == "not tested" and "not fully resident" in numbers


def result(commit: str | None = "abc123", dirty: bool = False, data: str = "cifar32") -> dict:
    """A timed result as a job writes it (only the fields the tables read)."""
    samples = [1.0, 1.01, 0.99]
    r = {
        "data": data,
        "format": "npy",
        "mode": "tuned",
        "operation": "read_many",
        "cache": "warm",
        "n_images": 10,
        "samples": samples,
        "stats": summarize(samples),
        "threads": 1,
        "repeats": 3,
        "warmup": 0,
        "verified": True,
        "node": "n",
        "config_hash": "h",
        "start": 0.0,
        "end": 1.0,
        "dirty": dirty,
        "code_hash": "c",
    }
    return r | ({"commit": commit} if commit else {})


def test_a_result_without_commit_fails_in_one_line(tmp_path):
    path = tmp_path / "results" / "timings" / "cifar32" / "x.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result(commit=None)))
    with pytest.raises(ReportError) as e:
        load([path])
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "commit" in msg
    assert f"delete {tmp_path / 'results' / 'timings'} and rerun" in msg
    assert "commit" not in read_result(path, timed=False)  # untimed results may lack it


def test_rows_carry_commit_and_dirty():
    rows = [result("a1"), result("b2", dirty=True, data="cifar64")]
    summary = tables.summary_table(rows)
    assert summary[["commit", "dirty"]].values.tolist() == [["a1", False], ["b2", True]]
    assert set(tables.samples_table(rows)["commit"]) == {"a1", "b2"}
    w = writers_table([{**result("a1"), "extra": {"writers": 1, "writers_used": 1, "cores": 2}}])
    assert w["commit"].tolist() == ["a1"]


def test_provenance_note_names_commits_and_dirty_trees():
    one_clean = tables.summary_table([result("a1"), result("a1", data="cifar64")])
    assert provenance_note([one_clean]) is None
    two = tables.summary_table([result("a1"), result("b2", dirty=True, data="cifar64")])
    note = provenance_note([two])
    assert "\n" not in note and "2 commits (a1, b2)" in note and "dirty" in note


def test_write_tables_says_when_rows_come_from_two_commits(tmp_path):
    paths = []
    for i, (commit, data) in enumerate((("a1", "cifar32"), ("b2", "cifar64"))):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(result(commit, data=data)))
        paths.append(p)
    names = ["samples", "summary", "disk", "article", "claims", "reproduction", "access", "au"]
    outputs = {k: tmp_path / f"{k}.csv" for k in [*names, "writers", "capped", "payload", "s3"]}
    write_tables(paths, [], [], [], [], markdown=tmp_path / "summary.md", **outputs)
    md = (tmp_path / "summary.md").read_text()
    assert "rows come from 2 commits (a1, b2)" in md
    assert set(pd.read_csv(outputs["summary"])["commit"]) == {"a1", "b2"}


def test_md_table_empty_cells_and_escaped_pipes():
    text = md_table(pd.DataFrame({"a": [1.23456, np.nan], "b|c": ["x|y", None]}))
    lines = text.splitlines()
    assert "nan" not in text and "None" not in text
    assert r"x\|y" in lines[2] and r"b\|c" in lines[0] and "1.235" in lines[2]
    assert {x.replace(r"\|", "").count("|") for x in lines} == {3}
