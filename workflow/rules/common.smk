# Helpers for the stage files (config validation, the format x mode x cutoff grid,
# per-job parameters, the timing-isolation resource). Functions only, no rule definitions.
# Imports here are light on purpose: no format library, no pandas or matplotlib, so a dry
# run and the lint need none of them (tests/test_workflow.py proves it).
import itertools
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from imgbench.data import folder, sizes

from imgbench import stores
from imgbench.core.atomic import sweep_deferred
from imgbench.core.config import config_hash, normalize
from imgbench.core.errors import BenchError

# --config values arrive as strings ("cutoffs=[10,100]" -> ["10", "100"]): fix types first.
config.update(normalize(config))
validate(config, schema="../schemas/config.schema.yaml")

# The data source: CIFAR-10 (the article's) or your own folder (images_dir). The folder's
# names are listed here (its count is the default n_images); its bytes are read by the scan.
SOURCE = "folder" if config["images_dir"] else "cifar"
ARTICLE_N = 100_000  # the article's 50,000 CIFAR training images, doubled
if SOURCE == "folder":
    try:
        _listed = folder.listing(config["images_dir"])[1]  # names only, walked once
        FOLDER_FILES = len(_listed)
        FOLDER_SIGNATURE = folder.signature(config["images_dir"], _listed)
    except BenchError as exc:
        raise WorkflowError(f"config key images_dir: {exc}")
    # bad_images: skip: a scan that skipped files left their count for this parse
    FOLDER_GOOD = folder.good_count(
        "results/data/folder/scan.json", FOLDER_SIGNATURE, config["bad_images"]
    )
config["n_images"] = config["n_images"] or (
    (FOLDER_GOOD or FOLDER_FILES) if SOURCE == "folder" else ARTICLE_N
)


def _check_config():
    """Cross-key checks a JSON schema cannot express; stop before any job starts."""
    unknown = [f for f in config["formats"] if f not in stores.FORMATS]
    if unknown:
        raise WorkflowError(
            f"config key formats: unknown {unknown}; allowed: {sorted(stores.FORMATS)}"
        )
    too_big = [c for c in config["cutoffs"] if c > config["n_images"]]
    if too_big and SOURCE == "cifar":
        raise WorkflowError(
            f"config key cutoffs: {too_big} exceed n_images={config['n_images']}; "
            "lower the cutoffs or raise n_images"
        )
    stray = sorted(set(config["epoch_sizes"] or []) - set(config["image_sizes"]))
    if stray:
        raise WorkflowError(
            f"config key epoch_sizes: {stray} not in image_sizes {config['image_sizes']}; "
            "add them to image_sizes or drop them from epoch_sizes"
        )
    if not COMBOS:
        raise WorkflowError(
            f"config keys formats/modes: no format implements modes {config['modes']}"
        )


# (mode, format) pairs that exist: e.g. npy has only a tuned mode.
COMBOS = [
    (m, f)
    for m in config["modes"]
    for f in config["formats"]
    if f in stores.FORMATS and m in stores.modes(f)
]
_check_config()
# A folder's cutoffs stop at its n_images, which is always the largest.
CUTOFFS = sorted(
    config["cutoffs"]
    if SOURCE == "cifar"
    else {c for c in config["cutoffs"] if c < config["n_images"]} | {config["n_images"]}
)
# The data variant in every target path: results/<kind>/<data>/<mode>/<fmt>/<n>.
# "cifar<size>" = CIFAR-10 resized to size x size px (32: the article's), decoded pixels.
# Each size holds the same raw bytes as the 32-px run at the same cutoff position: cutoffs
# scaled by 32^2 / size^2, at least 10 images; cutoffs that collide after scaling merge.
# "folder<size>" = your images_dir, fitted to size x size (the same cutoffs at every size).
# "<source>enc" (payload: encoded) = the encoded files, stored as they are.
DATA = "cifar32"  # the article's data: its claims and reproduction are judged on it
_scale = sizes.scaled if SOURCE == "cifar" else (lambda n, s: n)
DATASETS = {
    sizes.data_key(s, SOURCE): sorted({_scale(c, s) for c in CUTOFFS})
    for s in sorted(config["image_sizes"])
}
N_IMAGES = {
    sizes.data_key(s, SOURCE): _scale(config["n_images"], s)
    for s in config["image_sizes"]
}
# Epochs and training read the largest store of these sizes only (null: every image size):
# the full sweep reads at 32 px, since epochs at four sizes would take about four times its
# hours, while its stores and whole-store reads cover every size.
EPOCH_SIZES = set(
    config["image_sizes"] if config["epoch_sizes"] is None else config["epoch_sizes"]
)
ENCODED = sizes.encoded_key(SOURCE) if config["payload"] == "encoded" else None
if ENCODED:
    DATASETS[ENCODED] = CUTOFFS
    N_IMAGES[ENCODED] = config["n_images"]
# (mode, format) pairs of encoded data: tuned stores of formats that hold variable records.
ENCODED_COMBOS = [(m, f) for m, f in COMBOS if m == "tuned" and stores.encoded(f)]


def data_source(wildcards):
    """The source files of a data variant: decoded pixels (images.npy) or encoded files
    (blobs.bin, with offsets.npy beside it)."""
    d = f"results/data/{wildcards.data}"
    images = "blobs.bin" if sizes.is_encoded(wildcards.data) else "images.npy"
    return {"images": f"{d}/{images}", "labels": f"{d}/labels.npy"}


def largest(wildcards):
    """The largest cutoff of this data variant (epochs, training, claims read that store)."""
    return DATASETS[wildcards.data][-1]


def largest_store(wildcards):
    return f"results/stores/{wildcards.data}/{wildcards.mode}/{wildcards.fmt}/{largest(wildcards)}"


def n_images(wildcards):
    """Images in this data variant (the single-image ids are drawn from them)."""
    return N_IMAGES[wildcards.data]


# A sweep can fill a disk: say what the stores will take before any job starts.
PIXEL_DATASETS = {d: c for d, c in DATASETS.items() if not sizes.is_encoded(d)}
if workflow.is_main_process and len(PIXEL_DATASETS) > 1:
    _est = sizes.disk_estimate(PIXEL_DATASETS, len(COMBOS))
    print(
        f"image-size sweep {sorted(config['image_sizes'])}: stores take about "
        f"{_est / 1e9:.1f} GB (raw pixels of every store; files and padding add more)",
        file=sys.stderr,
    )

# Timing isolation (see profiles/default/config.yaml): every rule states its timing_slots,
# timed jobs claim the whole cap, so a timed job never runs beside any other job. A cap
# that is missing (e.g. replaced by a command-line --resources) would switch that off
# silently: stop before any job instead. (A job run by an executor, e.g. inside a SLURM job,
# is not scheduled there: only the main process checks.)
_slots = workflow.global_resources.get("timing_slots")
TIMING_SLOTS = getattr(_slots, "value", _slots)
if workflow.is_main_process and (not isinstance(TIMING_SLOTS, int) or TIMING_SLOTS < 2):
    raise WorkflowError(
        f"timing isolation is off: the timing_slots cap is {TIMING_SLOTS!r} (a command-line "
        "--resources replaces the profile's, and --workflow-profile none drops it); add "
        "timing_slots=100 to your --resources, or use the profile: --workflow-profile "
        "profiles/default"
    )
TIMING_SLOTS = TIMING_SLOTS if isinstance(TIMING_SLOTS, int) else 1


# Keep Snakemake's scheduler asleep while a job is timed. Its job rate limiter (100 jobs per
# 1 s by default) arms a 1-s timer on every scheduling pass, so each finished job adds a
# timer chain that wakes the scheduler once a second for the rest of the run: after 60 jobs
# of the full sweep the snakemake process took 30-42 % of a core beside the timed job, and
# 2-reader epochs got 1.33 of the 2 cores (1.9 with the same job alone). A long span in the
# profile stops the wake-ups but its timers (non-daemon threads) then hold the finished run
# open. A local run submits nowhere, so it needs no limiter; a cluster keeps its limiter
# (it paces submissions, and the timed jobs run on other nodes).
onstart:
    if workflow.local_exec:
        if not hasattr(workflow.scheduler, "job_rate_limiter"):
            raise WorkflowError(
                "this Snakemake has no JobScheduler.job_rate_limiter: check that its "
                "scheduler no longer wakes during jobs, then update workflow/rules/common.smk"
            )
        workflow.scheduler.job_rate_limiter = None
        print(
            "local run: Snakemake's job rate limiter off (no timer wake-ups)",
            file=sys.stderr,
        )


# The config behind the numbers (figure settings only change how they are drawn).
MEASURED_CONFIG = {k: v for k, v in config.items() if not k.startswith("figure_")}

# Config keys that change what each kind of timed job measures: changing one reruns only
# the jobs whose kind lists it (store options are added per format and mode).
_DATA_KEYS = [
    "cifar_md5",
    "n_images",
    "resize_filter",
    "images_dir",
    "bad_images",
    "images_fit",
]
_EPOCH_KEYS = ["epoch_repeats", "epoch_warmup", "batch_size", "seed"]
_KINDS = {
    "build": ["repeats", "warmup"],
    "writers": ["repeats", "warmup"],
    "read": ["repeats", "warmup"],
    "one_write": ["repeats", "warmup", "single_samples"],
    "one_read": ["repeats", "warmup", "single_samples"],
    "epoch": [*_EPOCH_KEYS, "random_samples", "shuffle_buffer"],
    "train": [*_EPOCH_KEYS, "au_batches", "prefetch"],
}
# Reads come warm and cold; only the cold ones depend on how the store is evicted.
_KINDS["epoch_capped"] = [
    *_KINDS["epoch"],
    "cold_cache",
    "page_cache_cap",
    "capped_epochs",
]
_CACHED = ("read", "one_read", "epoch", "train")
MEASURE_KEYS = {
    **{k: [*_DATA_KEYS, *v] for k, v in _KINDS.items() if k not in _CACHED},
    **{f"{k}_warm": [*_DATA_KEYS, *_KINDS[k]] for k in _CACHED},
    **{f"{k}_cold": [*_DATA_KEYS, *_KINDS[k], "cold_cache"] for k in _CACHED},
}


def store_options(wildcards):
    """Flat config keys the store class reads (changing one reruns only that format)."""
    return {k: config[k] for k in stores.options(wildcards.fmt, wildcards.mode)}


def measure_hash(kind):
    """Hash of everything that defines one kind of timed measurement; stamped on every row."""

    def fn(wildcards):
        keys = {k: config[k] for k in MEASURE_KEYS[kind]}
        if sizes.is_encoded(wildcards.data) and kind.startswith("read"):
            keys["decoder"] = config["decoder"]  # only encoded reads decode
        ident = {"format": wildcards.fmt, "mode": wildcards.mode, "kind": kind}
        return config_hash({**keys, **store_options(wildcards), **ident})

    return fn


def decoder(wildcards):
    """The decoder of an encoded read (None for pixel data: changing it reruns nothing)."""
    return config["decoder"] if sizes.is_encoded(wildcards.data) else None


def measure_params(kind):
    """The config keys of one kind of job, as rule params (Snakemake reruns on change)."""
    return {k: config[k] for k in MEASURE_KEYS[kind] if k not in _DATA_KEYS}


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


def targets(path, n=None, encoded=False, epochs=False, **axes):
    """*path* for every data variant, (mode, format) pair and combination of the *axes*
    values; *n*: "cutoffs" (each variant's cutoffs), "largest" (its largest) or None.
    Encoded data only where *encoded* (its stores are built, read whole and measured);
    only the sizes in epoch_sizes where *epochs*.
    """
    out = []
    for data, cuts in DATASETS.items():
        if sizes.is_encoded(data) and not encoded:
            continue
        if epochs and sizes.size_of(data) not in EPOCH_SIZES:
            continue
        ns = {None: [None], "cutoffs": cuts, "largest": cuts[-1:]}[n]
        for m, f in ENCODED_COMBOS if sizes.is_encoded(data) else COMBOS:
            for k in ns:
                for values in itertools.product(*axes.values()):
                    out.append(
                        path.format(
                            data=data, mode=m, fmt=f, n=k, **dict(zip(axes, values))
                        )
                    )
    return out


def many_targets(path):
    return targets(path, n="cutoffs", encoded=True)


def single_targets(path):
    return targets(path)


def epoch_params(kind):
    """Params of the epoch rules: their own repeat counts, batch size and seed."""
    return {
        "repeats": config["epoch_repeats"],
        "warmup": config["epoch_warmup"],
        "batch_size": config["batch_size"],
        "random_samples": config["random_samples"],
        "shuffle_buffer": config["shuffle_buffer"],
        "seed": config["seed"],
        "config_hash": measure_hash(kind),
    }


_READERS = {"readers": config["readers"], "kind": config["reader_kind"]}
# The buffered pattern (WebDataset streaming) only where the format streams shards.
EPOCHS = [
    t
    for t in targets(
        "results/timings/read_epoch_{cache}/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.json",
        cache=["warm", "cold"],
        pattern=config["access_patterns"],
        epochs=True,
        **_READERS,
    )
    if not Path(t).name.startswith("buffered_") or stores.streams(Path(t).parent.name)
]
CAPPED = (
    targets(
        "results/timings/read_epoch_capped/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.json",
        pattern=[
            "shuffled"
        ],  # MLPerf Storage's case: shuffled epochs, one after another
        epochs=True,
        **_READERS,
    )
    if config["page_cache_cap"]
    else []
)
TRAINING = targets(
    "results/timings/train_{cache}/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.json",
    cache=["warm", "cold"],
    compute=config["computation_time"],
    epochs=True,
    **_READERS,
)
# Writer scaling: tuned formats that can use several writer processes, largest store only.
WRITERS = [
    t
    for t in targets(
        "results/timings/write_writers/{data}/{mode}/{fmt}/{n}_w{writers}.json",
        n="largest",
        writers=config["writers"],
    )
    if Path(t).parts[4] == "tuned" and stores.parallel_writes(Path(t).parent.name)
]


TIMINGS = (
    many_targets("results/timings/write_many/{data}/{mode}/{fmt}/{n}.json")
    + many_targets("results/timings/read_many_warm/{data}/{mode}/{fmt}/{n}.json")
    + many_targets("results/timings/read_many_cold/{data}/{mode}/{fmt}/{n}.json")
    + single_targets("results/timings/write_one/{data}/{mode}/{fmt}.json")
    + single_targets("results/timings/read_one_warm/{data}/{mode}/{fmt}.json")
    + single_targets("results/timings/read_one_cold/{data}/{mode}/{fmt}.json")
)
DISK = many_targets("results/du/{data}/{mode}/{fmt}/{n}.json")
# The claim experiments run where their article-mode stores are built.
LAZY_FORMATS = [f for f in ("lmdb", "hdf5") if ("article", f) in COMBOS]
CLAIM_RUNS = (
    (
        [f"results/claims/{DATA}/lmdb_map_full.json"]
        if ("article", "lmdb") in COMBOS
        else []
    )
    + ([f"results/claims/{DATA}/lazy_items.json"] if LAZY_FORMATS else [])
    if DATA in DATASETS
    else []
)
FIGURES = {
    name: f"results/figures/{name}.{config['figure_format']}"
    for name in [
        "store_linear",
        "store_log",
        "read_linear",
        "read_log",
        "store_read",
        "cold_warm",
        "disk",
        "single",
    ]
    + (["access"] if config["access_patterns"] else [])
    + (["au"] if config["computation_time"] else [])
    + (["sizes"] if len(PIXEL_DATASETS) > 1 else [])
}
TABLES = {
    "samples": "results/tables/samples.csv",
    "summary": "results/tables/summary.csv",
    "disk": "results/tables/disk.csv",
    "article": "results/tables/article_comparison.csv",
    "claims": "results/tables/claims.csv",
    "access": "results/tables/access.csv",
    "au": "results/tables/au.csv",
    "writers": "results/tables/writers.csv",
    "capped": "results/tables/capped.csv",
    "payload": "results/tables/payload.csv",
    "reproduction": "results/tables/reproduction.csv",
    "markdown": "results/tables/summary.md",
}


def sweep_deferred_builds():
    """Delete the many-file builds the store jobs left for the end of the run (their
    deletes would have slowed the next job's timed builds: imgbench.core.atomic)."""
    count, seconds = sweep_deferred(Path("results"))
    if count:
        print(f"deleted {count} deferred builds in {seconds:.1f} s", file=sys.stderr)
