"""The README's generated blocks, from the published reference run in docs/results/<machine>/.

Why generated: numbers shown to users come from a published run, never typed by hand, and a
test regenerates both blocks and fails when README.md differs. Two blocks:

- the answer (between ``<!-- answer:start -->`` and ``<!-- answer:end -->``): "which format
  for which job", by the same code that writes summary.md (:mod:`imgbench.report.answer`);
- the run box (``<!-- run:start -->`` ... ``<!-- run:end -->``): how long the reference run
  took and what it left on disk, and how long the default run took: measured alone when it was
  published (docs/results/default/<machine>), else its jobs summed inside the reference run.

    python -m imgbench.pipeline.readme --run docs/results/<machine> \\
        [--default-run docs/results/default/<machine>] [--s3-run docs/results/s3/<machine>] \\
        [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pandas as pd

from imgbench.report import answer

RUN_START, RUN_END = "<!-- run:start -->", "<!-- run:end -->"
S3_START, S3_END = "<!-- s3:start -->", "<!-- s3:end -->"
#: the default run's formats (config.yaml): its jobs are summed out of the reference run
DEFAULT_FORMATS = ("png", "lmdb", "hdf5", "npy")


def _duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60} min" if m >= 60 else f"{m} min"


def _took(facts: dict) -> str:
    wall = facts.get("run_seconds")
    return f"{_duration(wall)} ({facts['jobs']} jobs)" if wall else "not recorded"


def run_box(run: Path, default_run: Path | None = None) -> str:
    """The run box: the reference run's measured wall time and disk, and the default run's:
    measured alone if it was published, else its jobs summed inside the reference run (a run
    of those formats alone adds Snakemake's gaps)."""
    facts = json.loads((Path(run) / "run.json").read_text())
    disk = facts["results_disk_bytes"] / 1e9
    text = (
        f"**Time and disk on this 2-core machine** (reference run `{facts['machine']}`, "
        f"[RUN.md](docs/results/{Path(run).name}/RUN.md)): the reference run (all twelve "
        f"formats) took {_took(facts)} and left {disk:.1f} GB in `results/`. "
    )
    if default_run is not None:
        alone = json.loads((Path(default_run) / "run.json").read_text())
        whole = alone.get("command_seconds")
        took = (
            f"{_duration(whole)} as Snakemake logged the whole command (its {alone['jobs']} "
            f"jobs: {_duration(alone['run_seconds'])} from the first's start to the last "
            "measurement)"
            if whole
            else _took(alone)
        )
        text += (  # its disk: the reference run's stores of these formats are the same
            f"The default run (`snakemake --cores all`), timed alone at commit "
            f"`{str(alone['commit'])[:12]}`, took {took} "
            f"([RUN.md](docs/results/default/{Path(default_run).name}/RUN.md)). "
        )
    else:
        jobs = pd.read_csv(Path(run) / "jobs.csv")
        default = jobs[jobs["format"].isna() | jobs["format"].isin(DEFAULT_FORMATS)]
        text += (
            f"The default run's {len(default)} jobs took {_duration(default['seconds'].sum())} "
            f"of it, summed job by job (`benchmarks/run_report.py results --formats "
            f"{','.join(DEFAULT_FORMATS)}`). "
        )
    text += (
        "While a run goes on, builds of 1,000+ files that a job no longer needs wait for the "
        "run's end to be deleted, so disk use peaks above what is left."
    )
    return "\n".join("> " + line for line in textwrap.wrap(text, width=98))


def s3_box(s3_run: Path) -> str:
    """The S3 command's box: its measured wall time, jobs and disk, from its published run."""
    facts = json.loads((Path(s3_run) / "run.json").read_text())
    wall = facts.get("run_seconds")
    took = f"{_duration(wall)} ({facts['jobs']} jobs)" if wall else "not recorded"
    name = Path(s3_run).name
    text = (
        f"**Time on this machine** (S3 run `{name}`, [RUN.md](docs/results/s3/{name}/RUN.md), "
        f"[per format](docs/results/s3/{name}/s3.md)): the S3 command took {took} and left "
        f"{facts['results_disk_bytes'] / 1e9:.1f} GB in `results/` (the server's copies "
        "included)."
    )
    return "\n".join("> " + line for line in textwrap.wrap(text, width=98))


def _between(text: str, start: str, end: str, block: str) -> str:
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {start} ... {end} markers in order: add them to the README")
    return f"{text[: i + len(start)]}\n{block.strip()}\n{text[j:]}"


def render(
    readme: str, run: Path, s3_run: Path | None = None, default_run: Path | None = None
) -> str:
    """*readme* with the generated blocks rewritten from the published *run* (and the
    published S3 run: its answer rows and its time box; the default run: its time)."""
    block = answer.readme_answer(Path(run), Path(run) / "provenance.json", s3_run)
    text = _between(readme, answer.START, answer.END, block)
    text = _between(text, RUN_START, RUN_END, run_box(Path(run), default_run))
    return _between(text, S3_START, S3_END, s3_box(Path(s3_run))) if s3_run else text


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md's generated blocks; one line and exit 1 on a missing run or marker."""
    ap = argparse.ArgumentParser(description="Regenerate the README's answer and run box.")
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--run", type=Path, required=True, help="docs/results/<machine>")
    ap.add_argument("--s3-run", type=Path, help="docs/results/s3/<machine> (the S3 command's)")
    ap.add_argument("--default-run", type=Path, help="docs/results/default/<machine> (timed alone)")
    args = ap.parse_args(argv)
    try:
        new = render(args.readme.read_text(), args.run, args.s3_run, args.default_run)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
