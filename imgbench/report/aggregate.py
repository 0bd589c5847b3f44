"""Turn the per-job JSON results into tidy pandas tables and a markdown summary."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from imgbench.core.atomic import atomic_path
from imgbench.core.names import Op
from imgbench.data.sizes import ENCODED, image_bytes, is_encoded, main_pixels, size_of
from imgbench.measure.stats import summarize
from imgbench.report import article
from imgbench.stores.base import PARALLEL_MIN_IMAGES

KEYS = ["data", "format", "mode", "operation", "cache", "n_images"]
#: Repeats whose (max - min) / median exceed this are flagged (MLPerf Storage: "within 5 %").
SPREAD_LIMIT = 0.05


def _load(paths: Iterable[Path]) -> list[dict]:
    """Load result JSONs; a write's call-returned times become their own measurement."""
    out = []
    for p in paths:
        r = json.loads(Path(p).read_text())
        r.setdefault("data", "cifar32")
        out.append(r)
        # Encoded reads time two more ways beside the row's (bytes + chosen decoder): the
        # bytes alone and bytes + Pillow; each becomes its own measurement.
        for name in ("read_only", "pillow"):
            other = r.get("extra", {}).get(name)
            if other and other.get("samples"):
                out.append(
                    {
                        **r,
                        "operation": f"{r['operation']}_{name}",
                        "samples": other["samples"],
                        "stats": summarize(other["samples"]),
                        "resident_fraction": other.get("resident_fraction", []),
                        "cpu_user_s": [],
                        "cpu_sys_s": [],
                    }
                )
        if r.get("returned_samples"):
            returned = {**r, "samples": r["returned_samples"], "returned_samples": []}
            returned["cpu_user_s"] = returned["cpu_sys_s"] = []  # measured until durable
            returned["operation"] = f"{r['operation']}_returned"
            returned["stats"] = summarize(r["returned_samples"])
            out.append(returned)
    return out


def _spread(r: dict) -> float:
    """(max - min) / median over the repeats. One-image jobs time many ids per repeat: their
    repeats are compared by each repeat's median (the ids' spread is not noise)."""
    samples = np.asarray(r["samples"], dtype=float)
    ids = r.get("extra", {}).get("ids") or []
    if len(ids) > 1 and len(samples) % len(ids) == 0:
        samples = np.median(samples.reshape(-1, len(ids)), axis=1)
    med = float(np.median(samples))
    return float((samples.max() - samples.min()) / med) if med else 0.0


def _median(values: list[float] | None) -> float:
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
        }
        for r in results
        for i, s in enumerate(r["samples"])
    ]
    return pd.DataFrame(rows, columns=[*KEYS, "sample", "seconds", "node", "config_hash"])


def summary_table(results: list[dict]) -> pd.DataFrame:
    """One row per measurement: median and spread, per-image cost, residency, provenance."""
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
                "spread": _spread(r),
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
                "cpu_user_s": _median(r.get("cpu_user_s")),
                "cpu_sys_s": _median(r.get("cpu_sys_s")),
                "threads": r["threads"],
                "repeats": r["repeats"],
                "warmup": r["warmup"],
                "verified": r["verified"],
                "node": r["node"],
                "config_hash": r["config_hash"],
                "start": r["start"],
                "end": r["end"],
            }
        )
    df = pd.DataFrame(rows)
    if len(df):
        df.insert(df.columns.get_loc("spread") + 1, "spread_flag", df["spread"] > SPREAD_LIMIT)
    return df.sort_values(KEYS).reset_index(drop=True) if len(df) else df


def disk_table(results: list[dict]) -> pd.DataFrame:
    """Disk use per store, with bytes per image against the raw 3,072 bytes."""
    df = pd.DataFrame(results)
    if "data" not in df:
        df["data"] = "cifar32"
    df["bytes_per_image"] = df["apparent_bytes"] / df["n_images"]
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
    ]
    return df[cols].sort_values(["data", "format", "mode", "n_images"]).reset_index(drop=True)


def article_row(summary: pd.DataFrame, fmt: str, op: str, cache: str, n: int) -> pd.Series | None:
    """The article-mode row of one measurement, or None when this run lacks it."""
    need = ("format", "mode", "operation", "cache", "n_images", "median_s")
    if not all(c in summary.columns for c in need):
        return None
    sel = summary[
        (summary["format"] == fmt)
        & (summary["mode"] == "article")
        & (summary["operation"] == op)
        & (summary["cache"] == cache)
        & (summary["n_images"] == n)
    ]
    return sel.iloc[0] if len(sel) else None


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
            d = disk[
                (disk["format"] == fmt) & (disk["mode"] == "article") & (disk["n_images"] == n)
            ]
            row["disk_kib_ours"] = int(d["kib_allocated"].iloc[0]) if len(d) else np.nan
            row["disk_kb_article"] = article.DISK_KB[fmt][i]
            if found or len(d):
                rows.append(row)
    return pd.DataFrame(rows)


def _md(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A markdown table without extra dependencies."""

    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else floatfmt.format(v)
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def markdown_summary(summary: pd.DataFrame, disk: pd.DataFrame, art: pd.DataFrame) -> str:
    """The human-readable report: biggest cutoff first, spread shown, cold vs warm."""
    out = ["# Image storage benchmark: summary", ""]
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
            _md(pivot.reset_index()),
            "",
        ]
        reads = top[top["operation"] == "read_many"].pivot_table(
            index=["format", "mode"], columns="cache", values="median_s"
        )
        if {"warm", "cold"} <= set(reads.columns):
            reads["cold/warm"] = reads["cold"] / reads["warm"]
            out += ["## Cold-cache / warm-cache read time", "", _md(reads.reset_index()), ""]
    single = summary[summary["operation"].isin(["write_one", "read_one"])].copy()
    if len(single):
        single["median_ms"] = single["median_s"] * 1e3
        single["iqr_ms"] = single["iqr_s"] * 1e3
        out += [
            "## One image (ms, median and IQR over all samples)",
            "",
            _md(
                single[["format", "mode", "operation", "cache", "n_samples", "median_ms", "iqr_ms"]]
            ),
            "",
        ]
    if len(disk):
        out += ["## Disk use", "", _md(disk), ""]
    if len(art):
        out += [
            "## Article mode vs the article's published numbers",
            "",
            "Same code path as the article, this machine vs the author's 2019 machine.",
            "",
            _md(art),
            "",
        ]
    return "\n".join(out)


def _over_one(df: pd.DataFrame, keys: list[str], count: str) -> np.ndarray:
    """images/s over the same setup's images/s with one reader or writer (*count* == 1);
    NaN where that setup has no such row."""
    one = df.loc[df[count] == 1, [*keys, "images_per_s"]].rename(columns={"images_per_s": "_1"})
    base = df[keys].merge(one, on=keys, how="left")["_1"].to_numpy(dtype=float)
    return df["images_per_s"].to_numpy(dtype=float) / base


def access_table(results: list[dict]) -> pd.DataFrame:
    """One row per epoch measurement: throughput, batch latency, scaling with readers."""
    rows = []
    for r in results:
        st, x = r["stats"], r["extra"]
        med = st["median_s"]
        rows.append(
            {
                "data": r.get("data", "cifar32"),
                "format": r["format"],
                "mode": r["mode"],
                "pattern": x["pattern"],
                "reader_kind": x["reader_kind"],
                "readers": x["readers"],
                "cache": r["cache"],
                "cache_scope": r.get("cache_scope"),
                "epoch_images": x["epoch_images"],
                "batch_size": x["batch_size"],
                "median_s": med,
                "min_s": st["min_s"],
                "max_s": st["max_s"],
                "spread": _spread(r),
                "images_per_s": x["epoch_images"] / med if med else np.nan,
                "mb_per_s": x["epoch_bytes"] / med / 1e6 if med else np.nan,
                "batch_p50_ms": x["batch_latency_p50_s"] * 1e3,
                "batch_p99_ms": x["batch_latency_p99_s"] * 1e3,
                "oversubscribed": x["readers"] > x["cores"],
                "cores": x["cores"],
                "verified": r["verified"],
                "n_samples": st["n_samples"],
                "node": r["node"],
                "config_hash": r["config_hash"],
            }
        )
    cols = ["data", "format", "mode", "pattern", "reader_kind", "cache", "readers"]
    df = pd.DataFrame(rows)
    if not len(df):
        return pd.DataFrame(columns=[*cols, "images_per_s", "scaling"])
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    df["scaling"] = _over_one(df, cols[:-1], "readers")
    return df.sort_values(cols).reset_index(drop=True)


#: MLPerf Storage's minimum accelerator utilisation for image workloads (ResNet-50).
AU_TARGET = 0.90


def au_table(results: list[dict], access: pd.DataFrame) -> pd.DataFrame:
    """Accelerator utilisation per setup, and how many accelerators this machine's loader
    could keep at AU >= 90 %: N = floor(T * c / (0.9 * B)), with T the loader's images/s in
    the matching shuffled epoch (no compute), c the compute seconds per batch, B the batch."""
    rows = []
    for r in results:
        x = r["extra"]
        au = np.asarray(x["au"], dtype=float)
        rows.append(
            {
                "data": r.get("data", "cifar32"),
                "format": r["format"],
                "mode": r["mode"],
                "reader_kind": x["reader_kind"],
                "readers": x["readers"],
                "cache": r["cache"],
                "cache_scope": r.get("cache_scope"),
                "computation_time": x["computation_time"],
                "batch_size": x["batch_size"],
                "batches": x["batches"],
                "prefetch": x["prefetch"],
                "au": float(np.median(au)),
                "au_min": float(au.min()),
                "au_max": float(au.max()),
                "stall_s": float(np.median(x["stall_s"])),
                "verified": r["verified"],
                "oversubscribed": x["readers"] > x["cores"],
                "node": r["node"],
                "config_hash": r["config_hash"],
            }
        )
    df = pd.DataFrame(rows)
    if not len(df):
        return pd.DataFrame(columns=["format", "mode", "au", "accelerators_at_90"])
    keys = ["data", "format", "mode", "reader_kind", "readers", "cache"]
    shuffled = access[access["pattern"] == "shuffled"] if len(access) else access
    speed = shuffled.set_index(keys)["images_per_s"].to_dict() if len(shuffled) else {}
    t = pd.Series([speed.get(tuple(k)) for k in df[keys].itertuples(index=False)], dtype=float)
    df["loader_images_per_s"] = t.to_numpy()
    df["accelerators_at_90"] = np.floor(
        df["loader_images_per_s"] * df["computation_time"] / (AU_TARGET * df["batch_size"])
    )
    return df.sort_values([*keys, "computation_time"]).reset_index(drop=True)


def _au_md(au: pd.DataFrame) -> list[str]:
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
        _md(au[cols]),
        "",
    ]


def which_format(summary: pd.DataFrame, disk: pd.DataFrame, access: pd.DataFrame) -> list[str]:
    """'Which format for which job', from this run's data: the fastest format per job, its
    margin over the next, and its disk cost (tuned mode: each format at its best)."""
    jobs: list[tuple[str, pd.Series]] = []
    tuned = summary[summary["mode"] == "tuned"] if len(summary) else summary
    if len(access):
        acc = access[(access["mode"] == "tuned") & (access["cache"] == "warm")]
        for pattern in ("sequential", "shuffled", "random", "buffered"):
            sel = acc[acc["pattern"] == pattern]
            if len(sel):  # each format at its best reader count
                best = sel.groupby("format")["images_per_s"].max()
                what = "streamed through a shuffle buffer" if pattern == "buffered" else pattern
                jobs.append((f"{what} epochs (warm, images/s)", best))
    if len(tuned):
        nmax = int(tuned["n_images"].max())
        one = tuned[(tuned["operation"] == "read_one") & (tuned["cache"] == "warm")]
        if len(one):
            jobs.append(("one image (warm, images/s)", 1 / one.set_index("format")["median_s"]))
        w = tuned[(tuned["operation"] == "write_many") & (tuned["n_images"] == nmax)]
        if len(w):
            jobs.append(
                (
                    f"write once, N = {nmax:,} (durable, images/s)",
                    nmax / w.set_index("format")["median_s"],
                )
            )
    if not jobs:
        return []
    kib = {}
    if len(disk):
        d = disk[(disk["mode"] == "tuned") & (disk["n_images"] == disk["n_images"].max())]
        kib = d.set_index("format")["kib_per_image"].to_dict()
    rows = []
    for job, speed in jobs:
        ranked = speed.sort_values(ascending=False)
        first = ranked.index[0]
        margin = ranked.iloc[0] / ranked.iloc[1] if len(ranked) > 1 else np.nan
        rows.append(
            {
                "job": job,
                "fastest": first,
                "family": _family(first),
                "images/s": ranked.iloc[0],
                "next": ranked.index[1] if len(ranked) > 1 else "",
                "fastest per family": ", ".join(_per_family(ranked)),
                "margin": margin,
                "disk KiB/image": kib.get(first, np.nan),
            }
        )
    return [
        "## Which format for which job",
        "",
        "Tuned mode, each format at its best setting; generated from this run.",
        "",
        _md(pd.DataFrame(rows)),
        "",
    ]


def _extras(results: list[dict], claim_runs: list[Path]) -> dict:
    """What the claims and reproduction tables need beyond summary and disk."""
    extras: dict = {
        "single_disk": {
            (r["format"], r["mode"]): r["extra"]["single_store_disk"]
            for r in results
            if r["operation"] == "write_one" and "single_store_disk" in r.get("extra", {})
        }
    }
    for p in claim_runs:
        extras[Path(p).stem] = json.loads(Path(p).read_text())
    return extras


def _access_md(access: pd.DataFrame) -> list[str]:
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
        _md(access[cols]),
        "",
    ]


def writers_table(results: list[dict]) -> pd.DataFrame:
    """One row per (format, writers) build of the largest store: images/s and the speed-up
    over one writer, next to the cores it ran on (more writers than cores is labelled)."""
    rows = []
    for r in results:
        st, x = r["stats"], r["extra"]
        med = st["median_s"]
        rows.append(
            {
                "data": r.get("data", "cifar32"),
                "format": r["format"],
                "mode": r["mode"],
                "n_images": r["n_images"],
                "writers": x["writers"],
                "writers_used": x["writers_used"],
                "parallel_writes": x.get("parallel_writes", ""),
                "median_s": med,
                "spread": _spread(r),
                "images_per_s": r["n_images"] / med if med else np.nan,
                "cores": x["cores"],
                "oversubscribed": x["writers"] > x["cores"],
                "verified": r["verified"],
                "n_samples": st["n_samples"],
                "node": r["node"],
                "config_hash": r["config_hash"],
            }
        )
    cols = ["data", "format", "mode", "n_images", "writers"]
    df = pd.DataFrame(rows)
    if not len(df):
        return pd.DataFrame(columns=[*cols, "images_per_s", "speedup"])
    df["speedup"] = _over_one(df, cols[:-1], "writers")
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    return df.sort_values(cols).reset_index(drop=True)


def _writers_md(writers: pd.DataFrame) -> list[str]:
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
        _md(writers[cols]),
        "",
    ]


def capped_table(results: list[dict]) -> pd.DataFrame:
    """One row per epoch of the capped runs: images/s, and how much of the store the capped
    page cache held when the epoch started (mincore; epoch 1 starts evicted)."""
    rows = []
    for r in results:
        x = r["extra"]
        for k, (sec, resident) in enumerate(zip(r["samples"], r["resident_fraction"], strict=True)):
            rows.append(
                {
                    "data": r.get("data", "cifar32"),
                    "format": r["format"],
                    "mode": r["mode"],
                    "pattern": x["pattern"],
                    "reader_kind": x["reader_kind"],
                    "readers": x["readers"],
                    "epoch": k + 1,
                    "seconds": sec,
                    "images_per_s": x["epoch_images"] / sec if sec else np.nan,
                    "resident_at_start": resident,
                    "cap_mib": x["page_cache_cap_bytes"] / 2**20,
                    "limit_mib": x["limit"] / 2**20,
                    "group_cache_mib_after": x["epoch_cache_bytes"][k] / 2**20,
                    "verified": r["verified"],
                    "node": r["node"],
                    "config_hash": r["config_hash"],
                }
            )
    cols = ["data", "format", "mode", "pattern", "reader_kind", "readers", "epoch"]
    df = pd.DataFrame(rows)
    return df.sort_values(cols).reset_index(drop=True) if len(df) else pd.DataFrame(columns=cols)


def _capped_md(capped: pd.DataFrame) -> list[str]:
    if not len(capped):
        return []
    cols = ["format", "mode", "pattern", "readers", "epoch", "images_per_s", "resident_at_start"]
    return [
        "## Epochs beyond the page cache (capped.csv)",
        "",
        "Consecutive epochs, the first from an evicted store, with the page cache the readers "
        "may fill capped below the store's size (a memory cgroup: cap + the readers' own "
        "measured memory); resident_at_start = the store's fraction in the page cache when "
        "the epoch began.",
        "",
        _md(capped[cols]),
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
        n = int(g[g["operation"] == "write_many"]["n_images"].max())
        at = g[g["n_images"] == n]

        def mbs(op: str, cache: str, at: pd.DataFrame = at) -> float:
            sel = at[(at["operation"] == op) & (at["cache"] == cache)]
            return float(sel["mb_per_s"].iloc[0]) if len(sel) else np.nan

        d = disk[(disk["data"] == data) & (disk["format"] == fmt) & (disk["mode"] == mode)]
        d = d[d["n_images"] == n]
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
    table = pd.DataFrame(rows).sort_values(["format", "mode", "px"])
    return [
        "## Image sizes (per byte)",
        "",
        "Each size's largest store holds the same raw bytes (cutoffs scaled by 32^2/size^2); "
        "MB/s = raw pixel bytes (10^6) per second; disk / raw = allocated bytes over the raw "
        "pixels. Upsampled CIFAR is smoother than photographs: PNG compresses it better.",
        "",
        _md(table),
        "",
    ]


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
    for (data, fmt, n), g in enc.groupby(["data", "format", "n_images"]):
        pdata = main_pixels(summary["data"], source=data[: -len(ENCODED)])
        px = summary[
            (summary["data"] == pdata) & (summary["format"] == fmt)
            & (summary["mode"] == "tuned") & (summary["n_images"] == n)
        ]  # fmt: skip

        def med(df: pd.DataFrame, op: str, cache: str = "none") -> float:
            sel = df[(df["operation"] == op) & (df["cache"] == cache)]
            return float(sel["median_s"].iloc[0]) if len(sel) else np.nan

        def mb(d: str | None, fmt: str = fmt, n: int = n) -> float:
            sel = disk[(disk["data"] == d) & (disk["format"] == fmt) & (disk["mode"] == "tuned")]
            sel = sel[sel["n_images"] == n]
            return float(sel["kib_allocated"].iloc[0]) * 1024 / 1e6 if len(sel) else np.nan

        for cache in ("warm", "cold"):
            dec = med(g, "read_many", cache)
            pix = med(px, "read_many", cache)
            rows.append(
                {
                    "data": data,
                    "pixels_data": pdata,
                    "format": fmt,
                    "n_images": n,
                    "cache": cache,
                    "pixels_read_s": pix,
                    "encoded_read_only_s": med(g, "read_many_read_only", cache),
                    "encoded_read_decode_s": dec,
                    "encoded_read_pillow_s": med(g, "read_many_pillow", cache),
                    "decode_vs_pixels": dec / pix if pix else np.nan,
                    "pixels_store_s": med(px, "write_many"),
                    "encoded_store_s": med(g, "write_many"),
                    "pixels_disk_mb": mb(pdata),
                    "encoded_disk_mb": mb(data),
                    "decoder": None,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def _payload_md(payload: pd.DataFrame, decoder: str) -> list[str]:
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
        _md(show),
        "",
    ]


def _spread_note(summary: pd.DataFrame) -> list[str]:
    flagged = summary[summary["spread_flag"]] if len(summary) else summary
    return [
        "## Repeats that disagree",
        "",
        f"{len(flagged)} of {len(summary)} measurements have repeats spreading more than "
        f"{SPREAD_LIMIT:.0%} ((max - min) / median; MLPerf Storage's rule); they are flagged "
        "in summary.csv (`spread_flag`). Read their medians with that spread in mind.",
        "",
    ]


def _family(fmt: str) -> str:
    from imgbench.stores import FORMATS

    return FORMATS[fmt].family if fmt in FORMATS else ""


def _per_family(ranked: pd.Series) -> list[str]:
    """The fastest format of each family, fastest first (ranked: format -> images/s)."""
    seen: dict[str, str] = {}
    for fmt in ranked.index:
        seen.setdefault(_family(fmt), fmt)
    return [f"{fam}: {fmt}" for fam, fmt in seen.items()]


def _add_family(df: pd.DataFrame) -> None:
    """A family column right after format (files, key-value, array, columnar, shards), so a
    reader can filter or group twelve formats by kind."""
    if "format" in df.columns and "family" not in df.columns:
        fam = df["format"].map(_family)
        df.insert(df.columns.get_loc("format") + 1, "family", fam)


def write_tables(
    timings: list[Path],
    du: list[Path],
    claim_runs: list[Path],
    epochs: list[Path],
    training: list[Path],
    writer_builds: list[Path] = (),
    capped_runs: list[Path] = (),
    **outputs: Path,
) -> None:
    """The tables rule: samples, summary, disk, article comparison, reproduction and claims
    (CSV), and the markdown summary."""
    from imgbench.report.claims import claims_markdown, claims_table
    from imgbench.report.reproduction import reproduction_markdown, reproduction_table

    results = _load(timings)
    summary = summary_table(results)
    dsk = disk_table(_load(du))
    payload = payload_table(summary, dsk)
    decoders = {r.get("extra", {}).get("decoder") for r in results} - {None}
    payload["decoder"] = ",".join(sorted(decoders)) or None
    summary_all = summary  # summary.csv keeps every row, encoded ones too
    if len(summary):  # encoded rows have their own table; the rest compares pixels
        summary = summary[~summary["data"].map(is_encoded)].reset_index(drop=True)
    art = article_table(summary, dsk)
    extras = _extras(results, claim_runs)
    access = access_table([json.loads(Path(p).read_text()) for p in epochs])
    extras["access"] = access
    extras["disk_all"] = dsk  # every image size (the size claims compare them)
    au = au_table([json.loads(Path(p).read_text()) for p in training], access)
    extras["writers"] = writers_table(
        [r for r in _load(writer_builds) if r["operation"] == Op.WRITE_MANY]
    )
    claims = claims_table(summary, dsk, extras)
    repro = reproduction_table(summary, dsk, extras)
    frames = {
        "samples": samples_table(results),
        "summary": summary_all,
        "disk": dsk,
        "article": art,
        "claims": claims,
        "reproduction": repro,
        "access": access,
        "au": au,
        "writers": extras["writers"],
        "capped": capped_table(_load(capped_runs)),
        "payload": payload,
    }
    for name, df in frames.items():
        _add_family(df)
        with atomic_path(outputs[name]) as tmp:
            df.to_csv(tmp, index=False)
    text = "\n".join(
        [
            markdown_summary(summary, dsk, art),
            *which_format(summary, dsk, access),
            *_access_md(access),
            *_au_md(au),
            *_writers_md(extras["writers"]),
            *_capped_md(frames["capped"]),
            *sizes_md(summary, dsk),
            *_payload_md(payload, ",".join(sorted(decoders))),
            *_spread_note(summary),
            reproduction_markdown(repro),
            "",
            claims_markdown(claims),
        ]
    )
    with atomic_path(outputs["markdown"]) as tmp:
        tmp.write_text(text)
