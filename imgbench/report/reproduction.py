"""Every number the article published beside this run's matching article-mode measurement.

Why: a reader should see at a glance how far this machine is from the author's 2019 one, per
number, and which unit question hides in the disk figures. Writes are timed the article's way
(until the library call returned, ``*_returned``), reads warm (right after writing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgbench.report import article
from imgbench.report.markdown import md_table
from imgbench.report.select import one
from imgbench.report.tables import article_row

FORMATS = ("png", "lmdb", "hdf5")
COLUMNS = ["measure", "format", "n_images", "unit", "article", "ours", "ratio", "ours_alt", "note"]
RETURNED = "until the call returned (article's method)"
#: measure -> (operation, cache, unit, scale): writes as the article timed them (call returned).
TIMED = {
    "store": ("write_many_returned", "none", "s", 1.0),
    "read": ("read_many", "warm", "s", 1.0),
    "store_one": ("write_one_returned", "none", "ms", 1e3),
    "read_one": ("read_one", "warm", "ms", 1e3),
}
DISK_UNIT = "article: K(B) as printed; ours: KiB"
DISK_NOTE = "ours: KiB allocated (du -sk); ours_alt: apparent bytes / 1000"


def _row(
    measure: str,
    fmt: str,
    n: int,
    unit: str,
    pub: float,
    ours: float,
    alt: float = np.nan,
    note: str = "",
) -> dict:
    """One table row; the ratio is NaN when this run lacks the measurement."""
    ratio = ours / pub if not np.isnan(ours) else np.nan
    return dict(zip(COLUMNS, (measure, fmt, n, unit, pub, ours, ratio, alt, note), strict=True))


def _time(summary: pd.DataFrame, measure: str, fmt: str, n: int, pub: float) -> dict:
    """A timed measure, looked up as ``TIMED`` says."""
    op, cache, unit, scale = TIMED[measure]
    r = article_row(summary, fmt, op, cache, n)
    ours = float(r["median_s"]) * scale if r is not None else np.nan
    note = RETURNED if op.endswith("_returned") else "warm cache"
    if r is not None and str(r.get("library_sync")) == "True":  # CSV: bool or text
        note += "; the library fsyncs inside the call"
    return _row(measure, fmt, n, unit, pub, ours, note=note)


def _disk(disk: pd.DataFrame, fmt: str, n: int, pub: float) -> dict:
    """Disk use: the article's figure as printed, ours in KiB allocated and apparent kB."""
    ours = alt = np.nan
    d = one(disk, format=fmt, mode="article", n_images=n)
    if d is not None:
        ours, alt = float(d["kib_allocated"]), d["apparent_bytes"] / 1000
    note = DISK_NOTE
    if fmt == "png":
        i = article.CUTOFFS.index(n)
        note += f"; article notebook (its script prints {article.DISK_KB_PNG_SCRIPT[i]})"
    return _row("disk", fmt, n, DISK_UNIT, pub, ours, alt=alt, note=note)


def _disk_one(extras: dict, fmt: str) -> dict:
    """One single-image store's disk use, from ``extras["single_disk"]``."""
    d = (extras.get("single_disk") or {}).get((fmt, "article"))
    ours = float(d["kib_allocated"]) if d else np.nan
    alt = d["apparent_bytes"] / 1000 if d else np.nan
    pub = article.SINGLE[fmt]["disk_kib"]
    return _row("disk_one", fmt, 1, DISK_UNIT, pub, ours, alt=alt, note=DISK_NOTE)


def reproduction_table(
    summary: pd.DataFrame, disk: pd.DataFrame, extras: dict | None = None
) -> pd.DataFrame:
    """One row per published number (54), ours beside it (the article's data set only, picked
    by :func:`imgbench.report.select.select`); a missing measurement is NaN."""
    extras = extras or {}
    rows = []
    for measure, published in (("store", article.STORE_MANY_S), ("read", article.READ_MANY_S)):
        for fmt in FORMATS:
            for n, pub in zip(article.CUTOFFS, published[fmt], strict=True):
                rows.append(_time(summary, measure, fmt, n, pub))
    for fmt in FORMATS:
        for n, pub in zip(article.CUTOFFS, article.DISK_KB[fmt], strict=True):
            rows.append(_disk(disk, fmt, n, pub))
    for fmt in FORMATS:
        single = article.SINGLE[fmt]
        rows.append(_time(summary, "store_one", fmt, 1, single["store_ms"]))
        rows.append(_time(summary, "read_one", fmt, 1, single["read_ms"]))
        rows.append(_disk_one(extras, fmt))
    return pd.DataFrame(rows, columns=COLUMNS)


def reproduction_markdown(table: pd.DataFrame) -> str:
    """The summary.md section: how we timed, the unit question, median ratios, the table."""
    out = [
        "## Reproduction: article mode vs the article's published numbers",
        "",
        "Article-mode code on this machine beside the author's 2019 machine; ratio = ours / "
        "article. Writes are timed until the library call returned, the article's method "
        "(`timeit` around the call, no flush), so data may still sit in the page cache; the "
        "durable times (`write_many`, `write_one`) decide the claims. Reads are warm (right "
        "after writing), as in the article. Disk: the article's figures as printed, labelled "
        '"KB" (`du -h` typed by hand; its HDF5 100k value is MiB × 1000); ours is KiB allocated '
        "(`du -sk`), with apparent bytes / 1000 beside it as `ours_alt`.",
        "",
    ]
    ratios = table.dropna(subset=["ratio"])
    if len(ratios):
        med = ratios.pivot_table(
            index="measure", columns="format", values="ratio", aggfunc="median"
        )
        out += ["Median ratio ours / article:", "", md_table(med.reset_index(), ".3g"), ""]
    out += [md_table(table, ".4g"), ""]
    return "\n".join(out)
