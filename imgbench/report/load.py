"""Read the per-job result JSONs, refusing any that do not say which code measured them.

Why: a results folder can hold rows from several code versions (a rerun of some jobs after a
change); each row carries the ``commit`` and ``dirty`` flag its job recorded, and summary.md
says when they differ. A file from before those fields existed cannot be traced: it must be
measured again, not guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from imgbench.measure.stats import summarize
from imgbench.report.select import ReportError

#: The provenance columns every table row carries.
PROVENANCE = ("commit", "dirty")


def _rerun_hint(path: Path) -> str:
    """The folder to delete: ``results/<kind>`` when the path has one, else the file's own."""
    parts = path.parts
    if "results" in parts[:-1]:
        i = parts.index("results")
        return str(Path(*parts[: i + 2]))
    return str(path.parent)


def read_result(path: Path | str, timed: bool = True) -> dict:
    """One result JSON; a timed result without ``commit`` raises ReportError telling the user
    to rerun (untimed ones, like disk use, carry it when their job recorded it)."""
    path = Path(path)
    r = json.loads(path.read_text())
    if timed and "commit" not in r:
        raise ReportError(
            f"{path} has no 'commit' field (measured by code older than the provenance fields): "
            f"delete {_rerun_hint(path)} and rerun"
        )
    r.setdefault("data", "cifar32")
    return r


def read_results(paths: Iterable[Path | str], timed: bool = True) -> list[dict]:
    """Every result of *paths*, as :func:`read_result` reads them."""
    return [read_result(p, timed) for p in paths]


def provenance(r: dict) -> dict:
    """The provenance columns of one result's rows (None where an untimed job lacks them)."""
    return {k: r.get(k) for k in PROVENANCE}


def expand(results: Iterable[dict]) -> list[dict]:
    """Results with each extra timing as its own measurement: an encoded read's bytes alone and
    bytes + Pillow (``extra``), a write's call-returned times (``returned_samples``)."""
    out = []
    for r in results:
        out.append(r)
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


def load(paths: Iterable[Path | str], timed: bool = True) -> list[dict]:
    """Read and expand: what the table builders take."""
    return expand(read_results(paths, timed))


def provenance_note(frames: Iterable[pd.DataFrame]) -> str | None:
    """One line for summary.md when rows come from more than one commit (naming them) or from
    a tree with uncommitted changes; None when every row has one clean commit."""
    commits: set[str] = set()
    dirty = False
    for df in frames:
        if "commit" in df.columns:
            commits |= {str(c) for c in df["commit"].dropna()}
        if "dirty" in df.columns:
            dirty |= bool(df["dirty"].astype(str).eq("True").any())
    parts = []
    if len(commits) > 1:
        parts.append(
            f"rows come from {len(commits)} commits ({', '.join(sorted(commits))}): "
            "compare rows of different commits knowing the code differed"
        )
    if dirty:
        parts.append("some rows were measured from a tree with uncommitted changes (dirty)")
    return ("**Code provenance:** " + "; ".join(parts) + ".") if parts else None
