"""Publishing a run to docs/results/<machine>/, the published runs in the repository, and the
report's captions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from imgbench.core.config import config_hash, normalize
from imgbench.core.errors import BenchError
from imgbench.pipeline import plan, publish
from imgbench.pipeline.publish import PublishError, machine_id, run_command
from tests.conftest import REPO

CONFIG = {"formats": ["png", "lmdb"], "cutoffs": [10, 100]}
XEON = "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
GIB = 2**30


def prov(commit: str = "c0ffee", model: str | None = XEON, **kw) -> dict:
    """A provenance record with the fields publish reads (as imgbench.report.provenance
    writes them)."""
    return {
        "created": "2025-01-02T03:04:05+00:00",
        "cpu": {"model": model, "logical_cores": 2, "affinity_cores": 2},
        "memory": {"total_bytes": 24 * GIB - 300 * 2**20},
        "filesystem": {"fstype": "ext4"},
        "os": {"machine": "x86_64"},
        "git": {"commit": commit, "dirty": False},
        "config": CONFIG,
        "config_hash": config_hash(CONFIG),
        **kw,
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (XEON, "xeon-2c-24g-ext4"),
        ("AMD EPYC 7B13 64-Core Processor", "epyc-2c-24g-ext4"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "core-2c-24g-ext4"),
        (None, "x86-64-2c-24g-ext4"),  # no model name (some ARM kernels): the architecture
    ],
)
def test_machine_id_from_provenance(model, expected):
    assert machine_id(prov(model=model)) == expected


def test_machine_id_names_what_provenance_lacks():
    p = prov(filesystem={"fstype": None}, memory={"total_bytes": None})
    with pytest.raises(PublishError, match="memory, file system: rerun the provenance rule"):
        machine_id(p)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/v/bin/snakemake", "--cores", "all", "publish"], "snakemake --cores all"),
        (
            ["snakemake", "--workflow-profile", "profiles/reference", "--forcerun", "publish"],
            "snakemake --workflow-profile profiles/reference",
        ),
        (
            ["snakemake", "--config", "formats=[png, lmdb]", "publish"],
            "snakemake --config 'formats=[png, lmdb]'",
        ),
    ],
)
def test_run_command_is_the_publish_invocation_without_the_target(argv, expected):
    assert run_command(argv) == expected


def fake_run(root: Path, commits=("c0ffee",), dirty=False, prov_commit="c0ffee") -> dict:
    """A finished run under root/results: two tables with commit/dirty columns, one without,
    summary.md, two figures, provenance.json and job logs spanning 1 h 2 min 3 s."""
    res = root / "results"
    (res / "tables").mkdir(parents=True)
    (res / "figures").mkdir()
    rows = [{"format": "png", "median_s": 1.5, "commit": c, "dirty": dirty} for c in commits]
    pd.DataFrame(rows).to_csv(res / "tables" / "summary.csv", index=False)
    pd.DataFrame(rows[:1]).to_csv(res / "tables" / "capped.csv", index=False)
    pd.DataFrame({"id": ["overall"], "verdict": ["holds"]}).to_csv(
        res / "tables" / "claims.csv", index=False
    )
    (res / "tables" / "summary.md").write_text("# Summary\n")
    for name in ("answer", "disk"):
        (res / "figures" / f"{name}.png").write_bytes(b"\x89PNG" + name.encode())
    (res / "provenance.json").write_text(json.dumps(prov(prov_commit)))
    for key, seconds in (("build_store/cifar32/tuned/png/10", 1.5), ("device", 2.0)):
        tsv = res / "benchmarks" / f"{key}.tsv"
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t100.5\n")
    for i, (start, end) in enumerate(((1000.0, 1100.0), (1050.0, 1000.0 + 3723.0))):
        log = res / "logs" / "x" / f"{i}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"INFO imgbench: something\nINFO imgbench: job window: {start} {end}\n")
    return {
        "tables": sorted((res / "tables").iterdir()),
        "figures": sorted((res / "figures").iterdir()),
        "provenance": res / "provenance.json",
        "published": res / "published.json",
        "dest_root": root / "docs" / "results",
        "command": "snakemake --cores all --workflow-profile profiles/reference",
        "config": CONFIG,
        "logs": res / "logs",
        "benchmarks": res / "benchmarks",
    }


def test_publish_copies_the_run_and_writes_run_md(tmp_path):
    args = fake_run(tmp_path)
    dest = publish.publish(**args)
    assert dest == tmp_path / "docs" / "results" / "xeon-2c-24g-ext4"
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == [
        "RUN.md",
        "capped.csv",
        "claims.csv",
        "figures/answer.png",
        "figures/disk.png",
        "jobs.csv",
        "provenance.json",
        "run.json",
        "summary.csv",
        "summary.md",
    ]
    jobs = pd.read_csv(dest / "jobs.csv")
    assert jobs.to_dict("records")[0] == {
        "rule": "build_store",
        "key": "cifar32/tuned/png/10",
        "format": "png",
        "seconds": 1.5,
        "max_rss_mb": 100.5,
    }
    facts = json.loads((dest / "run.json").read_text())
    assert facts["jobs"] == 2 and facts["run_seconds"] == 3723.0 and facts["commit"] == "c0ffee"
    assert facts["results_disk_bytes"] > 0
    for src in [*args["tables"], *args["figures"], args["provenance"]]:
        rel = f"figures/{src.name}" if src.suffix == ".png" else src.name
        assert (dest / rel).read_bytes() == src.read_bytes()
    run = (dest / "RUN.md").read_text()
    assert f"`{args['command']}`" in run and "`c0ffee`" in run
    assert "1 h 2 min 3 s" in run and "1970-01-01 00:16 UTC" in run
    record = json.loads(args["published"].read_text())
    assert record["machine"] == "xeon-2c-24g-ext4" and record["commit"] == "c0ffee"
    assert "figures/answer.png" in record["files"]


def test_publishing_again_replaces_the_machines_folder(tmp_path):
    args = fake_run(tmp_path)
    dest = publish.publish(**args)
    (dest / "stale.csv").write_text("old\n")
    args["figures"] = args["figures"][:1]
    publish.publish(**args)
    assert not (dest / "stale.csv").exists() and not (dest / "figures" / "disk.png").exists()
    assert not list(dest.parent.glob(".*"))  # no temporary folder left


def test_run_time_unknown_without_job_windows(tmp_path):
    args = fake_run(tmp_path) | {"logs": None}
    run = (publish.publish(**args) / "RUN.md").read_text()
    assert "Run time: unknown" in run and "2025-01-02T03:04:05" in run


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"commits": ("a1", "b2")}, r"rows come from 2 commits \(a1, b2\)"),
        ({"dirty": True}, r"uncommitted changes \(capped.csv, summary.csv\)"),
        ({"commits": ("unknown",)}, "do not record their commit"),
        ({"prov_commit": "b2"}, "b2, which does not descend from the rows' commit c0ffee"),
    ],
)
def test_publish_refuses_a_mixed_or_dirty_run_in_one_line(tmp_path, kw, message):
    kw.setdefault("prov_commit", kw.get("commits", ("c0ffee",))[0])
    args = fake_run(tmp_path, **kw)
    with pytest.raises(PublishError, match=message) as e:
        publish.publish(**args)
    assert isinstance(e.value, BenchError) and "\n" not in str(e.value)
    assert not args["dest_root"].exists() and not args["published"].exists()


def test_publish_refuses_another_config_and_a_missing_file(tmp_path):
    args = fake_run(tmp_path)
    with pytest.raises(PublishError, match="config .* is not this invocation's"):
        publish.publish(**(args | {"config": {**CONFIG, "cutoffs": [10]}}))
    args["figures"][0].unlink()
    with pytest.raises(PublishError, match="answer.png: finish the run first"):
        publish.publish(**args)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def published_runs() -> list[Path]:
    """Every committed docs/results/<machine>/provenance.json."""
    out = _git("ls-files", "docs/results/*/provenance.json")
    if out.returncode:
        pytest.skip("not a git checkout")
    return [REPO / p for p in out.stdout.split()]


def test_published_runs_come_from_one_clean_ancestor_commit():
    runs = published_runs()
    if not runs:
        pytest.skip("no run published in docs/results yet")
    for p in runs:
        commit = json.loads(p.read_text())["git"]["commit"]
        assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (p, commit)
        for csv in p.parent.glob("*.csv"):
            df = pd.read_csv(csv, dtype=str)
            if "dirty" in df.columns:
                assert set(df["dirty"].dropna().str.lower()) <= {"false"}, csv
            if "commit" in df.columns:
                assert set(df["commit"].dropna()) <= {commit}, csv


def test_every_table_figure_and_provenance_has_a_report_caption():
    import yaml

    cfg = normalize({**yaml.safe_load((REPO / "config.yaml").read_text()), "image_sizes": [32, 64]})
    p = plan.make_plan(cfg)
    assert {"access", "au", "sizes"} <= set(p.figures)  # every optional figure planned
    report = REPO / "workflow" / "report"
    missing = [k for k in p.figures if not (report / f"{k}.rst").is_file()]
    missing += [f"table_{k}" for k in p.tables if not (report / f"table_{k}.rst").is_file()]
    missing += [] if (report / "provenance.rst").is_file() else ["provenance"]
    assert not missing
    smk = (REPO / "workflow" / "rules" / "report.smk").read_text()
    assert (
        'caption=f"../report/table_{k}.rst"' in smk and 'caption="../report/provenance.rst"' in smk
    )


def test_publish_is_a_logged_local_rule_outside_all():
    smk = (REPO / "workflow" / "rules" / "report.smk").read_text()
    rule = smk[smk.index("rule publish:") :]
    assert "localrules:\n    publish," in smk
    assert '"results/logs/publish.log"' in rule and '"results/benchmarks/publish.tsv"' in rule
    assert 'step("imgbench.pipeline.publish:publish")' in rule
    snakefile = (REPO / "Snakefile").read_text()
    all_rule = snakefile[snakefile.index("rule all:") :].split("\n\n\n")[0]
    assert "input:" in all_rule and "publish" not in all_rule


def test_provenance_rewritten_at_a_later_commit_is_accepted():
    """Later report code reruns tables and provenance, not the measuring jobs: a provenance
    commit that descends from the rows' commit is accepted, an unrelated one is not."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    parent = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD~1"], capture_output=True, text=True
    ).stdout.strip()
    if not parent:
        pytest.skip("a clone without history (shallow)")
    assert publish._descends(head, parent) and not publish._descends(parent, head)


def test_a_publication_is_titled_by_its_folder():
    from imgbench.pipeline.publish import publication_title

    assert publication_title("docs/results") == "Reference run"
    assert publication_title("docs/results/default") == "Default run"


def test_the_command_s_elapsed_time_comes_from_snakemake_s_log_of_that_command(tmp_path):
    from datetime import datetime

    from imgbench.pipeline.publish import run_command, snakemake_elapsed

    logs = tmp_path / "log"
    logs.mkdir()

    def log(start: str, text: str) -> float:
        (logs / f"{start}.snakemake.log").write_text(text)
        return datetime.strptime(start, "%Y-%m-%dT%H%M%S.%f").timestamp()

    t0 = log("2026-12-06T071438.658397", "277 of 277 steps (100%) done\nElapsed time: 0:42:42.38\n")
    log("2026-12-06T060000.000001", "Elapsed time: 0:01:00\n")  # an earlier command
    window = (t0 + 20, t0 + 2400)
    assert snakemake_elapsed(logs, window) == pytest.approx(2562.38)
    log("2026-12-06T075748.926758", "Elapsed time: 0:00:03.69\n")  # publish, after the run
    assert snakemake_elapsed(logs, window) == pytest.approx(2562.38)
    log("2026-12-06T073000.000000", "Elapsed time: 0:20:00\n")  # resumed inside the window
    assert snakemake_elapsed(logs, window) is None
    assert snakemake_elapsed(tmp_path / "missing", window) is None
    argv = ["snakemake", "publish", "--cores", "all", "--config", "publish_dir=docs/results/x"]
    assert run_command(argv) == "snakemake --cores all"  # publish_dir was its only key
    assert run_command([*argv, "n_images=10"]) == "snakemake --cores all --config n_images=10"
    later = ["snakemake", "publish", "--forcerun", "publish", "--rerun-triggers", "mtime", "-c2"]
    assert run_command(later) == "snakemake -c2"


def test_job_times_leave_out_an_earlier_publication(tmp_path):
    from imgbench.pipeline.publish import job_times

    tsv = "s\tmax_rss\n1.5\t10\n"
    for rel in ("build_store/cifar32/tuned/png/10.tsv", "publish.tsv", "tables.tsv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(tsv)
    jobs = job_times(tmp_path)
    assert sorted(jobs["rule"]) == ["build_store", "tables"] and jobs["seconds"].sum() == 3.0
