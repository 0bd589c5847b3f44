# Two small untimed experiments for article claims no timing table decides (see
# imgbench/experiments/claim_runs.py). They need the article-mode stores at the largest cutoff.


rule claim_lmdb_map_full:
    input:
        store=lambda w: f"results/stores/{w.data}/article/lmdb/{largest(w)}",
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/claims/{data}/lmdb_map_full.json",
    log:
        "results/logs/claims/{data}/lmdb_map_full.log",
    benchmark:
        "results/benchmarks/claims/{data}/lmdb_map_full.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.experiments.claim_runs:lmdb_map_full"),
        n=largest,
    script:
        "../scripts/step.py"


rule claim_lazy_items:
    input:
        stores=[
            f"results/stores/{{data}}/article/{fmt}/{PLAN.cutoffs[-1]}"
            for fmt in PLAN.lazy_formats
        ],
    output:
        result="results/claims/{data}/lazy_items.json",
    log:
        "results/logs/claims/{data}/lazy_items.log",
    benchmark:
        "results/benchmarks/claims/{data}/lazy_items.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.experiments.claim_runs:lazy_items"),
        formats=PLAN.lazy_formats,
        n=largest,
    script:
        "../scripts/step.py"
