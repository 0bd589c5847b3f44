"""Publish a finished run into docs/results/<machine>/: its tables, summary, figures and
provenance, with a RUN.md saying how it was made.

Why a rule of its own (``snakemake publish``, not part of ``all``): a published run is what
the README's answer is generated from, so it must be one run of one committed, clean tree on
one named machine. Publishing refuses anything else in one line instead of copying numbers
that no commit can reproduce.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imgbench.core.atomic import atomic_path, remove
from imgbench.core.config import config_hash
from imgbench.core.errors import BenchError
from imgbench.pipeline.codehash import UNKNOWN

if TYPE_CHECKING:  # pandas is imported by the functions that use it (the DAG needs none)
    import pandas as pd

#: Words of a CPU model name that say nothing about the CPU (vendor marks, clock, core count).
_NOISE = re.compile(
    r"\((r|tm)\)|\b(intel|amd|genuine|authentic|cpu|processor|apu|with|graphics)\b|@.*$"
    r"|\b\d+-core\b",
    re.IGNORECASE,
)
#: The line of a job's log that says when it ran (written by :func:`imgbench.pipeline.snake.run`).
_WINDOW = re.compile(r"job window: (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)")
#: untimed summary jobs that later report code may rerun: their windows are not the run's
_REWRITTEN = {"tables", "figures", "provenance", "publish", "s3_report", "s3_publish"}
#: Where figures go inside a published run (tables, summary.md and provenance.json at its top).
FIGURES = "figures"


class PublishError(BenchError):
    """The run cannot be published as it is; the message says why and what to do."""


#: the rules that publish (dropped from the recorded command, with their option)
PUBLISH_TARGETS = ("publish", "s3_publish")
#: Snakemake options whose value may be the publish target itself (dropped with it).
_TARGET_OPTIONS = ("-R", "--forcerun", "-f", "--force", "-U", "--until", "--allowed-rules")


_TRIGGERS = {"mtime", "params", "input", "software-env", "code"}


def run_command(argv: Sequence[str], target: str | None = None) -> str:
    """The command that made the run, from the publish invocation's arguments without the
    publish target (*target* in its place, when the run had one: ``s3``): publish's inputs
    are the run's outputs under the same options (other options would change them and
    Snakemake would remake them before publishing)."""
    out: list[str] = []
    for a in argv[1:]:
        # where to publish, and what may trigger a rerun when publishing (publishing a
        # finished run from a later commit: --rerun-triggers mtime): not how the run was made
        if a.startswith("publish_dir=") or a == "--rerun-triggers" or a in _TRIGGERS:
            continue
        if a in PUBLISH_TARGETS or a.split("=")[-1] in PUBLISH_TARGETS:
            if out and out[-1] in _TARGET_OPTIONS:
                out.pop()
            elif target:
                out.append(target)
            continue
        out.append(a)
    empty = [i for i, a in enumerate(out) if a in ("--config", "-C")
             and (i + 1 == len(out) or out[i + 1].startswith("-"))]  # fmt: skip
    return shlex.join(["snakemake", *(a for i, a in enumerate(out) if i not in empty)])


def publication_title(publish_dir: str) -> str:
    """RUN.md's title: docs/results holds the reference run; docs/results/<name> the <name> run
    (docs/results/default: the default run, timed alone)."""
    name = Path(publish_dir).relative_to("docs/results").name
    return f"{name.capitalize()} run" if name else "Reference run"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_id(prov: Mapping) -> str:
    """A short id of the machine a run was made on, from its provenance record: CPU family,
    cores, memory rounded to GiB and the results' file system (e.g. ``xeon-2c-24g-ext4``)."""
    cpu = prov.get("cpu") or {}
    model = _slug(_NOISE.sub(" ", str(cpu.get("model") or "")))
    family = model.split("-")[0] if model else _slug(str((prov.get("os") or {}).get("machine")))
    cores = cpu.get("logical_cores") or cpu.get("affinity_cores")
    mem = (prov.get("memory") or {}).get("total_bytes")
    fs = _slug(str((prov.get("filesystem") or {}).get("fstype") or ""))
    missing = [
        k
        for k, v in (("cpu", family), ("cores", cores), ("memory", mem), ("file system", fs))
        if not v or v == "none"
    ]
    if missing:
        raise PublishError(
            f"provenance.json does not record the machine's {', '.join(missing)}: rerun the "
            "provenance rule on the machine that made the run (snakemake --forcerun provenance)"
        )
    return f"{family}-{int(cores)}c-{round(mem / 2**30)}g-{fs}"


def copy_list(tables: Iterable[Path], figures: Iterable[Path], provenance: Path) -> dict[str, Path]:
    """Name inside the published folder -> file to copy: the tables (CSV) and summary.md at
    the top (where :func:`imgbench.report.answer.load_tables` reads them), the figures under
    ``figures/``, provenance.json. Only CSV, markdown and the figures: no stores, no logs."""
    out: dict[str, Path] = {}
    for p in map(Path, tables):
        if p.suffix not in (".csv", ".md"):
            raise PublishError(f"{p}: a table must be .csv or .md (the tables rule's outputs)")
        out[p.name] = p
    for p in map(Path, figures):
        out[f"{FIGURES}/{p.name}"] = p
    out["provenance.json"] = Path(provenance)
    missing = [str(p) for p in out.values() if not p.is_file()]
    if missing:
        raise PublishError(f"not in the run: {', '.join(missing)}: finish the run first")
    return out


def _true(v: object) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0", "yes")


def run_commit(csvs: Iterable[Path], prov: Mapping) -> str:
    """The one commit every row of the run was measured at, with no tracked file changed;
    PublishError naming the commits or the dirty tables, or a provenance record made at
    another commit (the README's run line reads the commit from provenance.json)."""
    import pandas as pd  # here: workflow/rules/report.smk imports this module for a dry run

    commits: set[str] = set()
    dirty: list[str] = []
    for p in csvs:
        if not Path(p).stat().st_size:
            continue
        df = pd.read_csv(p, dtype=str)
        if "commit" in df.columns:
            commits |= set(df["commit"].dropna())
        if "dirty" in df.columns and df["dirty"].dropna().map(_true).any():
            dirty.append(Path(p).name)
    fix = "rerun from one clean commit (git status clean, then snakemake --forcerun all)"
    known = sorted(commits - {UNKNOWN})
    if not known or UNKNOWN in commits:
        raise PublishError(f"rows of the run do not record their commit: {fix}")
    if len(known) > 1:
        raise PublishError(f"rows come from {len(known)} commits ({', '.join(known)}): {fix}")
    if dirty:
        tables = ", ".join(dirty)
        raise PublishError(f"rows measured with uncommitted changes ({tables}): {fix}")
    commit = known[0]
    recorded = (prov.get("git") or {}).get("commit")
    # Tables, figures and provenance may be rewritten by later report code (their rules rerun
    # when it changes; the measuring jobs do not, unless their own code changed): provenance
    # then records a later commit, which must descend from the rows'.
    if recorded != commit and not _descends(recorded, commit):
        raise PublishError(
            f"provenance.json was recorded at commit {recorded}, which does not descend from "
            f"the rows' commit {commit}: run snakemake --forcerun provenance with {commit} or "
            "a later commit checked out"
        )
    return commit


def _descends(later: str | None, earlier: str) -> bool:
    """True if commit *earlier* is an ancestor of *later* in this checkout."""
    if not later:
        return False
    git = ["git", "-C", str(Path(__file__).resolve().parent), "merge-base", "--is-ancestor"]
    try:
        return subprocess.run([*git, earlier, later], capture_output=True).returncode == 0
    except OSError:
        return False


def run_window(logs: Path | None) -> tuple[float, float] | None:
    """First job start and last job end (Unix seconds) from the job windows of the run's
    logs; None when no log records one."""
    if not logs or not Path(logs).is_dir():
        return None
    starts, ends = [], []
    for p in Path(logs).rglob("*.log"):
        if p.parent == Path(logs) and p.stem in _REWRITTEN:
            continue
        for m in _WINDOW.finditer(p.read_text(errors="replace")):
            starts.append(float(m.group(1)))
            ends.append(float(m.group(2)))
    return (min(starts), max(ends)) if starts else None


_ELAPSED = re.compile(r"^Elapsed time: (\d+):(\d\d):(\d\d(?:\.\d+)?)\s*$", re.M)


def snakemake_elapsed(log_dir: Path | None, window: tuple[float, float] | None) -> float | None:
    """The elapsed time Snakemake logged for the one command that made the run (its start,
    its end-of-run deletions and report jobs included): the newest .snakemake/log started
    before the first job. None when there is none, or when another command with an elapsed
    time started inside the run's window (a resumed run: no one command's time)."""
    if not log_dir or not Path(log_dir).is_dir() or not window:
        return None
    runs = []
    for p in Path(log_dir).glob("*.snakemake.log"):
        try:  # Snakemake names its logs by local start time
            start = datetime.strptime(p.name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
        except ValueError:
            continue
        m = _ELAPSED.search(p.read_text(errors="replace"))
        if m:
            h, mi, s = m.groups()
            runs.append((start.timestamp(), int(h) * 3600 + int(mi) * 60 + float(s)))
    before = [r for r in runs if r[0] <= window[0]]
    inside = [r for r in runs if window[0] < r[0] < window[1]]
    return max(before)[1] if before and not inside else None


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60} min {rest % 60} s"


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def run_md(
    machine: str,
    command: str,
    commit: str,
    prov: Mapping,
    window: tuple[float, float] | None,
    title: str = "Reference run",
    layout: str = "Tables (CSV) and summary.md as results/tables/ holds them, figures/ as "
    "results/figures/, provenance.json as results/ holds it. Published with "
    "`snakemake publish` (imgbench.pipeline.publish).",
    elapsed: float | None = None,
) -> str:
    """RUN.md of a published run: the machine, the command, the commit, when and how long."""
    if window:
        when = f"{_utc(window[0])} to {_utc(window[1])}"
        took = (
            f"{_hms(window[1] - window[0])}, from the first job's start to the last "
            "measuring job's end (the job windows in results/logs; tables, figures and "
            "provenance left out: later report code may rewrite them; a resumed run counts "
            "the pause)"
        )
    else:
        when, took = f"provenance recorded {prov.get('created', 'at an unknown date')}", "unknown"
    return "\n".join(
        [
            f"# {title} `{machine}`",
            "",
            f"- Machine: {machine} ({(prov.get('cpu') or {}).get('model')}; id: CPU family, "
            "cores, memory in GiB, file system of results/)",
            f"- Command: `{command}`",
            f"- Commit: `{commit}` (no tracked file changed when the run started)",
            f"- Date: {when}",
            f"- Run time: {took}",
            *(
                [f"- The command's elapsed time, as Snakemake logged it: {_hms(elapsed)}"]
                if elapsed
                else []
            ),
            f"- Config hash: `{prov.get('config_hash')}` (the whole config is in provenance.json)",
            "",
            layout,
            "",
        ]
    )


def job_times(benchmarks: Path | None) -> pd.DataFrame:
    """One row per job of the run from Snakemake's benchmark files: the rule, the target's
    key (data/mode/format/...), wall seconds and peak RSS; what run times are summed from."""
    import pandas as pd

    rows = []
    for tsv in sorted(Path(benchmarks).rglob("*.tsv")) if benchmarks else []:
        rel = tsv.relative_to(benchmarks)
        if rel.parts[0].removesuffix(".tsv") in PUBLISH_TARGETS:  # an earlier publication's
            continue
        b = pd.read_csv(tsv, sep="\t")
        rows.append(
            {
                "rule": rel.parts[0].removesuffix(".tsv"),
                "key": "/".join(rel.parts[1:]).removesuffix(".tsv"),
                "format": rel.parts[3].split(".")[0] if len(rel.parts) >= 4 else None,
                "seconds": float(b["s"].iloc[0]),
                "max_rss_mb": pd.to_numeric(b["max_rss"], errors="coerce").iloc[0],
            }
        )
    return pd.DataFrame(rows, columns=["rule", "key", "format", "seconds", "max_rss_mb"])


def disk_bytes(root: Path) -> int:
    """Bytes allocated under *root* (as du counts them; links not followed)."""
    total = 0
    for d, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(d, name)).st_blocks * 512
    return total


def publish(
    tables: list[Path],
    figures: list[Path],
    provenance: Path,
    published: Path,
    dest_root: Path,
    command: str,
    config: Mapping,
    logs: Path | None = None,
    benchmarks: Path | None = None,
    title: str = "Reference run",
    layout: str | None = None,
    snakemake_logs: Path | None = None,
) -> Path:
    """The publish rule: check the run, copy it to dest_root/<machine>/ (replacing an earlier
    publication of that machine whole), write RUN.md and the record *published*. The S3
    run (rule s3_publish) passes its own *title* and *layout* sentence."""
    prov = json.loads(Path(provenance).read_text())
    if prov.get("config_hash") != config_hash(config):
        raise PublishError(
            "the run's config (provenance.json) is not this invocation's: publish with the "
            "profile and --config the run was made with"
        )
    files = copy_list(tables, figures, provenance)
    commit = run_commit([p for p in files.values() if p.suffix == ".csv"], prov)
    machine = machine_id(prov)
    dest = Path(dest_root) / machine
    tmp = dest.with_name(f".{machine}.tmp")
    remove(tmp)
    for name, src in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / name)
    window = run_window(logs)
    elapsed = snakemake_elapsed(snakemake_logs, window)
    extra = {"layout": layout} if layout else {}
    text = run_md(machine, command, commit, prov, window, title, elapsed=elapsed, **extra)
    (tmp / "RUN.md").write_text(text)
    jobs = job_times(benchmarks)
    jobs.to_csv(tmp / "jobs.csv", index=False)
    facts = {
        "machine": machine,
        "command": command,
        "commit": commit,
        "config": dict(config),
        "run_seconds": window[1] - window[0] if window else None,
        "command_seconds": elapsed,
        "jobs": len(jobs),
        "results_disk_bytes": disk_bytes(Path(provenance).parent),
    }
    (tmp / "run.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    old = dest.with_name(f".{machine}.old")
    remove(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    remove(old)
    record = {"machine": machine, "folder": str(dest), "commit": commit, "files": sorted(files)}
    with atomic_path(Path(published)) as out:
        out.write_text(json.dumps(record, indent=2) + "\n")
    return dest
