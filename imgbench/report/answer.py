"""'Which format for which job': one row per job, its winner overall and per family, the
runner-up, the ratio, "tie" when the repeats cannot tell them apart, and a reason read from
what was measured.

Why one module: summary.md, the README's answer block (``python -m imgbench.report.answer``)
and the answer figure all render the same :data:`JOBS` from the same tables, so the README can
be regenerated from a published run's CSVs and a test can hold it to them. A job is one
:class:`Job` entry (its table, metric, direction and row filter): a new storage backend or
experiment adds its rows by adding entries, no code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imgbench.data.sizes import main_pixels
from imgbench.report import article
from imgbench.report.capped import effective
from imgbench.report.markdown import md_table
from imgbench.report.reasons import BOUND, REASONS, duration, plain, ratio_text  # noqa: F401
from imgbench.report.select import ANY, select
from imgbench.report.tables import family

#: the families, in the order the table lists their winners
FAMILIES = ("files", "key-value", "array", "columnar", "shards")
#: with fewer than this many samples a range says little: a tie is a ratio within TIE_WITHIN
MIN_SAMPLES = 3
TIE_WITHIN = 0.05
#: the README block's markers
START, END = "<!-- answer:start -->", "<!-- answer:end -->"
#: the tables the jobs read (results/tables/<name>.csv)
TABLES = ("summary", "disk", "access", "capped", "payload", "au", "s3")


@dataclass(frozen=True)
class Job:
    """One row of the answer: which rows of which table, and how to rank them."""

    name: str
    table: str
    metric: str  # a key of METRICS: how a row becomes value, lo, hi, samples
    higher: bool  # is a larger value better
    where: Mapping[str, object] = field(default_factory=dict)  # select()'s equalities
    largest: str | None = None  # keep only the rows at this column's largest value
    best_of: tuple[str, ...] = ()  # settings each format is taken at its best over
    reason: str = "cpu"  # a key of REASONS


TUNED = {"mode": "tuned"}
JOBS: list[Job] = [
    Job("write once (durable)", "summary", "rate", True,
        {**TUNED, "operation": "write_many", "cache": "none"}, largest="n_images"),
    Job("full read, warm", "summary", "rate", True,
        {**TUNED, "operation": "read_many", "cache": "warm"}, largest="n_images"),
    Job("full read, cold", "summary", "rate", True,
        {**TUNED, "operation": "read_many", "cache": "cold"}, largest="n_images"),
    Job("shuffled epochs, warm", "access", "epoch", True,
        {**TUNED, "pattern": "shuffled", "cache": "warm"}, best_of=("readers", "reader_kind")),
    Job("shuffled epochs, cold", "access", "epoch", True,
        {**TUNED, "pattern": "shuffled", "cache": "cold"}, best_of=("readers", "reader_kind")),
    Job("shuffled epochs, store 5x the page cache", "capped", "capped", True,
        {**TUNED, "pattern": "shuffled", "cache": "capped"},
        best_of=("readers", "reader_kind", "advice", "io_depth"), reason="device"),
    Job("one image: read (warm)", "summary", "one", False,
        {**TUNED, "operation": "read_one", "cache": "warm"}),
    Job("one image: store (durable)", "summary", "one", False,
        {**TUNED, "operation": "write_one", "cache": "none"}),
    Job("disk per image", "disk", "disk", False, TUNED, largest="n_images", reason="disk"),
    Job("your JPEG/PNG folder: stored encoded, read warm and decoded", "payload", "payload",
        True, {"cache": "warm"}, largest="n_images", reason="payload"),
    Job("accelerators fed at AU >= 90 % (warm)", "au", "au", True, {**TUNED, "cache": "warm"},
        largest="computation_time", best_of=("readers", "reader_kind"), reason="au"),
]  # fmt: skip


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A column as floats, NaN where the table lacks it (CSV from older runs)."""
    if name not in df.columns:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[name], errors="coerce")


def _metric(value: pd.Series, lo: pd.Series, hi: pd.Series, n: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"value": value, "lo": lo, "hi": hi, "samples": n})


def _per_image_rate(df: pd.DataFrame, count: str) -> pd.DataFrame:
    """images/s from median, min and max seconds (the slowest repeat is the range's low)."""
    n = _col(df, count)
    return _metric(n / _col(df, "median_s"), n / _col(df, "max_s"), n / _col(df, "min_s"),
                   _col(df, "n_samples"))  # fmt: skip


def _one_ms(df: pd.DataFrame) -> pd.DataFrame:
    """ms per image; the range from the spread of the repeats' medians (min_s and max_s span
    the image ids, which is not noise), centred on the median."""
    ms, half = _col(df, "median_s") * 1e3, _col(df, "spread") / 2
    return _metric(ms, ms * (1 - half), ms * (1 + half), _col(df, "repeats"))


def _disk(df: pd.DataFrame) -> pd.DataFrame:
    b = _col(df, "kib_allocated") * 1024 / _col(df, "n_images")
    return _metric(b, b, b, pd.Series(1.0, index=df.index))  # exact: the 5 % rule


def _payload(df: pd.DataFrame) -> pd.DataFrame:
    r = _col(df, "n_images") / _col(df, "encoded_read_decode_s")
    return _metric(r, r, r, pd.Series(1.0, index=df.index))


def _au(df: pd.DataFrame) -> pd.DataFrame:
    a = _col(df, "accelerators_at_90")
    return _metric(a, a, a, pd.Series(1.0, index=df.index))


def _capped(df: pd.DataFrame) -> pd.DataFrame:
    """images/s of the timed window; its range over the window's parts (how many parts the
    CSV does not say: a known range counts)."""
    df = effective(df[df["not_measured"].isna()] if "not_measured" in df.columns else df)
    lo, hi = _col(df, "images_per_s_min"), _col(df, "images_per_s_max")
    return _metric(_col(df, "images_per_s"), lo, hi, pd.Series(np.nan, index=df.index))


def _s3(df: pd.DataFrame) -> pd.DataFrame:
    """images/s of an S3 epoch (a staged one: one epoch counting its download)."""
    ips = _col(df, "images_per_s")
    staged = df["access"].eq("staged") if "access" in df.columns else False
    v = ips.where(~staged, _col(df, "images_per_s_with_stage"))
    scale = v / ips
    lo, hi = _col(df, "images_per_s_min") * scale, _col(df, "images_per_s_max") * scale
    return _metric(v, lo, hi, _col(df, "n_samples"))


#: metric -> (rows -> value, lo, hi, samples; unit)
METRICS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "rate": (lambda df: _per_image_rate(df, "n_images"), "images/s"),
    "epoch": (lambda df: _per_image_rate(df, "epoch_images"), "images/s"),
    "capped": (_capped, "images/s"),
    "one": (_one_ms, "ms"),
    "disk": (_disk, "B"),
    "payload": (_payload, "images/s"),
    "au": (_au, "accelerators"),
    "s3": (_s3, "images/s"),
}


def candidates(job: Job, tables: Mapping[str, pd.DataFrame], data: str | None) -> pd.DataFrame:
    """Each format's best row for *job* (data set *data*), with value, lo, hi and samples;
    empty when the table, a filter column or every row is missing."""
    df = tables.get(job.table)
    if df is None or not len(df) or "format" not in df.columns:
        return pd.DataFrame()
    where = dict(job.where)
    if "pixels_data" in df.columns:  # payload: every encoded data set of the pixels judged
        where |= {"data": ANY, **({"pixels_data": data} if data is not None else {})}
    elif data is not None and "data" in df.columns:
        where["data"] = data
    if any(k not in df.columns for k in where):
        return pd.DataFrame()
    sel = select(df, **where)
    if job.largest and len(sel):
        sel = sel[_col(sel, job.largest) == _col(sel, job.largest).max()]
    make, unit = METRICS[job.metric]
    m = make(sel)
    rows = pd.concat([sel.loc[m.index], m], axis=1).dropna(subset=["value"])
    if not len(rows):
        return pd.DataFrame()
    rows = rows.sort_values("value", ascending=not job.higher, kind="stable")
    best = rows.drop_duplicates("format").copy()
    best["family"] = best["format"].map(family)
    best["unit"] = unit
    return best.reset_index(drop=True)


def is_tie(a: pd.Series, b: pd.Series) -> bool:
    """Their repeats' min-max ranges overlap; with fewer than MIN_SAMPLES samples (or no
    range): their values within TIE_WITHIN."""
    n = [a["samples"], b["samples"]]
    ranged = all(math.isfinite(float(v)) for v in (a["lo"], a["hi"], b["lo"], b["hi"]))
    few = any(math.isfinite(float(x)) and x < MIN_SAMPLES for x in n)
    if ranged and not few and (a["lo"] < a["hi"] or b["lo"] < b["hi"]):
        return bool(a["lo"] <= b["hi"] and b["lo"] <= a["hi"])
    hi, lo = max(a["value"], b["value"]), min(a["value"], b["value"])
    return bool(hi <= lo * (1 + TIE_WITHIN)) if lo > 0 else bool(hi == lo)


def _settings(row: pd.Series, job: Job) -> str:
    parts = []
    for k in job.best_of:
        v = row.get(k)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        if k == "readers":
            parts.append(f"{int(v)} reader{'s' * (int(v) != 1)}")
        elif k == "computation_time":
            parts.append(f"{plain(float(v) * 1e3)} ms compute per batch")
        elif k != "reader_kind" or v != "process":
            parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(parts)


def _value(row: pd.Series) -> str:
    return f"{plain(float(row['value']))} {row['unit']}"


def _not_measured(job: Job, tables: Mapping[str, pd.DataFrame]) -> str:
    df = tables.get(job.table)
    if df is None or not len(df):
        return f"no {job.table}.csv rows in this run"
    if "not_measured" in df.columns and df["not_measured"].notna().all():
        return "; ".join(sorted(set(df["not_measured"].astype(str))))
    return f"no {job.table}.csv row matches ({', '.join(f'{k} {v}' for k, v in job.where.items())})"


def judge(job: Job, tables: Mapping[str, pd.DataFrame], data: str | None) -> dict[str, str]:
    """One job's row of the answer table (every cell text)."""
    best = candidates(job, tables, data)
    row = {"job": job.name, "winner": "not measured", "measured": "", "runner-up": "",
           "ratio": "", "per family": "", "reason": ""}  # fmt: skip
    if not len(best):
        return {**row, "reason": _not_measured(job, tables)}
    win = best.iloc[0]
    setting = _settings(win, job)
    reason = REASONS[job.reason](win)
    row |= {
        "winner": str(win["format"]),
        "measured": _value(win),
        "reason": f"{setting}; {reason}" if setting else reason,
        "per family": "; ".join(
            f"{fam or 'other'}: {g.iloc[0]['format']} {plain(float(g.iloc[0]['value']))}"
            for fam, g in sorted(best.groupby("family"), key=lambda kg: _fam_rank(kg[0]))
        ),
    }
    if len(best) > 1:
        run = best.iloc[1]
        r = win["value"] / run["value"] if job.higher else run["value"] / win["value"]
        text = ratio_text(float(r)) if run["value"] and win["value"] else ""
        row |= {
            "runner-up": f"{run['format']} {_value(run)}",
            "ratio": f"tie ({text})" if is_tie(win, run) else text,
        }
    return row


def _fam_rank(fam: str) -> int:
    return FAMILIES.index(fam) if fam in FAMILIES else len(FAMILIES)


def s3_jobs(tables: Mapping[str, pd.DataFrame]) -> list[Job]:
    """One row per round trip and bandwidth measured: shuffled epochs from object storage
    (claims stay about the local disk; tar's streamed epochs are in s3.csv, not judged here:
    a shuffle buffer is not a shuffle)."""
    df = tables.get("s3")
    if df is None or not len(df) or "latency_ms" not in df.columns:
        return []
    ep = df[(df["operation"] == "read_epoch") & (df["pattern"] == "shuffled")]
    nets = sorted(set(zip(ep["latency_ms"], ep["bandwidth_mbps"], strict=True)))
    return [
        Job(f"shuffled epochs from object storage, {plain(float(lat))} ms round trip, "
            f"{plain(float(bw)) + ' Mbit/s' if bw else 'unlimited bandwidth'}", "s3", "s3", True,
            {"operation": "read_epoch", "pattern": "shuffled", "latency_ms": float(lat),
             "bandwidth_mbps": float(bw)},
            best_of=("readers", "requests_in_flight"), reason="s3")
        for lat, bw in nets
    ]  # fmt: skip


def answer_table(
    tables: Mapping[str, pd.DataFrame], data: str | None, jobs: list[Job] | None = None
) -> pd.DataFrame:
    """Every job's row, in :data:`JOBS` order then the object-storage rows; jobs without
    rows say "not measured"."""
    return pd.DataFrame([judge(j, tables, data) for j in jobs or [*JOBS, *s3_jobs(tables)]])


def answer_bars(
    tables: Mapping[str, pd.DataFrame], data: str | None, jobs: list[Job] | None = None
) -> pd.DataFrame:
    """The figure's data: one row per job and format (its best setting), value and range."""
    parts = []
    for j in jobs or [*JOBS, *s3_jobs(tables)]:
        best = candidates(j, tables, data)
        if len(best):
            parts.append(best[["format", "family", "value", "lo", "hi", "unit"]]
                         .assign(job=j.name, higher=j.higher))  # fmt: skip
    cols = ["job", "format", "family", "value", "lo", "hi", "unit", "higher"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def main_data(tables: Mapping[str, pd.DataFrame]) -> str | None:
    """The one data set every row judges: CIFAR 32 px when present, else the smallest."""
    datas = [d for t in tables.values() if "data" in t.columns for d in t["data"].dropna()]
    return main_pixels(map(str, datas)) if datas else article.DATA


HOW = (
    "Tuned mode, each format at its best setting (reader count, advice, io depth), data set "
    "`{data}`; warm rows not fully resident left out. Ratio = winner over runner-up; **tie** "
    f"when their repeats' min-max ranges overlap (fewer than {MIN_SAMPLES} samples, or no "
    f"range: within {TIE_WITHIN * 100:g} %). Reasons, from the winner's own counters: "
    f"CPU-bound = user CPU >= {BOUND * 100:g} % of readers x wall time; kernel-bound = "
    f"system CPU as large and user + system >= {BOUND * 100:g} %; device-bound = images/s "
    f"(bytes/s when streamed) >= {BOUND * 100:g} % of the device's matching limit; waiting "
    "= none of these (the device, a sync or a lock). Time-boxed (5x the page cache) and "
    "object-storage rows add the cores their readers kept busy (user + kernel CPU over wall "
    f"time; CPU-bound at {BOUND * 100:g} % of the job's cores). One image: as the article, "
    "storing one image (durable) and reading one back (warm cache), each a row."
)


def answer_lines(tables: Mapping[str, pd.DataFrame], data: str | None) -> list[str]:
    """The table and its one-paragraph key, as summary.md and the README show them."""
    return [HOW.format(data=data), "", md_table(answer_table(tables, data)), ""]


def answer_md(tables: Mapping[str, pd.DataFrame], data: str | None) -> list[str]:
    """summary.md's section."""
    return ["## Which format for which job", "", *answer_lines(tables, data)]


def load_tables(tables_dir: Path) -> dict[str, pd.DataFrame]:
    """The CSVs the jobs read from *tables_dir* (absent ones left out: "not measured")."""
    out = {}
    for name in TABLES:
        p = Path(tables_dir) / f"{name}.csv"
        if p.exists() and p.stat().st_size:
            out[name] = pd.read_csv(p)
    return out


def run_line(tables_dir: Path, prov: Mapping, data: str | None, n: int | None) -> str:
    """Machine, date, commit and data of a published run, from its provenance record."""
    cpu, mem = prov.get("cpu") or {}, (prov.get("memory") or {}).get("total_bytes")
    fs = (prov.get("filesystem") or {}).get("fstype")
    git = prov.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    what = ", ".join(
        str(x)
        for x in (
            cpu.get("model"),
            f"{cpu.get('logical_cores')} cores" if cpu.get("logical_cores") else None,
            f"{round(mem / 2**30)} GiB" if mem else None,
            fs,
        )
        if x
    )
    images = f", {n:,} images" if n else ""
    date = str(prov.get("created") or "unknown date")[:10]
    return (f"Reference run `{Path(tables_dir).name}` ({what}), {date}, commit `{commit}`, "
            f"data `{data}`{images}.")  # fmt: skip


def readme_answer(tables_dir: Path, provenance: Path, s3_run: Path | None = None) -> str:
    """The README's answer block from a published run's CSVs and provenance.json, with the
    object-storage rows of a published S3 run (its own commit and RUN.md) when given."""
    tables = load_tables(Path(tables_dir))
    s3_line: list[str] = []
    if s3_run is not None:
        tables["s3"] = pd.read_csv(Path(s3_run) / "s3.csv")
        facts = json.loads((Path(s3_run) / "run.json").read_text())
        name = Path(s3_run).name
        s3_line = [
            f"Object-storage rows: S3 run `{name}`, commit `{str(facts['commit'])[:12]}` "
            f"([RUN.md](docs/results/s3/{name}/RUN.md)).",
            "",
        ]
    data = main_data(tables)
    s = tables.get("summary")
    n = None
    if s is not None and {"data", "n_images"} <= set(s.columns):
        sizes = s.loc[s["data"] == data, "n_images"]
        n = int(sizes.max()) if len(sizes) else None
    prov = json.loads(Path(provenance).read_text())
    head = [run_line(Path(tables_dir), prov, data, n), "", *s3_line]
    return "\n".join([*head, *answer_lines(tables, data)])
