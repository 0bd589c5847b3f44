# Validation and the calls: what the workflow runs is planned in imgbench.pipeline.plan (plain
# Python, unit-tested); this file turns the plan into rule inputs, params and targets.
# Imports are light on purpose: no format library, no pandas or matplotlib, so a dry run and
# the lint need none of them (tests/test_workflow.py proves it).
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from imgbench.core.config import normalize
from imgbench.core.errors import BenchError
from imgbench.data import sizes
from imgbench.pipeline import codehash, plan, scheduler

# --config values arrive as strings ("cutoffs=[10,100]" -> ["10", "100"]): fix types first.
config.update(normalize(config))
validate(config, schema="../schemas/config.schema.yaml")
try:  # a folder's names only, walked once; the scan rule reads its bytes
    _scan, _folder = Path("results/data/folder/scan.json"), None
    if config["images_dir"]:
        _folder = plan.folder_facts(config["images_dir"], config["bad_images"], _scan)
    PLAN = plan.make_plan(config, _folder)
    _cap = workflow.global_resources.get("timing_slots")
    TIMING_SLOTS = scheduler.timing_slots(_cap, workflow.is_main_process)
except BenchError as exc:
    raise WorkflowError(str(exc))
config["n_images"] = PLAN.config["n_images"]
# A sweep can fill a disk: say what its stores take before any job starts.
if workflow.is_main_process and PLAN.disk_note():
    print(PLAN.disk_note(), file=sys.stderr)

# Which code a result came from. The commit and dirty flag are computed once, here in the
# main process, and travel as environment variables, not params: a changed param reruns its
# job, and the commit changes with every commit. Snakemake 9.27 runs a local script job in a
# child of this process (it inherits os.environ); the SLURM plugin submits with `sbatch
# --export=ALL`, and `envvars:` below declares them for executors that pass only declared
# variables; the job's re-parse on a node keeps what it inherited (no git needed there).
# The per-family code hash IS a param: a code change must rerun the jobs whose code changed.
codehash.export_git_state(Path(workflow.basedir), workflow.is_main_process)
CODE = codehash.CodeHasher()


envvars:
    codehash.ENV_COMMIT,
    codehash.ENV_DIRTY,


def experiment(name):
    """Params naming a timed experiment, with the code hash of its family and format."""
    code = lambda w: CODE.experiment_hash(name, w.get("fmt"))
    return {"experiment": name, "code_hash": code}


def step(target):
    """Params naming an untimed step ("module:function"), with its code's hash."""
    return {"step": target, "code_hash": CODE.step_hash(target)}


def data_source(wildcards):
    """Decoded pixels (images.npy) or encoded files (blobs.bin, offsets.npy beside it)."""
    d = f"results/data/{wildcards.data}"
    images = "blobs.bin" if sizes.is_encoded(wildcards.data) else "images.npy"
    return {"images": f"{d}/{images}", "labels": f"{d}/labels.npy"}


def largest(w):
    return PLAN.largest(w.data)


def largest_store(w):
    return f"results/stores/{w.data}/{w.mode}/{w.fmt}/{PLAN.largest(w.data)}"


def n_images(w):
    return PLAN.n_images[w.data]


def store_options(w):
    return PLAN.store_options(w.fmt, w.mode)


def decoder(w):
    return PLAN.decoder(w.data)


def measure_hash(kind):
    return lambda w: PLAN.measure_hash(kind, w.fmt, w.mode, w.data)


def epoch_params(kind):
    return {**PLAN.epoch_params(), "config_hash": measure_hash(kind)}


def job_threads(wildcards):
    """Tuned jobs may use every core (they run alone); article code is single-threaded."""
    if wildcards.mode != "tuned":
        return 1
    if config["tuned_threads"]:
        return config["tuned_threads"]
    try:
        return workflow.cores  # set by --cores; capped to it anyway
    except WorkflowError:  # e.g. a cluster executor without --cores
        return os.cpu_count() or 1


def build_threads(wildcards):
    """Tuned builds use the largest writer count (capped to --cores by Snakemake)."""
    return max(config["writers"], default=1) if wildcards.mode == "tuned" else 1


# Object storage (workflow/rules/s3.smk)
def s3_params():
    """Where the objects are: the endpoint (if named), the bucket."""
    return {"s3_endpoint": config["s3_endpoint"], "s3_bucket": config["s3_bucket"]}


def s3_store(w):
    """The tuned local store that is uploaded (built by build_store)."""
    return f"results/stores/{w.data}/{w.mode}/{w.fmt}/{w.n}"


def s3_upload_result(w):
    return f"results/timings/s3_upload/{w.data}/{w.mode}/{w.fmt}/{w.n}/{w.lat}ms_{w.bw}mbps.json"


def s3_name(w):
    """How messages name the job's objects (never the endpoint's address)."""
    return f"s3://{config['s3_bucket']}/{w.data}/{w.fmt}/{w.n}/{w.lat}ms_{w.bw}mbps"


# Keep Snakemake's scheduler asleep while a job is timed (imgbench/pipeline/scheduler.py).
onstart:
    try:
        if scheduler.quiet_local_scheduler(workflow.scheduler, workflow.local_exec):
            print("local run: Snakemake's job rate limiter off", file=sys.stderr)
    except BenchError as exc:
        raise WorkflowError(str(exc))
