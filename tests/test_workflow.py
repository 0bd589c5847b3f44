"""The Snakemake workflow: DAG shape, config checks, a tiny end-to-end run, reruns, isolation."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imgbench.data.synthetic import make_archive
from imgbench.report.claims_data import CLAIMS
from imgbench.stores import FORMATS, modes, parallel_writes
from tests.conftest import REPO
from tests.test_provenance import TOP_KEYS

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
#: the tiny run's (format, mode) pairs: every registered format (tests/configs/tiny.yaml), and
#: its writer sweeps: tuned formats with parallel writers x writers [1, 2]
C = sum(len(modes(f)) for f in FORMATS)
W = sum(2 for f in FORMATS if parallel_writes(f))
#: capped epochs in tests/configs/tiny.yaml: every tuned format, 2 readers, advice random
T = sum(1 for f in FORMATS if "tuned" in modes(f))
TIMED_DIRS = [
    "write_many",
    "read_many_warm",
    "read_many_cold",
    "write_one",
    "read_one_warm",
    "read_one_cold",
    "read_epoch_warm",
    "read_epoch_cold",
    "train_warm",
    "train_cold",
    "write_writers",
    "read_epoch_capped",
]

pytestmark = pytest.mark.workflow


def smk(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    stats = output.split("Job stats:", 1)[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    counts.pop("total", None)
    return counts


def test_dry_run_default_dag(tmp_path: Path) -> None:
    out = smk("-n", "--cores", "2", "-d", str(tmp_path)).stdout  # an empty dir: every job
    counts = job_counts(out)
    combos = sum(len(modes(f)) for f in ["png", "lmdb", "hdf5", "npy"])
    assert combos == 7
    for rule in ["build_store", "read_many_warm", "read_many_cold", "du"]:
        assert counts[rule] == combos * 5, rule
    for rule in ["write_one", "read_one_warm", "read_one_cold"]:
        assert counts[rule] == combos, rule
    for rule in ["read_epoch_warm", "read_epoch_cold"]:  # 2 patterns x 2 reader counts
        assert counts[rule] == combos * 2 * 2, rule
    for rule in ["train_warm", "train_cold"]:  # 2 reader counts x 1 compute time
        assert counts[rule] == combos * 2, rule
    assert counts["build_writers"] == 3 * 2  # tuned png, hdf5, npy x writers [1, 2]
    # capped epochs: tuned formats x reader processes [1, 2] x advice [default, random]
    assert counts["read_epoch_capped"] == 4 * 2 * 2
    capped = "results/timings/read_epoch_capped/cifar32/tuned/npy/"
    assert capped + "shuffled_r2_process_random_d1.json" in out
    for rule in ["download", "unpickle", "double", "device", "tables", "figures", "provenance"]:
        assert counts[rule] == 1, rule
    for mode, fmt, n in itertools.product(
        ["article", "tuned"], ["png", "lmdb", "hdf5"], [10, 100, 1000, 10000, 100000]
    ):
        assert f"results/stores/cifar32/{mode}/{fmt}/{n}" in out


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (["formats=[png,tiff]"], "formats"),
        (["cutoffs=[10,500000]"], "cutoffs"),
        (["cutoffs=[]"], "cutoffs"),
        (["cutoffs=[0,10]"], "cutoffs"),
        (["n_images=-5"], "n_images"),
        (["n_images=1.5"], "n_images"),
        (["repeats=0"], "repeats"),
        (["modes=[fast]"], "modes"),
        (["cold_cache=maybe"], "cold_cache"),
        (["formats=[]"], "formats"),
        (["colour=blue"], "colour"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path: Path, override: list[str], needle: str) -> None:
    proc = smk("-n", "--cores", "1", "-d", str(tmp_path), "--config", *override, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert needle in text
    assert "Job stats" not in text and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "extra", [["--resources", "foo=1"], ["--workflow-profile", "none"]], ids=["resources", "none"]
)
def test_run_without_the_timing_cap_stops_before_any_job(tmp_path: Path, extra) -> None:
    proc = smk("-n", "--cores", "2", "-d", str(tmp_path), *extra, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "timing isolation is off" in text
    assert "timing_slots=100" in text and "Job stats" not in text
    # with the cap given back, the same run goes ahead
    if extra[0] == "--resources":
        smk("-n", "--cores", "2", "-d", str(tmp_path), "--resources", "foo=1", "timing_slots=100")


def test_unknown_format_names_the_allowed_ones(tmp_path: Path) -> None:
    proc = smk("-n", "--cores", "1", "-d", str(tmp_path), "--config", "formats=[tiff]", check=False)
    assert proc.returncode != 0
    assert f"allowed: {sorted(FORMATS)}" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny end-to-end run (--cores 2), shared by the tests below."""
    work = tmp_path_factory.mktemp("tiny")
    make_archive(work / "cifar.tar.gz", per_batch=40)
    proc = smk(*tiny_args(work))
    (work / "smk.out").write_text(proc.stdout + proc.stderr)
    return work


def tiny_args(work: Path, *config: str) -> list[str]:
    """snakemake arguments for the tiny config on work/cifar.tar.gz, with extra config."""
    return [
        "--cores",
        "2",
        "--configfile",
        str(TINY),
        "--config",
        f"cifar_url={work / 'cifar.tar.gz'}",
        *config,
        "-d",
        str(work),
    ]


def _again(work: Path, *extra: str) -> subprocess.CompletedProcess:
    return smk(*tiny_args(work, *extra))


def test_tiny_run_produces_every_table_and_figure(tiny_run: Path) -> None:
    tables = tiny_run / "results" / "tables"
    for name in [
        "samples.csv",
        "summary.csv",
        "disk.csv",
        "article_comparison.csv",
        "claims.csv",
        "reproduction.csv",
        "access.csv",
        "au.csv",
        "summary.md",
    ]:
        assert (tables / name).stat().st_size > 0, name
    for name in [
        "store_linear",
        "store_log",
        "read_linear",
        "read_log",
        "store_read",
        "cold_warm",
        "disk",
        "single",
        "access",
        "au",
    ]:
        fig = tiny_run / "results" / "figures" / f"{name}.png"
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    summary = pd.read_csv(tables / "summary.csv")
    combos = {(f, m) for f in FORMATS for m in modes(f)}
    assert set(zip(summary["format"], summary["mode"], strict=True)) == combos
    many = summary[summary["operation"].isin(["write_many", "read_many"])]
    assert sorted(set(many["n_images"])) == [10, 100]
    assert len(many) == len(combos) * 2 * 3  # write, read warm, read cold at 2 cutoffs
    assert (summary["n_samples"][summary["operation"] == "read_many"] == 2).all()  # repeats: 2
    reads = summary[summary["operation"].str.startswith("read")]
    assert reads["verified"].all()
    disk = pd.read_csv(tables / "disk.csv")
    assert len(disk) == len(combos) * 2 and (disk["kib_allocated"] > 0).all()
    samples = pd.read_csv(tables / "samples.csv")
    assert len(samples) == summary["n_samples"].sum()
    assert samples["config_hash"].notna().all() and samples["node"].notna().all()
    md = (tables / "summary.md").read_text()
    assert "Article mode vs the article" in md and "Which format for which job" in md
    acc = pd.read_csv(tables / "access.csv")
    assert len(acc) == len(combos) * 2 * 2 and acc["verified"].all()  # readers x cache
    assert set(acc["pattern"]) == {"shuffled"} and (acc["epoch_images"] == 100).all()
    au = pd.read_csv(tables / "au.csv")
    assert len(au) == len(combos) * 2 * 2 and au["verified"].all()
    assert ((au["au"] > 0) & (au["au"] <= 1)).all() and au["accelerators_at_90"].notna().all()
    claims = pd.read_csv(tables / "claims.csv")
    assert len(claims) == len(CLAIMS) and set(claims["verdict"]) <= {
        "holds",
        "fails",
        "mixed",
        "not tested",
    }


def test_cold_results_all_prove_residency(tiny_run: Path) -> None:
    timings = tiny_run / "results" / "timings"
    results = [*timings.glob("read_*_cold/**/*.json"), *timings.glob("train_cold/**/*.json")]
    assert len(results) == C * 3 + C * 2 + C * 2  # many, one, epochs and training
    for p in results:
        r = json.loads(p.read_text())
        assert r["resident_fraction"] and max(r["resident_fraction"]) <= 0.05, p


def test_a_local_run_turns_off_the_rate_limiter(tiny_run: Path) -> None:
    """Its 1-s timers woke the scheduler beside every timed job (common.smk says how much);
    onstart switches it off, or stops the run if this Snakemake has no such limiter."""
    out = (tiny_run / "smk.out").read_text()
    assert "local run: Snakemake's job rate limiter off" in out


def test_timed_jobs_never_overlap_any_job(tiny_run: Path) -> None:
    timed = []
    for d in TIMED_DIRS:
        for p in (tiny_run / "results" / "timings" / d).rglob("*.json"):
            r = json.loads(p.read_text())
            timed.append((r["start"], r["end"], str(p)))
    # + epochs and training: 2 reader counts each, warm and cold; + capped epochs
    assert len(timed) == C * 2 * 3 + C * 3 + C * 2 * 2 + C * 2 * 2 + W + T
    # every job, timed or not, logs its process's window
    windows = []
    for log in (tiny_run / "results" / "logs").rglob("*.log"):
        found = re.findall(r"job window: ([\d.]+) ([\d.]+)", log.read_text())
        assert len(found) == 1, f"{log}: no job window logged"
        windows.append((float(found[0][0]), float(found[0][1]), str(log)))
    assert len(windows) == len(timed) + C * 2 + 9  # + du per store, + 9 other jobs
    for s1, e1, a in timed:
        for s2, e2, b in windows:
            timed_log = Path(b).relative_to(tiny_run / "results" / "logs").parts[0]
            own = ("build_store", "build_writers", *TIMED_DIRS[1:])
            if timed_log in own and s2 <= s1 and e1 <= e2:
                continue  # the timed job's own process
            assert e1 <= s2 or e2 <= s1, f"timed job {a} overlaps job {b}"


def test_results_say_which_code_measured_them(tiny_run: Path) -> None:
    """commit and dirty come from the main process (environment), code_hash from the rule's
    params: one per experiment family and format."""
    hashes, commits = {}, set()
    for p in (tiny_run / "results" / "timings").rglob("*.json"):
        r = json.loads(p.read_text())
        assert isinstance(r["dirty"], bool) and r["code_hash"], p
        commits.add(r["commit"])
        hashes.setdefault(p.relative_to(tiny_run / "results" / "timings").parts[0], {})[
            r["format"]
        ] = r["code_hash"]
    # one commit, computed once by the main process: HEAD then (or a later HEAD if the
    # working tree moved on while the tests ran)
    assert len(commits) == 1
    kind = ["git", "-C", str(REPO), "cat-file", "-t", commits.pop()]
    assert subprocess.run(kind, capture_output=True, text=True).stdout.strip() == "commit"
    assert hashes["write_many"]["lmdb"] != hashes["write_many"]["png"]  # own format only
    assert hashes["write_many"]["png"] != hashes["read_many_warm"]["png"]  # own family
    assert hashes["read_many_warm"] == hashes["read_many_cold"]  # same code


def test_slurm_profile_covers_every_timed_rule() -> None:
    """Every rule that claims all timing_slots gets an exclusive node, a runtime and memory
    in profiles/slurm (a static file: compared here with the rules the workflow defines)."""
    import yaml
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings

    with SnakemakeApi() as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1, resources={"timing_slots": 100}),
            config_settings=ConfigSettings(),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        rules = wf._workflow.rules  # parsed only: no DAG, no job
        timed = {r.name for r in rules if r.resources.get("timing_slots") == 100}
    assert {"build_store", "read_epoch_capped", "train_cold", "device"} <= timed
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    exclusive = {
        rule: res
        for rule, res in profile["set-resources"].items()
        if "--exclusive" in str(res.get("slurm_extra"))
    }
    assert set(exclusive) == timed
    assert all(res.get("runtime") and res.get("mem_mb") for res in exclusive.values())


def test_provenance_has_every_field(tiny_run: Path) -> None:
    prov = json.loads((tiny_run / "results" / "provenance.json").read_text())
    assert TOP_KEYS <= set(prov)
    assert prov["libraries"]["hdf5"] and prov["libraries"]["lmdb"]
    assert prov["filesystem"]["fstype"] and prov["cpu"]["logical_cores"] >= 1
    assert prov["config"]["n_images"] == 400
    # what capped epochs rest on: the readahead, file system and cgroup of this machine
    assert prov["device"]["read_ahead_kb"] is not None or prov["device"]["block_device_reason"]
    assert prov["device"]["file_system"] and "usable" in prov["memory_cgroup"]


def test_second_run_has_nothing_to_do(tiny_run: Path) -> None:
    out = _again(tiny_run)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_figure_setting_reruns_only_figures(tiny_run: Path) -> None:
    out = _again(tiny_run, "figure_dpi=60", "-n")
    assert set(job_counts(out.stdout)) == {"figures", "all"}


def test_store_option_reruns_only_that_format(tiny_run: Path) -> None:
    out = _again(tiny_run, "hdf5_chunk_images=16", "-n")
    counts = job_counts(out.stdout)
    assert counts["build_store"] == 2  # tuned hdf5 at both cutoffs, nothing else
    assert "results/stores/cifar32/tuned/hdf5/10" in out.stdout
    assert "stores/cifar32/tuned/png" not in out.stdout
    assert "stores/cifar32/article/hdf5" not in out.stdout
    assert counts["read_many_warm"] == counts["read_many_cold"] == counts["du"] == 2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # only the cold reads use the eviction method
        (
            "cold_cache=fadvise",
            {
                "read_many_cold": C * 2,
                "read_one_cold": C,
                "read_epoch_cold": C * 2,
                "train_cold": C * 2,
                "read_epoch_capped": T,  # it starts from an evicted store too
            },
        ),
        # only the one-image jobs use the ids
        ("single_samples=3", {"write_one": C, "read_one_warm": C, "read_one_cold": C}),
        # every timed job repeats
        (
            "repeats=3",
            {
                "build_store": C * 2,
                "read_many_warm": C * 2,
                "read_many_cold": C * 2,
                "write_one": C,
                "read_one_warm": C,
                "read_one_cold": C,
                "du": C * 2,  # downstream of the rebuilt stores
                "claim_lmdb_map_full": 1,
                "claim_lazy_items": 1,
                "read_epoch_warm": C * 2,  # read the rebuilt largest stores
                "read_epoch_cold": C * 2,
                "train_warm": C * 2,
                "train_cold": C * 2,
                "read_epoch_capped": T,  # reads the rebuilt largest stores
                "build_writers": W,
            },
        ),
    ],
)
def test_measure_keys_rerun_only_their_kind(tiny_run: Path, override: str, expected) -> None:
    counts = job_counts(_again(tiny_run, override, "-n").stdout)
    counts.pop("all", None)
    reports = ("tables", "figures", "provenance")  # they record the config
    assert {k: v for k, v in counts.items() if k not in reports} == expected


def test_dry_run_and_lint_need_no_format_library(tmp_path: Path) -> None:
    """The DAG of every format is built without any format library or matplotlib importable."""
    import os

    blocked = tmp_path / "blocked"
    libs = ("h5py", "lmdb", "PIL", "matplotlib", "pyarrow", "lance", "zarr", "tiledb", "plyvel")
    libs += ("simplejpeg",)  # the decoder: only the jobs that decode import it
    for name in libs:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} blocked')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    code = "import PIL"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode != 0  # it bites
    every = f"formats=[{','.join(FORMATS)}]"
    for extra in (["-n", "--cores", "2", "--config", every, "payload=encoded"], ["--lint"]):
        proc = subprocess.run(
            [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), *extra, "-d", str(tmp_path / "w")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("fmt", "module", "package"), [("hdf5", "h5py", "h5py"), ("lance", "lance", "pylance")]
)
def test_job_without_its_library_fails_with_one_line(
    tmp_path: Path, fmt: str, module: str, package: str
) -> None:
    import os

    blocked = tmp_path / "blocked"
    (blocked / module).mkdir(parents=True)
    (blocked / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError('{module}', name='{module}')\n"
    )
    make_archive(tmp_path / "cifar.tar.gz", per_batch=10)
    target = f"results/timings/write_many/cifar32/tuned/{fmt}/10.json"
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), *tiny_args(tmp_path), target],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(blocked)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    log = (tmp_path / f"results/logs/build_store/cifar32/tuned/{fmt}/10.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"needs the Python package {package}" in errors[0], log
    assert "pip install" in errors[0] and "Traceback" not in log
    assert (tmp_path / "results/data/cifar32/images.npy").exists()  # the DAG itself was built


def test_kill_9_mid_build_then_rerun_rebuilds(tmp_path: Path) -> None:
    """SIGKILL snakemake while a store is half written: no store under the final name; after
    Snakemake's --unlock the rerun rebuilds it, sweeps the temporary and verifies the reads."""
    import os
    import signal
    import time

    make_archive(tmp_path / "cifar.tar.gz", per_batch=400)
    args = tiny_args(
        tmp_path,
        "n_images=4000",
        "cutoffs=[4000]",
        "formats=[png]",
        "modes=[article]",
        "repeats=1",
        "warmup=0",
    )
    proc = subprocess.Popen(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stores = tmp_path / "results" / "stores" / "cifar32" / "article" / "png"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tmps = list(stores.glob(".4000.tmp-*")) if stores.exists() else []
        if tmps and len(list(tmps[0].iterdir())) > 50:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the build never started")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (stores / "4000").exists(), "a half-written store sits under the final name"
    smk(*args, "--unlock")
    smk(*args)
    assert (stores / "4000").is_dir() and not list(stores.glob(".4000.tmp-*"))
    assert len(list((stores / "4000").glob("*.png"))) == 4000
    for cache_state in ("warm", "cold"):
        result = (
            tmp_path / "results" / "timings" / f"read_many_{cache_state}" / "cifar32" / "article"
        )
        assert json.loads((result / "png" / "4000.json").read_text())["verified"]
