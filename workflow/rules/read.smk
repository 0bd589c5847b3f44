# Stage 6 (timed reads): read every store back, warm and cold cache as separate rules.
# Every read is verified against the source pixels and labels outside the timed section.


rule read_many_warm:
    input:
        store="results/stores/{mode}/{fmt}/{n}",
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/read_many_warm/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/read_many_warm/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/read_many_warm/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    threads: job_threads
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        options=store_options,
        repeats=config["repeats"],
        warmup=config["warmup"],
        cold_cache=config["cold_cache"],
        config_hash=measure_hash,
    script:
        "../scripts/step.py"


use rule read_many_warm as read_many_cold with:
    output:
        result="results/timings/read_many_cold/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/read_many_cold/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/read_many_cold/{mode}/{fmt}/{n}.tsv"


rule read_one_warm:
    input:
        stores="results/stores_single/{mode}/{fmt}",
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/read_one_warm/{mode}/{fmt}.json",
    log:
        "results/logs/read_one_warm/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/read_one_warm/{mode}/{fmt}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        options=store_options,
        repeats=config["repeats"],
        warmup=config["warmup"],
        n_images=config["n_images"],
        cold_cache=config["cold_cache"],
        config_hash=measure_hash,
    script:
        "../scripts/step.py"


use rule read_one_warm as read_one_cold with:
    output:
        result="results/timings/read_one_cold/{mode}/{fmt}.json",
    log:
        "results/logs/read_one_cold/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/read_one_cold/{mode}/{fmt}.tsv"
