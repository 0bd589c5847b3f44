# Stage 4-5 (timed writes): one store per data, mode, format and cutoff; one-image stores.
# Each build runs alone (timing_slots) and times only the store's write calls.


rule build_store:
    input:
        unpack(data_source),
    output:
        store=directory("results/stores/{data}/{mode}/{fmt}/{n}"),
        result="results/timings/write_many/{data}/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/build_store/{data}/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/build_store/{data}/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    threads: build_threads
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("build"),
        **experiment("build_store"),
        options=store_options,
        config_hash=measure_hash("build"),
    script:
        "../scripts/step.py"


# Writer scaling: the same timed build with {writers} processes (more than --cores allowed),
# verified untimed. The store is kept (results/stores_writers/, read by nothing, replaced by a
# rerun): deleting it would put the next timed job in the wake of a mass delete (a 2-writer
# PNG build took 55.6 s right after one, 7.7 s without).
rule build_writers:
    input:
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/write_writers/{data}/{mode}/{fmt}/{n}_w{writers}.json",
    log:
        "results/logs/build_writers/{data}/{mode}/{fmt}/{n}_w{writers}.log",
    benchmark:
        "results/benchmarks/build_writers/{data}/{mode}/{fmt}/{n}_w{writers}.tsv"
    conda:
        "../../envs/bench.yaml"
    threads: lambda wildcards: int(wildcards.writers)
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("writers"),
        **experiment("build_writers"),
        store=lambda wildcards: (
            f"results/stores_writers/{wildcards.data}/{wildcards.mode}/{wildcards.fmt}/"
            f"{wildcards.n}_w{wildcards.writers}"
        ),
        writers=lambda wildcards: int(wildcards.writers),
        options=store_options,
        config_hash=measure_hash("writers"),
    script:
        "../scripts/step.py"


rule write_one:
    input:
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        store=directory("results/stores_single/{data}/{mode}/{fmt}"),
        result="results/timings/write_one/{data}/{mode}/{fmt}.json",
    log:
        "results/logs/write_one/{data}/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/write_one/{data}/{mode}/{fmt}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("one_write"),
        **experiment("write_one"),
        options=store_options,
        n_images=n_images,
        config_hash=measure_hash("one_write"),
    script:
        "../scripts/step.py"
