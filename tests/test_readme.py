"""The README: short, its commands the ones CI runs, its links alive, and its numbers generated
from the published reference run (imgbench.pipeline.readme), never typed by hand."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from imgbench.pipeline import readme
from tests.conftest import REPO

README = REPO / "README.md"
RUNS = sorted(p.parent for p in (REPO / "docs" / "results").glob("*/run.json"))
S3_RUNS = sorted(p.parent for p in (REPO / "docs" / "results" / "s3").glob("*/run.json"))
DEFAULT_RUNS = sorted(p.parent for p in (REPO / "docs" / "results" / "default").glob("*/run.json"))


def _prose(text: str) -> list[str]:
    """Lines outside code blocks, tables and the generated answer (those may be wider)."""
    out, code, generated = [], False, False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
        elif line in (readme.answer.START, readme.answer.END):
            generated = line == readme.answer.START
        elif not code and not generated and not line.startswith("|"):
            out.append(line)
    return out


def test_the_readme_is_short_and_wrapped():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    wide = [line for line in _prose(text) if len(line) > 100 and "<!--" not in line]
    assert not wide, wide


def test_the_test_command_is_the_one_ci_runs():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(), re.S)
    assert len(blocks) >= 2 and blocks[1] == ci, (blocks[:2], ci)
    assert blocks[0].endswith("snakemake --cores all")


def test_relative_links_point_at_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    missing = [link for link in local if not (REPO / link).exists()]
    assert local and not missing, missing


def test_the_run_box_sums_the_default_formats_jobs(tmp_path):
    run = tmp_path / "xeon-2c-24g-ext4"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps({"machine": run.name, "run_seconds": 5400, "jobs": 4, "results_disk_bytes": 5e9})
    )
    pd.DataFrame(
        {
            "rule": ["download", "build_store", "build_store", "build_store"],
            "format": [None, "png", "npy", "lance"],
            "seconds": [60.0, 600.0, 540.0, 9999.0],
        }
    ).to_csv(run / "jobs.csv", index=False)
    box = readme.run_box(run)
    flat = " ".join(line.removeprefix("> ") for line in box.splitlines())
    assert "took 1 h 30 min (4 jobs)" in flat and "5.0 GB" in flat
    assert "default run's 3 jobs took 20 min" in flat  # lance's job is not the default run's
    assert all(len(line) <= 100 for line in box.splitlines())


def test_the_run_box_gives_the_default_run_timed_alone_when_published(tmp_path):
    run, alone = tmp_path / "xeon-2c-24g-ext4", tmp_path / "default" / "xeon-2c-24g-ext4"
    for path, seconds, jobs, disk in ((run, 5400, 4, 5e9), (alone, 2460, 270, 2.5e9)):
        path.mkdir(parents=True)
        facts = {"machine": path.name, "run_seconds": seconds, "jobs": jobs}
        facts.update(results_disk_bytes=disk, commit="0123456789abcdef")
        (path / "run.json").write_text(json.dumps(facts))
    flat = " ".join(line.removeprefix("> ") for line in readme.run_box(run, alone).splitlines())
    assert "took 1 h 30 min (4 jobs)" in flat and "summed" not in flat
    assert "timed alone at commit `0123456789ab`, took 41 min (270 jobs)" in flat
    assert "(docs/results/default/xeon-2c-24g-ext4/RUN.md)" in flat
    facts = json.loads((alone / "run.json").read_text())
    (alone / "run.json").write_text(json.dumps({**facts, "command_seconds": 2562.4}))
    flat = " ".join(line.removeprefix("> ") for line in readme.run_box(run, alone).splitlines())
    assert "took 43 min as Snakemake logged the whole command (its 270 jobs: 41 min from" in flat


def test_missing_markers_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="markers"):
        readme._between("no markers", readme.RUN_START, readme.RUN_END, "x")


@pytest.mark.skipif(not RUNS, reason="no published run with run.json in docs/results/ yet")
def test_the_readme_blocks_are_the_published_runs():
    run, s3 = RUNS[-1], S3_RUNS[-1] if S3_RUNS else None
    alone = DEFAULT_RUNS[-1] if DEFAULT_RUNS else None
    text = README.read_text()
    fix = f"python -m imgbench.pipeline.readme --run {run.relative_to(REPO)}"
    fix += f" --s3-run {s3.relative_to(REPO)}" if s3 else ""
    fix += f" --default-run {alone.relative_to(REPO)}" if alone else ""
    assert readme.render(text, run, s3, alone) == text, (
        f"README.md differs from {run.name}: run `{fix}`"
    )


def test_render_replaces_only_the_blocks_and_is_idempotent(tmp_path, capsys):
    from tests.test_answer import _published

    run = _published(tmp_path / "docs" / "results" / "cpu-2c-24g-ext4")
    (run / "run.json").write_text(
        json.dumps({"machine": run.name, "run_seconds": 600, "jobs": 2, "results_disk_bytes": 1e9})
    )
    pd.DataFrame({"rule": ["a", "b"], "format": ["png", None], "seconds": [30.0, 30.0]}).to_csv(
        run / "jobs.csv", index=False
    )
    page = tmp_path / "README.md"
    page.write_text(
        f"# T\n\nbefore\n{readme.answer.START}\nSTALE TABLE\n{readme.answer.END}\nmiddle\n"
        f"{readme.RUN_START}\nSTALE BOX\n{readme.RUN_END}\nafter\n"
    )
    assert readme.main(["--readme", str(page), "--run", str(run)]) == 0
    text = page.read_text()
    assert "STALE" not in text and "| write once (durable)" in text
    assert text.startswith("# T\n\nbefore\n") and text.endswith(f"{readme.RUN_END}\nafter\n")
    assert "took 10 min (2 jobs)" in text.replace("\n> ", " ")
    assert readme.main(["--readme", str(page), "--run", str(run)]) == 0
    assert page.read_text() == text  # idempotent
    page.write_text("no markers\n")
    assert readme.main(["--readme", str(page), "--run", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "markers" in err and page.read_text() == "no markers\n"
