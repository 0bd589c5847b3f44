"""The workflow's planning, code hashes and scheduler patch as plain Python (milliseconds)."""

from __future__ import annotations

import ast
import inspect
import subprocess
from pathlib import Path

import pytest

from imgbench.core.config import normalize
from imgbench.pipeline import codehash, plan, scheduler
from imgbench.pipeline.codehash import CodeHasher
from imgbench.stores import FORMATS, modes, parallel_writes, streams
from tests.conftest import REPO


def _config(**kw) -> dict:
    import yaml

    return normalize({**yaml.safe_load((REPO / "config.yaml").read_text()), **kw})


def test_default_plan_matches_the_article_grid() -> None:
    p = plan.make_plan(_config())
    assert p.source == "cifar" and p.config["n_images"] == plan.ARTICLE_N
    assert p.datasets == {"cifar32": [10, 100, 1000, 10000, 100000]}
    assert len(p.combos) == 7 and ("article", "npy") not in p.combos
    assert len(p.timings) == 7 * 5 * 3 + 7 * 3 and len(p.disk) == 7 * 5
    assert len(p.epochs) == 7 * 2 * 2 * 2 and len(p.training) == 7 * 2 * 2
    tuned_parallel = [f for m, f in p.combos if m == "tuned" and parallel_writes(f)]
    assert len(p.writers) == len(tuned_parallel) * 2
    # capped epochs: the 4 tuned formats x reader processes [1, 2] x advice [default, random]
    assert len(p.capped) == 4 * 2 * 2 and all("/tuned/" in t for t in p.capped)
    assert plan.make_plan(_config(page_cache_cap=0)).capped == []
    assert p.claim_runs == [
        "results/claims/cifar32/lmdb_map_full.json",
        "results/claims/cifar32/lazy_items.json",
    ]
    assert "sizes" not in p.figures and p.disk_note() is None


def test_sizes_scale_cutoffs_and_epochs_stay_at_their_sizes() -> None:
    p = plan.make_plan(_config(image_sizes=[32, 128], epoch_sizes=[32], page_cache_cap=0.5))
    assert p.datasets["cifar128"] == [10, 62, 625, 6250]  # same raw bytes as 32 px
    assert p.n_images["cifar128"] == 6250
    assert all("/cifar32/" in t for t in p.epochs + p.training + p.capped)
    assert p.capped and all("/shuffled_" in t for t in p.capped)
    # raw pixels: (111,110 x 32^2 + 6,947 x 128^2) x 3 bytes per store, 7 (mode, format) pairs
    assert "sizes" in p.figures and "about 4.8 GB" in p.disk_note()


def test_encoded_payload_adds_its_variant_for_formats_that_hold_records() -> None:
    p = plan.make_plan(_config(payload="encoded", access_patterns=["buffered"]))
    assert p.datasets["cifarenc"] == p.cutoffs
    enc = [t for t in p.timings if "/cifarenc/" in t]
    assert enc and all(f"/tuned/{t.split('/')[5]}/" in t for t in enc)
    assert not [t for t in p.epochs if "/cifarenc/" in t]  # epochs read pixels only
    assert all(streams(Path(t).parent.name) for t in p.epochs)  # buffered: streamers only
    assert p.measure_hash("read_warm", "lmdb", "tuned", "cifarenc") != p.measure_hash(
        "read_warm", "lmdb", "tuned", "cifar32"
    )  # the decoder counts for encoded reads only


def test_folder_cutoffs_stop_at_its_image_count() -> None:
    facts = plan.FolderFacts(files=30, signature="s", good=25)
    p = plan.make_plan(_config(images_dir="/x", cutoffs=[10, 100], image_sizes=[32]), facts)
    assert p.config["n_images"] == 25 and p.datasets == {"folder32": [10, 25]}
    with pytest.raises(plan.PlanError, match="images_dir"):
        plan.folder_facts(Path("/no/such/folder"), "fail", Path("/no/scan.json"))


def test_measure_keys_rerun_only_their_kind() -> None:
    p = plan.make_plan(_config())
    q = plan.make_plan(_config(cold_cache="fadvise"))
    for kind in plan.MEASURE_KEYS:
        changed = p.measure_hash(kind, "png", "tuned", "cifar32") != q.measure_hash(
            kind, "png", "tuned", "cifar32"
        )
        assert changed == ("cold" in kind or kind == "epoch_capped"), kind
    assert p.store_options("hdf5", "tuned") and p.store_options("npy", "tuned") == {}


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"formats": ["png", "tiff"]}, f"allowed: {sorted(FORMATS)}"),
        ({"cutoffs": [10, 500_000]}, "config key cutoffs: [500000] exceed n_images"),
        ({"epoch_sizes": [64]}, "config key epoch_sizes: [64] not in image_sizes"),
        ({"formats": ["npy"], "modes": ["article"]}, "no format implements modes"),
    ],
)
def test_cross_check_fails_with_one_clear_line(override: dict, needle: str) -> None:
    with pytest.raises(plan.PlanError) as err:
        plan.make_plan(_config(**override))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert "config key" in str(err.value)


# -- code hashes ---------------------------------------------------------------------------


def _package(root: Path) -> Path:
    """A toy package: fam_a -> mid (function-local) -> leaf (TYPE_CHECKING); fam_b alone."""
    pkg = root / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "leaf.py").write_text("X = 1\n")
    (pkg / "sub" / "mid.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import leaf\n"
    )
    (pkg / "fam_a.py").write_text("def f():\n    from toy.sub.mid import thing\n")
    (pkg / "fam_b.py").write_text("import os\n")
    return pkg


def test_a_changed_leaf_reruns_only_the_families_that_import_it(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    before = CodeHasher(pkg, "toy")
    assert before.closure(["toy.fam_a"]) == {"toy.fam_a", "toy.sub.mid", "toy.leaf"}
    a, b = before.hash("toy.fam_a"), before.hash("toy.fam_b")
    (pkg / "leaf.py").write_text("X = 2\n")
    after = CodeHasher(pkg, "toy")
    assert after.hash("toy.fam_a") != a  # imports the leaf indirectly
    assert after.hash("toy.fam_b") == b  # never imports it
    with pytest.raises(KeyError, match="toy.gone"):
        after.hash("toy.gone")


def test_a_store_change_reruns_only_that_formats_jobs() -> None:
    code = CodeHasher()
    assert "imgbench.stores.lmdb_store" in code.closure(code.format_modules("lmdb"))
    assert "imgbench.stores.lmdb_store" not in code.closure(
        [code.experiments["build_store"], *code.format_modules("png")]
    )
    assert code.experiment_hash("build_store", "lmdb") != code.experiment_hash("build_store", "png")
    # the stores and timers the family imports indirectly count
    assert "imgbench.measure.timing" in code.closure([code.experiments["read_many"]])


def test_the_job_glue_counts_for_every_family_without_tying_them(tmp_path) -> None:
    """pipeline.snake builds every Job: a change to it reruns every timed job, yet it imports
    the experiments package (every family), which must not tie one family to another."""
    import shutil

    pkg = tmp_path / "imgbench"
    shutil.copytree(REPO / "imgbench", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    names = ("build_store", "read_many", "read_capped")
    before = {n: CodeHasher(pkg).experiment_hash(n, "png") for n in names}
    assert len(set(before.values())) == 3  # each family its own hash
    with open(pkg / "pipeline" / "snake.py", "a") as f:
        f.write("# a changed default\n")
    after = {n: CodeHasher(pkg).experiment_hash(n, "png") for n in names}
    assert all(after[n] != before[n] for n in names)


def test_experiment_families_are_read_from_the_registry() -> None:
    from imgbench.experiments import EXPERIMENTS

    assert CodeHasher().experiments == {k: f.__module__ for k, f in EXPERIMENTS.items()}


def test_git_state_is_unknown_outside_git_and_set_once(tmp_path: Path, monkeypatch) -> None:
    assert codehash.git_state(tmp_path) == ("unknown", False)
    run = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*run, "init", "-q"], check=True)
    (tmp_path / "a").write_text("1")
    subprocess.run([*run, "add", "a"], check=True)
    subprocess.run([*run, "commit", "-qm", "a"], check=True)
    commit, dirty = codehash.git_state(tmp_path)
    assert len(commit) == 40 and not dirty
    (tmp_path / "a").write_text("2")
    assert codehash.git_state(tmp_path) == (commit, True)
    monkeypatch.delenv(codehash.ENV_COMMIT, raising=False)
    assert codehash.export_git_state(tmp_path, main_process=True) == (commit, True)
    # a re-parse on a node (no git there) keeps what the main process handed it
    assert codehash.export_git_state(Path("/nonexistent"), main_process=False) == (commit, True)


# -- scheduler -----------------------------------------------------------------------------


def test_the_rate_limiter_is_still_set_in_jobscheduler_init() -> None:
    """The patch sets a private attribute; fail loudly if Snakemake stops setting it."""
    import snakemake
    from snakemake.scheduling.job_scheduler import JobScheduler

    src = inspect.getsource(JobScheduler.__init__)
    tree = ast.parse(inspect.cleandoc("\n" + src) if src[0].isspace() else src)
    assigned = {
        t.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }
    assert scheduler.RATE_LIMITER in assigned, (
        f"Snakemake {snakemake.__version__} no longer sets JobScheduler.{scheduler.RATE_LIMITER}"
    )
    pins = (REPO / "requirements.txt").read_text()
    assert f"snakemake=={scheduler.CHECKED_SNAKEMAKE}" in pins
    assert snakemake.__version__ == scheduler.CHECKED_SNAKEMAKE


def test_quiet_local_scheduler() -> None:
    class Sched:
        job_rate_limiter = object()

    s = Sched()
    assert not scheduler.quiet_local_scheduler(s, local=False) and s.job_rate_limiter
    assert scheduler.quiet_local_scheduler(s, local=True) and s.job_rate_limiter is None
    with pytest.raises(Exception, match="no job_rate_limiter.*9.27.1"):
        scheduler.quiet_local_scheduler(object(), local=True)


def test_missing_timing_cap_stops_the_main_process_only() -> None:
    assert scheduler.timing_slots(100) == 100
    with pytest.raises(Exception, match="timing isolation is off.*timing_slots=100"):
        scheduler.timing_slots(None)
    assert scheduler.timing_slots(None, main_process=False) == 1


def test_modes_of_the_registry_drive_the_combos() -> None:
    p = plan.make_plan(_config(formats=list(FORMATS)))
    assert len(p.combos) == sum(len(modes(f)) for f in FORMATS)


def test_min_images_per_size_gives_a_larger_size_a_store_of_that_many_images() -> None:
    p = plan.make_plan(_config(image_sizes=[32, 256], cutoffs=[100000], min_images_per_size=10000))
    assert p.n_images == {"cifar32": 100000, "cifar256": 10000}
    assert p.datasets["cifar256"] == [1562, 10000] and p.datasets["cifar32"] == [100000]
    assert plan.make_plan(_config(image_sizes=[32, 256])).datasets["cifar256"][-1] == 1562
