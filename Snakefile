# Image storage benchmark: the formats in config `formats` (twelve registered in
# imgbench/stores/__init__.py), the 2019 article's code (PNG, LMDB, HDF5) vs tuned code.
# Entry point: includes only. Stages live in workflow/rules/, logic in the imgbench package.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    data="[a-z0-9_-]+",
    mode="article|tuned",
    fmt="[a-z0-9_]+",
    n=r"\d+",
    cache="warm|cold",
    pattern="sequential|shuffled|random|buffered",
    readers=r"\d+",
    writers=r"\d+",
    kind="process|thread",
    compute=r"[0-9.]+",
    advice="default|random",
    depth=r"\d+",
    lat=r"[0-9.]+",
    bw=r"[0-9.]+",
    rif=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/store.smk"
include: "workflow/rules/read.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/s3.smk"


# Builds of many files that store jobs no longer needed are deleted when the run ends, not
# by the jobs: on a file system like this machine's, a mass delete slows the timed builds
# that follow it for minutes (imgbench.core.atomic.holds_many_files).
onsuccess:
    scheduler.sweep_deferred_builds()


onerror:
    scheduler.sweep_deferred_builds()


# Tiny untimed steps stay on the submitting host under a cluster executor.
localrules:
    all,
    download,
    tables,
    figures,
    provenance,


rule all:
    default_target: True
    input:
        tables=list(PLAN.tables.values()),
        figures=list(PLAN.figures.values()),
        provenance="results/provenance.json",
