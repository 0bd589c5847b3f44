"""Why a winner won: a reason read from the winning row's own counters (CPU, device,
requests), and the number formats the answer's cells share.

Why a module of its own: the answer (:mod:`imgbench.report.answer`) ranks rows; what each
reason says comes from measured columns alone, and each reason is one function here, picked
by a job's ``reason`` key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

#: a share of the readers' wall time (or of the device's limit) that makes a row bound by it
BOUND = 0.7
LIMITS = {
    "random_4k_iops_qd32": "the device's random 4 KiB reads/s at queue depth 32",
    "seq_read_mb_s": "the device's sequential bandwidth",
}


def plain(x: float, digits: int = 4) -> str:
    """*x* to *digits* significant digits, thousands separated, no exponent: 117,100; 2.3."""
    if x is None or not math.isfinite(x):
        return ""
    if x == 0:
        return "0"
    places = digits - 1 - math.floor(math.log10(abs(x)))
    text = f"{round(x, places):,.{max(0, places)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """A time in the unit that keeps it readable: 2.3 s, 12.5 ms, 40 us."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if abs(seconds) >= scale:
            return f"{plain(seconds / scale, 3)} {unit}"
    return f"{plain(seconds * 1e6, 3)} us"


def ratio_text(r: float) -> str:
    """A ratio as 1.15x (two decimals below 10, else plain)."""
    return "" if not math.isfinite(r) else (f"{r:.2f}x" if r < 10 else f"{plain(r, 3)}x")


#: below this much CPU a row's user/kernel split says nothing: Linux measures the total
#: exactly but splits it by 10 ms tick samples (a 3 ms user-only loop read as 3 ms system)
SPLIT_MIN_S = 0.1


def cpu(row: pd.Series) -> str:
    """CPU-bound (user CPU near readers x wall time), kernel-bound (system CPU dominates), or
    waiting (neither: the device, a sync or a lock)."""
    user, sys_ = float(row.get("cpu_user_s", np.nan)), float(row.get("cpu_sys_s", np.nan))
    wall = float(row.get("median_s", np.nan))
    par = pd.to_numeric(row.get("readers", row.get("threads", 1)), errors="coerce")
    par = int(par) if math.isfinite(par) and par >= 1 else 1  # numpy ints from the tables
    if not all(math.isfinite(v) for v in (user, sys_, wall)) or wall <= 0:
        return "CPU time not measured for these rows"
    who = f"{par} {'reader' if 'readers' in row else 'thread'}{'s' * (par != 1)}"
    u, s = user / (par * wall), sys_ / (par * wall)
    if user + sys_ < SPLIT_MIN_S:  # the total is exact, its user/kernel split is not
        said = f"CPU {duration(user + sys_)} in {duration(wall)} x {who}, too little to split"
        label = "CPU-bound" if u + s >= BOUND else "waiting (device, sync or lock)"
        return f"{label}: CPU busy {plain((u + s) * 100, 2)} % ({said})"
    said = f"user {duration(user)}, system {duration(sys_)} in {duration(wall)} x {who}"
    if u >= BOUND and u >= s:
        return f"CPU-bound: user CPU {plain(u * 100, 2)} % of {who} x wall time ({said})"
    if s >= u and u + s >= BOUND:
        return f"kernel-bound: system CPU {plain(s * 100, 2)} % of {who} x wall time ({said})"
    return f"waiting (device, sync or lock): CPU busy {plain((u + s) * 100, 2)} % ({said})"


def device(row: pd.Series) -> str:
    """Device-bound when images/s (or pixel bytes/s, streamed) nears the matching device limit,
    or the bytes the device read (readahead included) near its sequential bandwidth."""
    limit = LIMITS.get(str(row.get("limit")), "the device's limit")
    shares = [(float(row.get("limit_fraction", np.nan)), limit),
              (float(row.get("bandwidth_fraction", np.nan)), "its sequential bandwidth in bytes "
               "the device read")]  # fmt: skip
    shares = [(f, what) for f, what in shares if math.isfinite(f)]
    ios = plain(float(row.get("device_ios_per_image", np.nan)), 3) or "?"
    nbytes = plain(float(row.get("device_bytes_per_image", np.nan)), 4) or "?"
    per = f"{ios} device reads and {nbytes} B per image"
    if not shares:
        return f"device limits not probed; {per}"
    frac, what = max(shares, key=lambda fw: fw[0])
    share = f"{plain(frac * 100, 2)} % of {what}"
    said = f"{'device-bound' if frac >= BOUND else 'below the device limit'}: {share}; {per}"
    return "; ".join(filter(None, [said, cores(row, "readers")]))


def cores(row: pd.Series, who: str) -> str:
    """How many of the job's cores a time-boxed or remote row's readers kept busy (their
    user + kernel CPU over the row's wall time); CPU-bound at BOUND of the cores they could
    use: one per reader process (Python's lock keeps a reader's own threads near one core),
    at most the job's."""
    busy, cores = float(row.get("cpu_cores", np.nan)), float(row.get("cores", np.nan))
    if not (math.isfinite(busy) and math.isfinite(cores) and cores > 0):
        return ""
    readers = pd.to_numeric(row.get("readers", 1), errors="coerce")
    usable = min(int(readers) if math.isfinite(readers) and readers >= 1 else 1, cores)
    user, sys_ = float(row.get("cpu_user_s", np.nan)), float(row.get("cpu_sys_s", np.nan))
    bound = "CPU-bound: " if busy / usable >= BOUND else ""
    split = (f"user {duration(user)}, system {duration(sys_)}" if user + sys_ >= SPLIT_MIN_S
             else f"CPU {duration(user + sys_)}, too little to split")  # fmt: skip
    return f"{bound}{who} kept {plain(busy, 2)} of {int(cores)} cores busy ({split})"


def _disk_reason(row: pd.Series) -> str:
    raw = float(row.get("image_bytes", np.nan))
    b = float(row["value"])
    if not math.isfinite(raw) or raw <= 0:
        return f"{plain(b)} B allocated per image"
    return f"{plain(b)} B allocated per {plain(raw)} B image ({plain(b / raw, 3)}x the pixels)"


def _payload_reason(row: pd.Series) -> str:
    pix = float(row.get("pixels_read_s", np.nan))
    n = float(row.get("n_images", np.nan))
    dvp = float(row.get("decode_vs_pixels", np.nan))
    if not math.isfinite(pix) or pix <= 0:
        return "its pixel store not measured"
    better = "pixels read faster" if dvp > 1 else "encoded reads faster"
    return (f"stored as pixels: {plain(n / pix)} images/s; encoded + decode takes "
            f"{ratio_text(dvp)} the pixels' time ({better})")  # fmt: skip


def _au_reason(row: pd.Series) -> str:
    t = plain(float(row.get("loader_images_per_s", np.nan))) or "?"
    c = plain(float(row.get("computation_time", np.nan)) * 1e3) or "?"
    b = plain(float(row.get("batch_size", np.nan))) or "?"
    return f"loader {t} images/s; {c} ms compute per batch of {b} images"


def _s3_reason(row: pd.Series) -> str:
    frac = float(row.get("limit_fraction", np.nan))
    rpi = plain(float(row.get("requests_per_image", np.nan)), 3) or "?"
    share = f"{plain(frac * 100, 2)} % of {row.get('limit')}" if math.isfinite(frac) else ""
    staged = "download counted in one epoch; " if row.get("access") == "staged" else ""
    said = f"{row.get('access')} access; {staged}{rpi} requests per image; {share}".rstrip("; ")
    who = "the local epoch's readers" if staged else "the client"  # download CPU not counted
    return "; ".join(filter(None, [said, cores(row, who)]))


REASONS: dict[str, Callable[[pd.Series], str]] = {
    "cpu": cpu,
    "device": device,
    "disk": _disk_reason,
    "payload": _payload_reason,
    "au": _au_reason,
    "s3": _s3_reason,
}
