# Stage 7-9 (untimed): disk use, device limits, tables, figures, provenance; publish.
import sys

from imgbench.pipeline.publish import publication_title, run_command


rule du:
    input:
        store="results/stores/{data}/{mode}/{fmt}/{n}",
    output:
        result="results/du/{data}/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/du/{data}/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/du/{data}/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.measure.du:record"),
    script:
        "../scripts/step.py"


# Sequential bandwidth and 4 KiB random-read IOPS of the file system under results/, with
# O_DIRECT: the limits cold reads are read against. A measurement, so it runs alone.
rule device:
    output:
        device="results/device.json",
    log:
        "results/logs/device.log",
    benchmark:
        "results/benchmarks/device.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **step("imgbench.measure.device:record"),
        directory=lambda wildcards, output: Path(output.device).parent / "device-probe",
        file_mib=config["device_probe_mib"],
        seconds=config["device_probe_seconds"],
    script:
        "../scripts/step.py"


# The report (snakemake --report): the answer (summary.md), the claims and the reproduction
# first, every other table after; each table and figure has a caption in workflow/report/.
TABLE_CATEGORY = {"markdown": "Summary", "claims": "Summary", "reproduction": "Summary"}


rule tables:
    input:
        timings=PLAN.timings,
        du=PLAN.disk,
        claim_runs=PLAN.claim_runs,
        epochs=PLAN.epochs,
        training=PLAN.training,
        writer_builds=PLAN.writers,
        capped_runs=PLAN.capped,
        s3_runs=[
            t for k in ("upload", "read", "epochs", "training") for t in PLAN.s3[k]
        ],
        s3_probes=PLAN.s3["probes"],
        device=rules.device.output.device,
    output:
        **{
            k: report(
                v,
                caption=f"../report/table_{k}.rst",
                category=TABLE_CATEGORY.get(k, "Tables"),
            )
            for k, v in PLAN.tables.items()
        },
    log:
        "results/logs/tables.log",
    benchmark:
        "results/benchmarks/tables.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.report.write:write_tables"),
    script:
        "../scripts/step.py"


rule figures:
    input:
        summary_csv=PLAN.tables["summary"],
        disk_csv=PLAN.tables["disk"],
        access_csv=PLAN.tables["access"],
        au_csv=PLAN.tables["au"],
    output:
        **{
            k: report(v, caption=f"../report/{k}.rst", category="Figures")
            for k, v in PLAN.figures.items()
        },
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.report.figures:write_figures"),
        dpi=config["figure_dpi"],
    script:
        "../scripts/step.py"


rule provenance:
    input:
        **({"scan": "results/data/folder/scan.json"} if PLAN.source == "folder" else {}),
        device=rules.device.output.device,
        s3_probes=PLAN.s3["probes"],
    output:
        provenance=report(
            "results/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        "results/logs/provenance.log",
    benchmark:
        "results/benchmarks/provenance.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.report.provenance:record"),
        config=PLAN.measured_config,
        results_dir=lambda wildcards, output: Path(output.provenance).parent,
        repo_dir=workflow.basedir,
    script:
        "../scripts/step.py"


# A finished run copied into <publish_dir>/<machine>/ (imgbench.pipeline.publish): the
# tables, summary.md, figures and provenance.json, and a RUN.md; not part of `all`. Refuses
# (one line) a run whose rows come from more than one commit or a tree with changes.
# Publish again after a change to docs/results: snakemake ... --forcerun publish.
localrules:
    publish,


rule publish:
    input:
        tables=list(PLAN.tables.values()),
        figures=list(PLAN.figures.values()),
        provenance=rules.provenance.output.provenance,
    output:
        published="results/published.json",
    log:
        "results/logs/publish.log",
    benchmark:
        "results/benchmarks/publish.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.pipeline.publish:publish"),
        dest_root=Path(workflow.basedir) / config["publish_dir"],
        command=run_command(sys.argv),
        config=PLAN.measured_config,
        logs="results/logs",
        benchmarks="results/benchmarks",
        title=publication_title(config["publish_dir"]),
        snakemake_logs=".snakemake/log",
    script:
        "../scripts/step.py"
