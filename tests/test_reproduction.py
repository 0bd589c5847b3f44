"""The reproduction table: every published number once, ours beside it, timed the article's way."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from imgbench.report import article
from imgbench.report.reproduction import reproduction_markdown, reproduction_table
from imgbench.report.tables import disk_table, summary_table
from tests.conftest import summary_row

FORMATS = ("png", "lmdb", "hdf5")


def row(fmt, op, n, median, mode="article", cache=None, **kw):
    """One summary row."""
    return summary_row(fmt, op, n, median, mode, cache=cache, **kw)


def disk_row(fmt, n, kib, apparent, mode="article"):
    return {
        "data": "cifar32",
        "format": fmt,
        "mode": mode,
        "n_images": n,
        "kib_allocated": kib,
        "apparent_bytes": apparent,
    }


def table(rows=(), disk=(), extras=None):
    """The reproduction table of these rows (none: the tables of an empty run)."""
    summary = pd.DataFrame(list(rows)) if rows else summary_table([])
    dsk = pd.DataFrame(list(disk)) if disk else disk_table([])
    return reproduction_table(summary, dsk, extras)


def one(t, measure, fmt, n):
    sel = t[(t["measure"] == measure) & (t["format"] == fmt) & (t["n_images"] == n)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_every_published_number_appears_exactly_once():
    t = table()
    assert len(t) == 3 * 5 * 3 + 3 * 3
    assert not t.duplicated(["measure", "format", "n_images"]).any()
    published = [
        ("store", article.STORE_MANY_S),
        ("read", article.READ_MANY_S),
        ("disk", article.DISK_KB),
    ]
    for measure, series in published:
        for fmt in FORMATS:
            got = t[(t["measure"] == measure) & (t["format"] == fmt)]
            assert got["n_images"].tolist() == article.CUTOFFS
            assert got["article"].tolist() == series[fmt]
    for fmt in FORMATS:
        s = article.SINGLE[fmt]
        for measure, key in (
            ("store_one", "store_ms"),
            ("read_one", "read_ms"),
            ("disk_one", "disk_kib"),
        ):
            assert one(t, measure, fmt, 1)["article"] == s[key]
    assert t["ours"].isna().all() and t["ratio"].isna().all()  # nothing measured: rows kept


def test_writes_use_the_returned_time_and_the_ratio_is_ours_over_article():
    rows = [
        row("png", "write_many_returned", 10, 0.0226),
        row("png", "write_many", 10, 5.0),  # durable: not the article's method
        row("lmdb", "write_one_returned", 1, 0.002406),
        row("lmdb", "write_one", 1, 0.5),
        row("hdf5", "read_many", 100, 0.0094),
        row("hdf5", "read_many", 100, 1.0, cache="cold"),
        row("png", "write_many_returned", 10, 9.0, mode="tuned"),
    ]
    t = table(rows)
    r = one(t, "store", "png", 10)
    assert r["ours"] == 0.0226 and r["ratio"] == pytest.approx(2.0)
    assert "returned" in r["note"]
    r = one(t, "store_one", "lmdb", 1)
    assert r["unit"] == "ms" and r["ours"] == pytest.approx(2.406)
    assert r["ratio"] == pytest.approx(2.0)
    r = one(t, "read", "hdf5", 100)
    assert r["ours"] == 0.0094 and r["ratio"] == pytest.approx(2.0)
    assert t["ours"].notna().sum() == 3


def test_library_sync_is_noted():
    rows = [
        row("lmdb", "write_many_returned", 10, 0.003, library_sync=True),
        row("png", "write_many_returned", 10, 0.02, library_sync=False),
    ]
    t = table(rows)
    assert "fsyncs inside the call" in one(t, "store", "lmdb", 10)["note"]
    assert "fsyncs" not in one(t, "store", "png", 10)["note"]


def test_disk_shows_both_units():
    disk = [disk_row("hdf5", 100000, 300004, 307_210_000), disk_row("png", 10, 48, 35_846)]
    single = {("lmdb", "article"): {"kib_allocated": 24, "apparent_bytes": 16384, "files": 2}}
    t = table(disk=disk, extras={"single_disk": single})
    r = one(t, "disk", "hdf5", 100000)
    assert r["ours"] == 300004 and r["ours_alt"] == pytest.approx(307_210.0)
    assert r["ratio"] == pytest.approx(300004 / 293000)
    assert "KiB" in r["unit"] and "apparent bytes / 1000" in r["note"]
    r = one(t, "disk", "png", 10)
    assert r["ours"] == 48 and r["ours_alt"] == pytest.approx(35.846)
    assert "44" in r["note"]  # the script's PNG series beside the notebook's
    r = one(t, "disk_one", "lmdb", 1)
    assert (r["ours"], r["ours_alt"], r["ratio"]) == (24, pytest.approx(16.384), 0.75)
    assert np.isnan(one(t, "disk_one", "png", 1)["ours"])


def test_markdown_says_how_writes_were_timed():
    t = table([row("png", "write_many_returned", 10, 0.0226)])
    md = reproduction_markdown(t)
    assert "until the library call returned" in md
    assert "KiB allocated" in md and "apparent bytes / 1000" in md
    assert len(re.findall(r"^\| store +\| png +\|", md, flags=re.M)) == 5
    assert md.count("\n| ") == (1 + 1) + (1 + 54)  # ratios: header + 1 row; table: header + 54


def test_other_image_sizes_beside_the_articles_do_not_leak_in():
    # "cifar128" sorts before "cifar32": a lookup without the data key would pick it first
    rows = [
        row(fmt, "read_many", 10, median, data=data)
        for data, median in (("cifar128", 9.0), ("cifar32", 1.0), ("cifar256", 7.0))
        for fmt in FORMATS
    ]
    disk = [
        {**disk_row("lmdb", 10, kib, kib * 1000), "data": data}
        for data, kib in (("cifar128", 900), ("cifar32", 100), ("cifar256", 700))
    ]
    t = table(rows, disk)
    assert one(t, "read", "png", 10)["ours"] == 1.0
    assert one(t, "disk", "lmdb", 10)["ours"] == 100
