"""Epochs from a store larger than the page cache (capped.csv): one row per measurement, read
against what the device can do.

Each row comes from one time-boxed capped epoch (imgbench.experiments.capped): images/s of the
timed window, how much of the epoch was read by its end, how much of the store the capped cache
held, and what the block device did in the window. Device limits come from the device probe
of the same run (results/device.json): a shuffled epoch needs at least one random read per
image, so its ceiling is the device's random 4 KiB reads/s at queue depth 32; a sequential or
streamed epoch's ceiling is the device's sequential bandwidth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from imgbench.core.names import Pattern
from imgbench.report.load import PROVENANCE, provenance
from imgbench.report.markdown import md_table
from imgbench.report.tables import SPREAD_LIMIT

KEYS = ["data", "format", "mode", "pattern", "reader_kind", "readers", "advice", "io_depth"]
COLUMNS = [
    *KEYS,
    "cache",
    "n_images",
    "page_cache_cap",
    "images_per_s",
    "images_per_s_min",
    "images_per_s_max",
    "spread",
    "spread_flag",
    "window_s",
    "epoch_fraction",
    "epoch_ended",
    "resident_start",
    "resident_peak",
    "device_ios_per_image",
    "device_bytes_per_image",
    "iops_fraction_qd1",
    "iops_fraction_qd32",
    "bandwidth_fraction",
    "limit",
    "limit_fraction",
    "cpu_user_s",
    "cpu_sys_s",
    "cpu_cores",
    "cores",
    "tuning",
    "effective",
    "cgroup_version",
    "not_measured",
    "verified",
    "node",
    "config_hash",
    *PROVENANCE,
]
#: the device limits of results/device.json each row is read against
IOPS_QD1, IOPS_QD32, SEQ_MB_S = "random_4k_iops_qd1", "random_4k_iops_qd32", "seq_read_mb_s"


def device_limits(path: Path | str | None) -> dict[str, float]:
    """The device probe's limits (empty where there is no probe record)."""
    if not path or not Path(path).exists():
        return {}
    rec = json.loads(Path(path).read_text())
    qd1 = rec.get(IOPS_QD1, rec.get("rand_read_4k_iops"))
    return {IOPS_QD1: qd1, IOPS_QD32: rec.get(IOPS_QD32), SEQ_MB_S: rec.get(SEQ_MB_S)}


def _fraction(value: float | None, limit: float | None) -> float:
    return value / limit if value is not None and limit else np.nan


def _row(r: dict, dev: dict[str, float]) -> dict:
    x = r["extra"]
    rate = x.get("images_per_s")
    secs = x.get("window_seconds") or np.nan
    rates = [r["n_images"] / s for s in r["samples"]]  # samples: epoch seconds at each part
    ios, nbytes = x.get("device_ios"), x.get("device_bytes")
    io_rate = ios / secs if ios is not None else None
    byte_rate = nbytes / secs / 1e6 if nbytes is not None else None
    streamed = x["pattern"] in (Pattern.SEQUENTIAL, Pattern.BUFFERED)
    pixel_mb_s = rate * x.get("image_bytes", 0) / 1e6 if rate else None
    return {
        "data": r["data"],
        "format": r["format"],
        "mode": r["mode"],
        "pattern": x["pattern"],
        "reader_kind": x["reader_kind"],
        "readers": x["readers"],
        "advice": x.get("advice", "default"),
        "io_depth": x.get("io_depth", 1),
        "cache": r["cache"],
        "n_images": r["n_images"],
        "page_cache_cap": x["page_cache_cap"],
        "images_per_s": rate if rate is not None else np.nan,
        "images_per_s_min": min(rates, default=np.nan),
        "images_per_s_max": max(rates, default=np.nan),
        "spread": (max(rates) - min(rates)) / np.median(rates) if len(rates) > 1 else np.nan,
        "window_s": x.get("window_seconds", np.nan),
        "epoch_fraction": x.get("epoch_fraction", np.nan),
        "epoch_ended": x.get("epoch_ended"),
        "resident_start": x.get("resident_start", np.nan),
        "resident_peak": x.get("resident_peak", np.nan),
        "device_ios_per_image": x.get("device_ios_per_image", np.nan),
        "device_bytes_per_image": x.get("device_bytes_per_image", np.nan),
        "iops_fraction_qd1": _fraction(io_rate, dev.get(IOPS_QD1)),
        "iops_fraction_qd32": _fraction(io_rate, dev.get(IOPS_QD32)),
        "bandwidth_fraction": _fraction(byte_rate, dev.get(SEQ_MB_S)),
        "limit": SEQ_MB_S if streamed else IOPS_QD32,
        "limit_fraction": (
            _fraction(pixel_mb_s, dev.get(SEQ_MB_S))
            if streamed
            else _fraction(rate, dev.get(IOPS_QD32))
        ),
        **cpu_columns(r, secs),
        # What the knobs did; a setup whose knob its reader cannot apply repeats the
        # default's measurement: kept, but not "effective" (the answer and claims skip it).
        "tuning": "; ".join(f"{k}: {v}" for k, v in (x.get("tuning") or {}).items() if v),
        "effective": not any(
            str(v).startswith("not applied") for v in (x.get("tuning") or {}).values()
        ),
        "cgroup_version": x.get("cgroup_version"),
        "not_measured": x.get("not_measured"),
        "verified": r["verified"],
        "node": r["node"],
        "config_hash": r["config_hash"],
        **provenance(r),
    }


def cpu_columns(r: dict, seconds: float | None) -> dict[str, float]:
    """A row's CPU: user and kernel seconds (the median sample), and the cores they kept
    busy over *seconds* of its wall time, beside the cores the job had."""
    x = r.get("extra", {})
    user = float(np.median(r["cpu_user_s"])) if r.get("cpu_user_s") else np.nan
    system = float(np.median(r["cpu_sys_s"])) if r.get("cpu_sys_s") else np.nan
    busy = (user + system) / seconds if seconds and seconds > 0 else np.nan
    return {"cpu_user_s": user, "cpu_sys_s": system, "cpu_cores": busy,
            "cores": x.get("cores", np.nan)}  # fmt: skip


def effective(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose knobs their reader applied (the others repeat the default's
    measurement): what the answer and the claims choose among."""
    if "effective" not in df.columns:
        return df
    return df[df["effective"].astype(str).str.lower().eq("true")]


def capped_table(results: list[dict], device: Path | str | None = None) -> pd.DataFrame:
    """One row per capped measurement (``cache`` = ``capped``), with the device's share."""
    dev = device_limits(device)
    df = pd.DataFrame([_row(r, dev) for r in results], columns=COLUMNS)
    df["spread_flag"] = df["spread"] > SPREAD_LIMIT
    return df.sort_values(KEYS).reset_index(drop=True)


def capped_md(capped: pd.DataFrame) -> list[str]:
    """The capped section of summary.md: the rows, and one line where nothing was measured."""
    if not len(capped):
        return []
    cap = capped["page_cache_cap"].iloc[0]
    lines = [f"## Epochs from a store {1 / cap:.3g}x the readers' page cache (capped.csv)", ""]
    unmeasured = capped[capped["not_measured"].notna()]
    if len(unmeasured) == len(capped):
        reasons = sorted(set(unmeasured["not_measured"]))
        return [*lines, f"Not measured: {'; '.join(reasons)}.", ""]
    cols = [
        "format",
        "mode",
        "pattern",
        "readers",
        "advice",
        "io_depth",
        "images_per_s",
        "epoch_fraction",
        "resident_peak",
        "device_ios_per_image",
        "device_bytes_per_image",
        "limit_fraction",
        "not_measured",
    ]
    return [
        *lines,
        f"The readers may fill at most {cap:g} of the store's bytes with page cache (a memory "
        "cgroup whose limit follows the cap plus the readers' own memory). From an evicted "
        "store: a warm-up window, then a timed window through the same permutation; "
        "images/s counts the completed, verified batches in it; effective = False where the "
        "format's reader cannot apply the row's advice or io depth (see tuning). device_* = "
        "the block "
        "device's own counters per image; limit_fraction = images/s over the device's "
        "random 4 KiB reads/s at queue depth 32 (shuffled) or pixel bytes/s over its "
        "sequential bandwidth (sequential).",
        "",
        md_table(capped[cols]),
        "",
    ]
