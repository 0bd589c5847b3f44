# Helpers for the stage files (config validation, the format x mode x cutoff grid,
# per-job parameters, the timing-isolation resource). Functions only, no rule definitions.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir)))
from imgbench import stores  # noqa: E402
from imgbench.config import config_hash, normalize  # noqa: E402

# --config values arrive as strings ("cutoffs=[10,100]" -> ["10", "100"]): fix types first.
config.update(normalize(config))
validate(config, schema="../schemas/config.schema.yaml")


def _check_config():
    """Cross-key checks a JSON schema cannot express; stop before any job starts."""
    unknown = [f for f in config["formats"] if f not in stores.FORMATS]
    if unknown:
        raise WorkflowError(
            f"config key formats: unknown {unknown}; allowed: {sorted(stores.FORMATS)}"
        )
    too_big = [c for c in config["cutoffs"] if c > config["n_images"]]
    if too_big:
        raise WorkflowError(
            f"config key cutoffs: {too_big} exceed n_images={config['n_images']}; "
            "lower the cutoffs or raise n_images"
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
CUTOFFS = sorted(config["cutoffs"])

# Timing isolation (see profiles/default/config.yaml): timed jobs claim every unit.
_slots = workflow.global_resources.get("timing_slots")
TIMING_SLOTS = int(getattr(_slots, "value", _slots) or 1)
if _slots is None:
    logger.warning(
        "timing_slots is not capped (no --workflow-profile profiles/default?): timed jobs "
        "may run beside other jobs"
    )

# The config behind the numbers (figure settings only change how they are drawn).
MEASURED_CONFIG = {k: v for k, v in config.items() if not k.startswith("figure_")}

# Config keys that change what a timed job measures (figure settings are not among them).
MEASURE_KEYS = [
    "cifar_md5",
    "n_images",
    "repeats",
    "warmup",
    "single_samples",
    "cold_cache",
]


def store_options(wildcards):
    """Flat config keys the store class reads (changing one reruns only that format)."""
    cls = stores.store_class(wildcards.fmt, wildcards.mode)
    return {k: config[k] for k in cls.OPTIONS}


def measure_hash(wildcards):
    """Hash of everything that defines one timed measurement; stamped on every row."""
    keys = {k: config[k] for k in MEASURE_KEYS}
    return config_hash(
        {
            **keys,
            **store_options(wildcards),
            "format": wildcards.fmt,
            "mode": wildcards.mode,
        }
    )


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


def many_targets(pattern):
    return [pattern.format(mode=m, fmt=f, n=n) for m, f in COMBOS for n in CUTOFFS]


def single_targets(pattern):
    return [pattern.format(mode=m, fmt=f) for m, f in COMBOS]


TIMINGS = (
    many_targets("results/timings/write_many/{mode}/{fmt}/{n}.json")
    + many_targets("results/timings/read_many_warm/{mode}/{fmt}/{n}.json")
    + many_targets("results/timings/read_many_cold/{mode}/{fmt}/{n}.json")
    + single_targets("results/timings/write_one/{mode}/{fmt}.json")
    + single_targets("results/timings/read_one_warm/{mode}/{fmt}.json")
    + single_targets("results/timings/read_one_cold/{mode}/{fmt}.json")
)
DISK = many_targets("results/du/{mode}/{fmt}/{n}.json")
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
}
TABLES = {
    "samples": "results/tables/samples.csv",
    "summary": "results/tables/summary.csv",
    "disk": "results/tables/disk.csv",
    "article": "results/tables/article_comparison.csv",
    "markdown": "results/tables/summary.md",
}
