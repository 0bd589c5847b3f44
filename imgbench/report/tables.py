"""The tables of timed builds and reads: samples, summary, disk use, payload, article mode.

Why here: each builder turns result dicts (as :mod:`imgbench.report.load` reads them) into
one tidy pandas table with a row's every dimension (``data``, format, mode, ...) and its code
provenance (``commit``, ``dirty``), so summary.md, the claims and the figures read one truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgbench.data.sizes import ENCODED, image_bytes, is_encoded, main_pixels
from imgbench.report import article
from imgbench.report.load import PROVENANCE, provenance
from imgbench.report.select import one, partial_warm, select
from imgbench.stores import FORMATS

KEYS = ["data", "format", "mode", "operation", "cache", "n_images"]


#: Repeats whose (max - min) / median exceed this are flagged (MLPerf Storage: "within 5 %").
SPREAD_LIMIT = 0.05


def spread(r: dict) -> float:
    """(max - min) / median over the repeats. One-image jobs time many ids per repeat: their
    repeats are compared by each repeat's median (the ids' spread is not noise)."""
    samples = np.asarray(r["samples"], dtype=float)
    ids = r.get("extra", {}).get("ids") or []
    if len(ids) > 1 and len(samples) % len(ids) == 0:
        samples = np.median(samples.reshape(-1, len(ids)), axis=1)
    med = float(np.median(samples))
    return float((samples.max() - samples.min()) / med) if med else 0.0


def median_of(values: list[float] | None) -> float:
    return float(np.median(values)) if values else np.nan


def samples_table(results: list[dict]) -> pd.DataFrame:
    """One row per timed sample."""
    rows = [
        {
            **{k: r[k] for k in KEYS},
            "sample": i,
            "seconds": s,
            "node": r["node"],
            "config_hash": r["config_hash"],
            **provenance(r),
        }
        for r in results
        for i, s in enumerate(r["samples"])
    ]
    cols = [*KEYS, "sample", "seconds", "node", "config_hash", *PROVENANCE]
    return pd.DataFrame(rows, columns=cols)


#: summary.csv's columns, so an empty run still has every one (lookups name columns).
SUMMARY_COLUMNS = [*KEYS, "median_s", "min_s", "max_s", "iqr_s", "mean_s", "n_samples", "spread",
                   "spread_flag", "us_per_image", "images_per_s", "mb_per_s", "resident_max",
                   "evict_method", "cache_scope", "partial_warm", "library_sync", "startup_s",
                   "cpu_user_s", "cpu_sys_s", "threads", "repeats", "warmup", "verified", "node",
                   "config_hash", *PROVENANCE, "start", "end"]  # fmt: skip


def summary_table(results: list[dict]) -> pd.DataFrame:
    """One row per measurement: median and spread, per-image cost, residency, provenance;
    ``partial_warm`` labels warm rows whose store was not fully resident (they decide no
    claim)."""
    rows = []
    for r in results:
        st = r["stats"]
        res = r.get("resident_fraction") or []
        rows.append(
            {
                **{k: r[k] for k in KEYS},
                **{
                    k: st[k] for k in ("median_s", "min_s", "max_s", "iqr_s", "mean_s", "n_samples")
                },
                "spread": spread(r),
                "us_per_image": st["median_s"] / r["n_images"] * 1e6,
                "images_per_s": r["n_images"] / st["median_s"] if st["median_s"] > 0 else np.nan,
                # per byte (10^6), so image sizes compare
                "mb_per_s": r["n_images"] * image_bytes(r["data"]) / st["median_s"] / 1e6
                if st["median_s"] > 0
                else np.nan,
                "resident_max": max(res) if res else np.nan,
                "evict_method": r.get("evict_method"),
                "cache_scope": r.get("cache_scope"),
                "library_sync": r.get("extra", {}).get("library_sync"),
                "startup_s": r.get("startup_s"),
                "cpu_user_s": median_of(r.get("cpu_user_s")),
                "cpu_sys_s": median_of(r.get("cpu_sys_s")),
                "threads": r["threads"],
                "repeats": r["repeats"],
                "warmup": r["warmup"],
                "verified": r["verified"],
                "node": r["node"],
                "config_hash": r["config_hash"],
                **provenance(r),
                "start": r["start"],
                "end": r["end"],
            }
        )
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    df["partial_warm"] = partial_warm(df)
    return df.sort_values(KEYS).reset_index(drop=True)


#: What a disk-use result must hold.
DISK_IN = ("data", "format", "mode", "n_images", "kib_allocated", "apparent_bytes", "files",
           *PROVENANCE)  # fmt: skip


def disk_table(results: list[dict]) -> pd.DataFrame:
    """Disk use per store, with bytes per image against the raw 3,072 bytes."""
    df = pd.DataFrame(results, columns=sorted({k for r in results for k in r} | set(DISK_IN)))
    df["data"] = df["data"].fillna("cifar32")
    df["bytes_per_image"] = df["apparent_bytes"] / df["n_images"].astype(float)
    df["kib_per_image"] = df["kib_allocated"] / df["n_images"]
    # per byte, so sizes compare: allocated bytes over the raw pixels they hold
    df["image_bytes"] = df["data"].map(image_bytes)
    df["disk_per_raw"] = df["kib_allocated"] * 1024 / (df["n_images"] * df["image_bytes"])
    stat = df["lmdb_stat"] if "lmdb_stat" in df else pd.Series([None] * len(df))
    df["lmdb_overflow_pages"] = [
        s.get("overflow_pages") if isinstance(s, dict) else None for s in stat
    ]
    df["lmdb_page_size"] = [s.get("psize") if isinstance(s, dict) else None for s in stat]
    cols = [
        "data",
        "format",
        "mode",
        "n_images",
        "kib_allocated",
        "apparent_bytes",
        "files",
        "bytes_per_image",
        "kib_per_image",
        "image_bytes",
        "disk_per_raw",
        "lmdb_overflow_pages",
        "lmdb_page_size",
        *PROVENANCE,
    ]
    return df[cols].sort_values(["data", "format", "mode", "n_images"]).reset_index(drop=True)


def article_row(summary: pd.DataFrame, fmt: str, op: str, cache: str, n: int) -> pd.Series | None:
    """The article-mode row of one measurement of the article's data, or None when this run
    lacks it."""
    return one(summary, format=fmt, mode="article", operation=op, cache=cache, n_images=n)


def article_table(summary: pd.DataFrame, disk: pd.DataFrame) -> pd.DataFrame:
    """Our article-mode medians next to the article's published numbers, per cutoff.

    Writes are timed as the article timed them: until the call returned (no flush).
    """
    rows = []
    ops = (("write_many", "write_many_returned", "none"), ("read_many", "read_many", "warm"))
    for fmt, published in article.STORE_MANY_S.items():
        for i, n in enumerate(article.CUTOFFS):
            row: dict = {"format": fmt, "n_images": n}
            found = False
            for name, op, cache in ops:
                pub = published if name == "write_many" else article.READ_MANY_S[fmt]
                sel = article_row(summary, fmt, op, cache, n)
                found |= sel is not None
                ours = float(sel["median_s"]) if sel is not None else np.nan
                row[f"{name}_s_ours"] = ours
                row[f"{name}_s_article"] = pub[i]
                row[f"{name}_ratio"] = ours / pub[i] if ours == ours else np.nan
            d = select(disk, format=fmt, mode="article", n_images=n)
            row["disk_kib_ours"] = int(d["kib_allocated"].iloc[0]) if len(d) else np.nan
            row["disk_kb_article"] = article.DISK_KB[fmt][i]
            if found or len(d):
                rows.append(row)
    return pd.DataFrame(rows)


def payload_table(summary: pd.DataFrame, disk: pd.DataFrame) -> pd.DataFrame:
    """Stored pixels vs stored encoded files, per format, at each encoded store's size: the
    pixel store of the same images (CIFAR 32 px; a folder's smallest size) beside it."""
    cols = ["data", "pixels_data", "format", "n_images", "cache", "pixels_read_s",
            "encoded_read_only_s", "encoded_read_decode_s", "encoded_read_pillow_s",
            "decode_vs_pixels", "pixels_store_s", "encoded_store_s", "pixels_disk_mb",
            "encoded_disk_mb", "decoder"]  # fmt: skip
    if not len(summary):
        return pd.DataFrame(columns=cols)
    enc = summary[summary["data"].map(is_encoded)]
    rows = []
    for (data, fmt, n), _ in enc.groupby(["data", "format", "n_images"]):
        pdata = main_pixels(summary["data"], source=data[: -len(ENCODED)])

        def med(d: str | None, op: str, cache: str = "none", fmt: str = fmt, n: int = n) -> float:
            r = one(summary, data=d, format=fmt, mode="tuned", operation=op, cache=cache,
                    n_images=n)  # fmt: skip
            return float(r["median_s"]) if r is not None else np.nan

        def mb(d: str | None, fmt: str = fmt, n: int = n) -> float:
            r = one(disk, data=d, format=fmt, mode="tuned", n_images=n)
            return float(r["kib_allocated"]) * 1024 / 1e6 if r is not None else np.nan

        for cache in ("warm", "cold"):
            dec = med(data, "read_many", cache)
            pix = med(pdata, "read_many", cache)
            rows.append(
                {
                    "data": data,
                    "pixels_data": pdata,
                    "format": fmt,
                    "n_images": n,
                    "cache": cache,
                    "pixels_read_s": pix,
                    "encoded_read_only_s": med(data, "read_many_read_only", cache),
                    "encoded_read_decode_s": dec,
                    "encoded_read_pillow_s": med(data, "read_many_pillow", cache),
                    "decode_vs_pixels": dec / pix if pix else np.nan,
                    "pixels_store_s": med(pdata, "write_many"),
                    "encoded_store_s": med(data, "write_many"),
                    "pixels_disk_mb": mb(pdata),
                    "encoded_disk_mb": mb(data),
                    "decoder": None,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def family(fmt: str) -> str:
    """The format's family (files, key-value, array, columnar, shards); "" if unregistered."""
    return FORMATS[fmt].family if fmt in FORMATS else ""


def per_family(ranked: pd.Series) -> list[str]:
    """The fastest format of each family, fastest first (ranked: format -> images/s)."""
    seen: dict[str, str] = {}
    for fmt in ranked.index:
        seen.setdefault(family(fmt), fmt)
    return [f"{fam}: {fmt}" for fam, fmt in seen.items()]


def add_family(df: pd.DataFrame) -> None:
    """A family column right after format (files, key-value, array, columnar, shards), so a
    reader can filter or group twelve formats by kind."""
    if "format" in df.columns and "family" not in df.columns:
        fam = df["format"].map(family)
        df.insert(df.columns.get_loc("format") + 1, "family", fam)
