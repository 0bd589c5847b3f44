"""The SLURM profile on a real single-node SLURM (slurmctld + slurmd + munge on this machine).

Needs root and the Debian packages from tests/slurm/install.sh (.ci/run installs them);
skips with the reason otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from imgbench.data.synthetic import make_archive
from tests.conftest import REPO
from tests.slurm.cluster import completed_jobs, single_node_slurm, slurm_available

pytestmark = pytest.mark.slurm
CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
TIMED_RULES = {
    "build_store",
    "read_many_warm",
    "read_many_cold",
    "write_one",
    "read_one_warm",
    "read_one_cold",
}


def _snakemake(workdir: Path, archive: Path, *executor_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--cores",
            "2",
            "--configfile",
            str(CONFIG),
            "--config",
            f"cifar_url={archive}",
            "-d",
            str(workdir),
            *executor_args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_pipeline_runs_through_slurm(tmp_path: Path) -> None:
    reason = slurm_available()
    if reason:
        pytest.skip(reason)
    head_before = heads_since(None).pop()
    archive = make_archive(tmp_path / "cifar.tar.gz", per_batch=40)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    proc = _snakemake(local, archive)
    assert proc.returncode == 0, proc.stderr[-3000:]

    with single_node_slurm(tmp_path / "slurm") as info:
        t0 = time.monotonic()
        proc = _snakemake(
            cluster,
            archive,
            "--executor",
            "slurm",
            "--workflow-profile",
            "none",
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--profile",
            str(REPO / "tests" / "slurm" / "profile"),
        )
        wall = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr[-5000:]
        jobs = completed_jobs(info)
        pids = list(info.pids.values())
    print(f"SLURM run: {wall:.1f} s, {len(jobs)} jobs through SLURM")

    # The jobs really went through SLURM, completed, on our node; local rules did not.
    rules = sorted(j.get("Rule", "") for j in jobs)
    assert len(jobs) == 11, rules  # 10 pipeline jobs (one capped epoch) + the device probe
    assert all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    assert all(j["NodeList"] == info.node_name for j in jobs)
    assert TIMED_RULES <= set(rules)
    assert not {"download", "tables", "figures", "provenance"} & set(rules)
    # Timed jobs got the whole node (--exclusive): all CPUs of the node.
    for j in jobs:
        if j.get("Rule") in TIMED_RULES:
            assert int(j["ProcCnt"]) == info.cpus, j
    # The daemons we started are gone.
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid

    # Same tables, same shape as the local run; every timing row names the node.
    for name in ["summary.csv", "disk.csv", "samples.csv"]:
        a = pd.read_csv(local / "results" / "tables" / name)
        b = pd.read_csv(cluster / "results" / "tables" / name)
        assert list(a.columns) == list(b.columns) and a.shape == b.shape, name
    summary = pd.read_csv(cluster / "results" / "tables" / "summary.csv")
    assert (summary["node"] == info.node_name).all()
    assert summary["verified"][summary["operation"].str.startswith("read")].all()
    # The commit reached the node through sbatch's environment (the node needs no git), and
    # the code hash through the job's params.
    timings = [json.loads(p.read_text()) for p in (cluster / "results" / "timings").rglob("*.json")]
    assert len(timings) == 7 and all(r["code_hash"] for r in timings)
    commits = {r["commit"] for r in timings}  # computed once, by the main process
    assert len(commits) == 1 and commits <= heads_since(head_before), commits


def heads_since(first: str | None) -> set[str]:
    """The commits HEAD has pointed to since *first* (None: HEAD now); a run is tagged with
    one of them (a shared working tree can move on while the test runs)."""
    git = ["git", "-C", str(REPO), "rev-list"]
    args = [f"{first}^!", f"{first}..HEAD"] if first else ["-1", "HEAD"]
    out = [subprocess.run([*git, a], capture_output=True, text=True).stdout for a in args]
    return set("\n".join(out).split())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
