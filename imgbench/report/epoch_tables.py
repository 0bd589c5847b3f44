"""The tables of the loader runs: epochs, accelerator utilisation and parallel writers (epochs
beyond the page cache: :mod:`imgbench.report.capped`).

Why apart from :mod:`imgbench.report.tables`: these rows have dimensions of their own
(pattern, reader kind, readers, writers) and a scaling column against one reader or writer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgbench.report.load import PROVENANCE, provenance
from imgbench.report.select import partial_warm
from imgbench.report.tables import SPREAD_LIMIT, median_of, spread


def _over_one(df: pd.DataFrame, keys: list[str], count: str) -> np.ndarray:
    """images/s over the same setup's images/s with one reader or writer (*count* == 1);
    NaN where that setup has no such row."""
    one = df.loc[df[count] == 1, [*keys, "images_per_s"]].rename(columns={"images_per_s": "_1"})
    base = df[keys].merge(one, on=keys, how="left")["_1"].to_numpy(dtype=float)
    return df["images_per_s"].to_numpy(dtype=float) / base


#: access.csv's columns before the derived ones, so an empty table still has every one.
ACCESS_COLUMNS = ["data", "format", "mode", "pattern", "reader_kind", "readers", "cache",
                  "cache_scope", "epoch_images", "batch_size", "median_s", "min_s", "max_s",
                  "spread", "images_per_s", "mb_per_s", "cpu_user_s", "cpu_sys_s",
                  "batch_p50_ms", "batch_p99_ms",
                  "oversubscribed", "cores", "verified", "n_samples", "node", "config_hash",
                  *PROVENANCE]  # fmt: skip


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
                "spread": spread(r),
                "images_per_s": x["epoch_images"] / med if med else np.nan,
                "mb_per_s": x["epoch_bytes"] / med / 1e6 if med else np.nan,
                # the readers' CPU too: timing.measure counts the children it waited for
                "cpu_user_s": median_of(r.get("cpu_user_s")),
                "cpu_sys_s": median_of(r.get("cpu_sys_s")),
                "batch_p50_ms": x["batch_latency_p50_s"] * 1e3,
                "batch_p99_ms": x["batch_latency_p99_s"] * 1e3,
                "oversubscribed": x["readers"] > x["cores"],
                "cores": x["cores"],
                "verified": r["verified"],
                "n_samples": st["n_samples"],
                "node": r["node"],
                "config_hash": r["config_hash"],
                **provenance(r),
            }
        )
    cols = ["data", "format", "mode", "pattern", "reader_kind", "cache", "readers"]
    df = pd.DataFrame(rows, columns=ACCESS_COLUMNS)
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    df["partial_warm"] = partial_warm(df)
    df["scaling"] = _over_one(df, cols[:-1], "readers") if len(df) else []
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
                **provenance(r),
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


#: writers.csv's columns before the derived ones, so an empty table still has every one.
WRITERS_COLUMNS = ["data", "format", "mode", "n_images", "writers", "writers_used",
                   "parallel_writes", "median_s", "spread", "images_per_s", "cores",
                   "oversubscribed", "verified", "n_samples", "node", "config_hash",
                   *PROVENANCE]  # fmt: skip


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
                "spread": spread(r),
                "images_per_s": r["n_images"] / med if med else np.nan,
                "cores": x["cores"],
                "oversubscribed": x["writers"] > x["cores"],
                "verified": r["verified"],
                "n_samples": st["n_samples"],
                "node": r["node"],
                "config_hash": r["config_hash"],
                **provenance(r),
            }
        )
    cols = ["data", "format", "mode", "n_images", "writers"]
    df = pd.DataFrame(rows, columns=WRITERS_COLUMNS)
    df["speedup"] = _over_one(df, cols[:-1], "writers") if len(df) else []
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    return df.sort_values(cols).reset_index(drop=True)
