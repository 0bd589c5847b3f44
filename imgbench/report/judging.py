"""How a claim is judged: the article's words as margins, this run's rows in one mode, and the
verdict arithmetic every rule shares.

Why apart from the rules: the lookups (:class:`Run`) and the tally are where a verdict could
go quiet, so they live in one place: rows are picked with :func:`imgbench.report.select.select`
(the article's data set, no partially resident warm rows), an absent measurement raises
:class:`Missing` ("not tested"), an absent column or table raises ReportError, a part that
could not be decided counts as undecided (never as met), and an unknown spread calls no
difference real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from imgbench.report.capped import effective
from imgbench.report.select import ReportError, partial_warm, select

# Margins: the article's words as numbers. tests/test_claims.py pins every value.
#: "Trivially fast" (one image): the article calls 1.2-8.2 ms trivially fast; 10 ms is the next
#: round bound and a tenth of the ~100 ms a person waiting notices.
TRIVIAL_S = 0.010
#: "Slight(ly)" (one image): the article calls its own 1.2x-2.8x edges slight, so below 3x.
SLIGHT_MAX = 3.0
#: "Drastically slower": an order of magnitude; the article's smallest such gap is 18x.
DRASTIC_MIN = 10.0
#: "A much smaller" write-read gap: an order of magnitude; the article's own is 17x (18 s vs 1 s).
GAP_MIN = 10.0
#: "Large performance benefits": softer than "drastically"; 5x is far beyond repeat spread and
#: the difference between machines.
LARGE_MIN = 5.0
#: Epochs in a training run: the article's intro loads the data "hundreds or thousands of
#: times"; 100 is its low end (its 6 h at 40 s per epoch implies ~540).
EPOCHS = 100
#: Disk sizes within 2 % are equal: du rounds to blocks and counts metadata, not format choices.
DISK_TIE = 0.02
#: "Only the requested item is read into memory": reading one image raises peak RSS by under 5 %
#: of the store (reading it all costs 100 %) ...
LAZY_FRACTION = 0.05
#: ... and by under 64 MiB, so a huge store cannot hide a big read; library buffers (HDF5's
#: 1 MiB chunk cache, LMDB's fault-around of a few pages) stay far below.
LAZY_MAX_BYTES = 64 * 2**20

#: Reader scaling counts as "divides the load time" when images/s grows by at least this
#: fraction of what the machine allows, min(readers, cores): 80 % leaves room for the
#: process start-up that every epoch pays and for a shared host.
SCALING_EFFICIENCY = 0.8

VERDICTS = ("holds", "fails", "mixed", "not tested")
FORMATS = ("png", "lmdb", "hdf5")
COLUMNS = ["id", "section", "claim", "kind", "test", "mode", "margin", "numbers", "verdict"]
NOISE = "difference within the rows' spread = none"
#: The tables write_tables always builds (possibly empty); their absence is a fault.
TABLES = ("access", "writers", "disk_all", "capped")

Outcome = tuple[str, str]  # (verdict, numbers)


class Missing(Exception):
    """A rule's input is absent; the claim is not tested and the message says what is missing."""


@dataclass(frozen=True)
class Time:
    """One measurement: median seconds and its repeat spread ((max - min) / median; NaN when
    unknown, and then no difference to it is called real)."""

    median: float
    spread: float


@dataclass(frozen=True)
class Capped:
    """One capped epoch picked for a claim: its time per image (for :func:`compare`),
    images/s and the reader options it was measured with."""

    time: Time
    images_per_s: float
    advice: str
    io_depth: int

    def __str__(self) -> str:
        rate = f"{self.images_per_s:,.0f} images/s"
        return f"{rate} ({self.advice} advice, {self.io_depth} in flight)"


class Run:
    """This run's tables in one mode, with lookups that raise Missing for an absent
    measurement and ReportError for an absent column or table."""

    def __init__(self, summary: pd.DataFrame, disk: pd.DataFrame, extras: dict, mode: str):
        self.summary, self.disk, self.extras, self.mode = summary, disk, extras, mode

    def table(self, key: str) -> pd.DataFrame:
        """One of the tables write_tables always passes (:data:`TABLES`)."""
        df = self.extras.get(key)
        if not isinstance(df, pd.DataFrame):
            raise ReportError(f'no table extras["{key}"] (write_tables always builds it)')
        return df

    def time(self, fmt: str, op: str, n: int) -> Time:
        """Median and spread of one measurement; reads warm, writes durable."""
        cache = "warm" if op.startswith("read") else "none"
        key = {"format": fmt, "mode": self.mode, "operation": op, "cache": cache, "n_images": n}
        sel = select(self.summary, **key)
        if not len(sel):
            partial = select(self.summary, partial=True, **key)
            why = " (its warm rows were not fully resident)" if partial_warm(partial).any() else ""
            raise Missing(f"{fmt} {self.mode} {op} {cache} N={n}{why}")
        if len(sel) > 1:
            raise ReportError(f"{len(sel)} rows match {key}: the lookup misses a dimension")
        return Time(float(sel["median_s"].iloc[0]), float(sel["spread"].iloc[0]))

    def cutoffs(self, *ops: str) -> list[int]:
        """Every cutoff any of the three formats has for ops, sorted."""
        ns = {int(n) for op in ops for f in FORMATS for n in self._n(self.summary, f, op)}
        if not ns:
            raise Missing(f"{self.mode} {'/'.join(ops)} rows")
        return sorted(ns)

    def _n(self, df: pd.DataFrame, fmt: str, op: str | None) -> pd.Series:
        eq = {"format": fmt, "mode": self.mode} | ({"operation": op} if op else {})
        return select(df, partial=True, **eq)["n_images"]  # a cutoff exists even if half-warm

    def disk_use(self) -> tuple[int, dict[str, tuple[float, float]]]:
        """(largest N, {format: (KiB allocated, apparent bytes)}) from the disk table."""
        ns = [int(n) for f in FORMATS for n in self._n(self.disk, f, None)]
        if not ns:
            raise Missing(f"{self.mode} disk rows")
        sizes = {}
        for f in FORMATS:
            sel = select(self.disk, format=f, mode=self.mode, n_images=max(ns))
            if not len(sel):
                raise Missing(f"{f} {self.mode} disk N={max(ns)}")
            sizes[f] = (float(sel["kib_allocated"].iloc[0]), float(sel["apparent_bytes"].iloc[0]))
        return max(ns), sizes

    def capped(self, fmt: str, pattern: str, readers: int, mode: str | None = None) -> Capped:
        """The fastest measured capped epoch of *fmt* (capped.csv, this mode unless *mode*):
        best over readahead advice and reads in flight, the tuned options measured with and
        without. Missing when there is no row, or no row with a number (its reasons named)."""
        mode = mode or self.mode
        key = {"format": fmt, "mode": mode, "pattern": pattern, "readers": readers}
        sel = select(self.table("capped"), cache="capped", reader_kind="process", **key)
        what = f"{fmt} {mode} capped {pattern} epoch, {readers} reader(s)"
        if not len(sel):
            raise Missing(what)
        rate = sel["images_per_s"].astype(float)
        ok = sel["not_measured"].isna() & (rate > 0) & sel.index.isin(effective(sel).index)
        if not ok.any():
            why = "; ".join(sorted(set(sel["not_measured"].dropna().astype(str)))) or "no images/s"
            raise Missing(f"{what} (not measured: {why})")
        best = sel[ok].loc[rate[ok].idxmax()]
        r = float(best["images_per_s"])
        # 1/rate as the time: compare()'s margin (relative to the faster) is the same for rates
        t = Time(1.0 / r, float(best["spread"]))
        return Capped(t, r, str(best["advice"]), int(best["io_depth"]))

    def extra(self, key: str) -> dict:
        """One of the claim runs' results (optional measurements), or Missing naming it."""
        value = self.extras.get(key)
        if not value:
            raise Missing(f'extras["{key}"]')
        return value


def compare(a: Time, b: Time) -> int | None:
    """-1 if a is faster than b, +1 if slower, 0 if the difference is within either's spread;
    None when a spread is unknown (no difference is then called real)."""
    if np.isnan(a.spread) or np.isnan(b.spread):
        return None
    lo, hi = sorted((a.median, b.median))
    if hi - lo <= max(a.spread, b.spread) * lo:
        return 0
    return -1 if a.median < b.median else 1


def faster(a: Time, b: Time) -> bool | None:
    """a faster than b beyond the spread; None when a spread is unknown."""
    c = compare(a, b)
    return None if c is None else c < 0


def ratio(a: float, b: float) -> float:
    """a / b, infinite when b is zero (a zero median must not crash the table)."""
    return a / b if b else float("inf")


def tally(checks: dict[str, bool | None], numbers: str) -> Outcome:
    """All checks met: holds; none: fails; some: mixed, naming the unmet ones. A check that
    could not be decided (None: a part not measured, a spread unknown) is never met: with
    every decided check met the claim is "not tested", naming the undecided ones."""
    decided = {k: v for k, v in checks.items() if v is not None}
    undecided = [k for k, v in checks.items() if v is None]
    unmet = [k for k, ok in decided.items() if not ok]
    note = "; not decided: " + ", ".join(undecided) if undecided else ""
    if unmet and len(unmet) == len(decided):
        return "fails", numbers + note
    if unmet:
        return "mixed", numbers + "; not met: " + ", ".join(unmet) + note
    if undecided:
        return "not tested", numbers + note
    return "holds", numbers


def fmt_times(t: dict[str, Time], ms: bool = False) -> str:
    """Medians of each format, in s or ms, as the numbers column shows them."""
    scale, unit = (1e3, "ms") if ms else (1.0, "s")
    return ", ".join(f"{f.upper()} {v.median * scale:.3g} {unit}" for f, v in t.items())


def times(run: Run, op: str, n: int) -> dict[str, Time]:
    """The three formats' times of one measurement."""
    return {f: run.time(f, op, n) for f in FORMATS}


def larger(sizes: dict[str, tuple[float, float]], pairs: list[tuple[str, str]]) -> Outcome:
    """Each (big, small) pair: big exceeds small by DISK_TIE, in KiB allocated and in bytes."""
    checks: dict[str, bool | None] = {}
    for i, unit in enumerate(("KiB", "bytes")):
        for big, small in pairs:
            ok = sizes[big][i] > sizes[small][i] * (1 + DISK_TIE)
            checks[f"{big.upper()} > {small.upper()} ({unit})"] = ok
    numbers = "; ".join(
        f"{unit}: " + ", ".join(f"{f.upper()} {v[i]:,.0f}" for f, v in sizes.items())
        for i, unit in enumerate(("KiB allocated", "apparent bytes"))
    )
    return tally(checks, numbers)
