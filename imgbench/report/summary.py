"""summary.md's sections: the many- and one-image tables, "which format for which job", the
loader runs, image sizes, payloads, and the notes on spread, residency and code provenance.

Why apart from the table builders: these only present tables (every one through
:func:`imgbench.report.markdown.md_table`); whatever compares rows picks them with
:func:`imgbench.report.select.select`, on the run's main data set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgbench.data.sizes import is_encoded, size_of
from imgbench.report.answer import answer_md
from imgbench.report.epoch_tables import AU_TARGET
from imgbench.report.markdown import md_table
from imgbench.report.select import partial_warm, select
from imgbench.report.tables import SPREAD_LIMIT
from imgbench.stores.base import PARALLEL_MIN_IMAGES


def markdown_summary(
    summary: pd.DataFrame, disk: pd.DataFrame, art: pd.DataFrame, data: str | None = None
) -> str:
    """The human-readable report: biggest cutoff first, spread shown, cold vs warm; the timing
    tables show the main data set *data* (the image sizes have their own section)."""
    out = ["# Image storage benchmark: summary", ""]
    if data is not None and len(summary):
        summary = select(summary, data=data, partial=True)
        out += [f"Timings below: data set `{data}`; other data sets are in summary.csv.", ""]
    many = summary[summary["operation"].isin(["write_many", "read_many"])]
    if len(many):
        nmax = int(many["n_images"].max())
        top = many[many["n_images"] == nmax].copy()
        top["median [min-max] s"] = top.apply(
            lambda r: f"{r.median_s:.4g} [{r.min_s:.4g}-{r.max_s:.4g}]", axis=1
        )
        pivot = top.pivot_table(
            index=["format", "mode"],
            columns=["operation", "cache"],
            values="median [min-max] s",
            aggfunc="first",
        )
        pivot.columns = [f"{op} {c}" if c != "none" else op for op, c in pivot.columns]
        out += [
            f"## Many images: N = {nmax:,} (median [min-max] of the repeats)",
            "",
            md_table(pivot.reset_index()),
            "",
        ]
        reads = top[top["operation"] == "read_many"].pivot_table(
            index=["format", "mode"], columns="cache", values="median_s"
        )
        if {"warm", "cold"} <= set(reads.columns):
            reads["cold/warm"] = reads["cold"] / reads["warm"]
            out += ["## Cold-cache / warm-cache read time", "", md_table(reads.reset_index()), ""]
    single = summary[summary["operation"].isin(["write_one", "read_one"])].copy()
    if len(single):
        single["median_ms"] = single["median_s"] * 1e3
        single["iqr_ms"] = single["iqr_s"] * 1e3
        out += [
            "## One image (ms, median and IQR over all samples)",
            "",
            md_table(
                single[["format", "mode", "operation", "cache", "n_samples", "median_ms", "iqr_ms"]]
            ),
            "",
        ]
    if len(disk):
        out += ["## Disk use", "", md_table(disk), ""]
    if len(art):
        out += [
            "## Article mode vs the article's published numbers",
            "",
            "Same code path as the article, this machine vs the author's 2019 machine.",
            "",
            md_table(art),
            "",
        ]
    return "\n".join(out)


def which_format(
    summary: pd.DataFrame,
    disk: pd.DataFrame,
    access: pd.DataFrame,
    data: str | None,
    **more: pd.DataFrame,
) -> list[str]:
    """'Which format for which job' from this run's *data* set: the rows of
    :mod:`imgbench.report.answer` (which the README's answer block shares); *more* holds the
    other tables its jobs read (capped, payload, au)."""
    if data is None:
        return []
    return answer_md({"summary": summary, "disk": disk, "access": access, **more}, data)


def access_md(access: pd.DataFrame) -> list[str]:
    """The epochs section (access.csv)."""
    if not len(access):
        return []
    cols = [
        "format",
        "mode",
        "pattern",
        "reader_kind",
        "readers",
        "cache",
        "images_per_s",
        "mb_per_s",
        "batch_p50_ms",
        "batch_p99_ms",
        "scaling",
        "spread",
    ]
    return [
        "## Epochs (access.csv)",
        "",
        "One epoch over the largest store, every image verified; images/s from the median "
        "epoch; scaling = images/s over the same setup with 1 reader.",
        "",
        md_table(access[cols]),
        "",
    ]


def au_md(au: pd.DataFrame) -> list[str]:
    """The accelerator-utilisation section (au.csv)."""
    if not len(au) or "cache" not in au:
        return []
    cols = [
        "format",
        "mode",
        "readers",
        "cache",
        "computation_time",
        "au",
        "au_min",
        "stall_s",
        "loader_images_per_s",
        "accelerators_at_90",
    ]
    return [
        "## Accelerator utilisation (au.csv)",
        "",
        "One simulated accelerator computing `computation_time` s per batch (a real sleep) "
        "while the readers prefetch; AU = compute time / run time, the first batch's wait "
        f"excluded (MLPerf Storage). accelerators_at_90 = floor(T x c / ({AU_TARGET} x B)): "
        "T the loader's images/s in the matching shuffled epoch, c the compute time per "
        "batch, B the batch size.",
        "",
        md_table(au[cols]),
        "",
    ]


def writers_md(writers: pd.DataFrame) -> list[str]:
    """The parallel-writers section (writers.csv)."""
    if not len(writers):
        return []
    cols = ["format", "writers", "writers_used", "median_s", "images_per_s", "speedup"]
    return [
        "## Parallel writers (writers.csv)",
        "",
        "Tuned builds of the largest store with that many writer processes, durable on disk "
        "like every build, verified after timing; speedup = images/s over 1 writer; "
        f"writers_used = 1 below {PARALLEL_MIN_IMAGES:,} images (a pool costs more there).",
        "",
        md_table(writers[cols]),
        "",
    ]


def sizes_md(summary: pd.DataFrame, disk: pd.DataFrame) -> list[str]:
    """Image sizes side by side, per byte: each variant's largest store (the same raw bytes),
    write and read MB/s, disk over raw bytes, LMDB's overflow pages."""
    if len(summary):
        summary = summary[~summary["data"].map(is_encoded)]
    if not len(summary) or summary["data"].nunique() < 2:
        return []
    rows = []
    for (data, fmt, mode), g in summary.groupby(["data", "format", "mode"]):
        built = g[g["operation"] == "write_many"]["n_images"]
        if not len(built):  # no build timed for this size: nothing per byte to show
            continue
        n = int(built.max())
        at = g[g["n_images"] == n]

        def mbs(op: str, cache: str, at: pd.DataFrame = at, data: str = data) -> float:
            sel = select(at, data=data, operation=op, cache=cache)
            return float(sel["mb_per_s"].iloc[0]) if len(sel) else np.nan

        d = select(disk, data=data, format=fmt, mode=mode, n_images=n)
        rows.append(
            {
                "px": size_of(data),
                "format": fmt,
                "mode": mode,
                "images": n,
                "store MB/s": mbs("write_many", "none"),
                "warm read MB/s": mbs("read_many", "warm"),
                "cold read MB/s": mbs("read_many", "cold"),
                "disk / raw": float(d["disk_per_raw"].iloc[0]) if len(d) else np.nan,
                "KiB/image": float(d["kib_per_image"].iloc[0]) if len(d) else np.nan,
                "LMDB overflow pages": d["lmdb_overflow_pages"].iloc[0] if len(d) else None,
            }
        )
    if not rows:
        return []
    table = pd.DataFrame(rows).sort_values(["format", "mode", "px"])
    return [
        "## Image sizes (per byte)",
        "",
        "Each size's largest store holds the same raw bytes (cutoffs scaled by 32^2/size^2); "
        "MB/s = raw pixel bytes (10^6) per second; disk / raw = allocated bytes over the raw "
        "pixels. Upsampled CIFAR is smoother than photographs: PNG compresses it better.",
        "",
        md_table(table),
        "",
    ]


def payload_md(payload: pd.DataFrame, decoder: str) -> list[str]:
    """The pixels-vs-encoded section (payload.csv), each format's largest store."""
    if not len(payload):
        return []
    top = payload[payload["n_images"] == payload.groupby("format")["n_images"].transform("max")]
    show = top.rename(
        columns={
            "pixels_read_s": "pixels read s",
            "encoded_read_only_s": "encoded: bytes only s",
            "encoded_read_decode_s": f"encoded: + {decoder} s",
            "encoded_read_pillow_s": "encoded: + Pillow s",
            "decode_vs_pixels": "decode / pixels",
            "pixels_disk_mb": "pixels MB",
            "encoded_disk_mb": "encoded MB",
        }
    ).drop(columns=["decoder", "pixels_store_s", "encoded_store_s"])
    return [
        "## Stored pixels vs stored encoded files (payload: encoded)",
        "",
        "Each format's largest store, tuned mode, whole store read warm and cold. Encoded "
        f"reads decode with {decoder} (the row's time; PNG and WebP files go through Pillow) "
        "and, beside it, Pillow; bytes only = the files read, not decoded. Every read is "
        "verified: bytes round-trip, decoded pixels equal the decoder's output for the "
        "source file. decode / pixels > 1: storing pixels reads faster.",
        "",
        md_table(show),
        "",
    ]


def spread_note(summary: pd.DataFrame) -> list[str]:
    """How many measurements have repeats spreading beyond SPREAD_LIMIT."""
    flagged = summary[summary["spread_flag"]] if len(summary) else summary
    return [
        "## Repeats that disagree",
        "",
        f"{len(flagged)} of {len(summary)} measurements have repeats spreading more than "
        f"{SPREAD_LIMIT:.0%} ((max - min) / median; MLPerf Storage's rule); they are flagged "
        "in summary.csv (`spread_flag`). Read their medians with that spread in mind.",
        "",
    ]


def partial_note(*tables: pd.DataFrame) -> list[str]:
    """Warm rows whose store was not fully resident: labelled, and left out of every verdict."""
    n = sum(int(partial_warm(t).sum()) for t in tables if len(t))
    if not n:
        return []
    return [
        "## Warm reads not fully resident",
        "",
        f"{n} warm rows read a store the page cache did not fully hold (`cache_scope` "
        "partial, `partial_warm` in summary.csv and access.csv): a half-cold read. They decide "
        "no claim and no 'which format' row.",
        "",
    ]


def provenance_md(note: str | None) -> list[str]:
    """The code-provenance line (more than one commit, or a dirty tree), when there is one."""
    return [note, ""] if note else []
