# Stage 7-9 (untimed): disk use, tables, figures, provenance.


rule du:
    input:
        store="results/stores/{mode}/{fmt}/{n}",
    output:
        result="results/du/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/du/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/du/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    script:
        "../scripts/step.py"


rule tables:
    input:
        timings=TIMINGS,
        disk=DISK,
    output:
        **{k: report(v, category="Tables") for k, v in TABLES.items()},
    log:
        "results/logs/tables.log",
    benchmark:
        "results/benchmarks/tables.tsv"
    conda:
        "../../envs/bench.yaml"
    script:
        "../scripts/step.py"


rule figures:
    input:
        summary=TABLES["summary"],
        disk=TABLES["disk"],
    output:
        **{
            k: report(v, caption=f"../report/{k}.rst", category="Figures")
            for k, v in FIGURES.items()
        },
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    conda:
        "../../envs/bench.yaml"
    params:
        dpi=config["figure_dpi"],
    script:
        "../scripts/step.py"


rule provenance:
    output:
        provenance="results/provenance.json",
    log:
        "results/logs/provenance.log",
    benchmark:
        "results/benchmarks/provenance.tsv"
    conda:
        "../../envs/bench.yaml"
    params:
        config=MEASURED_CONFIG,
        results_dir=lambda wildcards, output: Path(output.provenance).parent,
        repo_dir=workflow.basedir,
    script:
        "../scripts/step.py"
