# Stage 4-5 (timed writes): one store per mode, format and cutoff; one-image stores.
# Each build runs alone (timing_slots) and times only the store's write calls.


rule build_store:
    input:
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        store=directory("results/stores/{mode}/{fmt}/{n}"),
        result="results/timings/write_many/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/build_store/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/build_store/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    threads: job_threads
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        options=store_options,
        repeats=config["repeats"],
        warmup=config["warmup"],
        config_hash=measure_hash,
    script:
        "../scripts/step.py"


rule write_one:
    input:
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        stores=directory("results/stores_single/{mode}/{fmt}"),
        result="results/timings/write_one/{mode}/{fmt}.json",
    log:
        "results/logs/write_one/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/write_one/{mode}/{fmt}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        options=store_options,
        repeats=config["repeats"],
        warmup=config["warmup"],
        n_images=config["n_images"],
        samples=config["single_samples"],
        config_hash=measure_hash,
    script:
        "../scripts/step.py"
