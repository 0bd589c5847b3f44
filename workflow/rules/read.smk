# Stage 6 (timed reads): read every store back, warm and cold cache as separate rules that
# share one definition (the cold rule overrides only its outputs and its cache params).
# Every read is verified against the source pixels and labels outside the timed section.
# Encoded data (payload: encoded) is read whole three ways: bytes only, bytes + the chosen
# decoder (the row's time), bytes + Pillow; each verified (imgbench/experiments/reads.py).


rule read_many_warm:
    input:
        unpack(data_source),
        store="results/stores/{data}/{mode}/{fmt}/{n}",
    output:
        result="results/timings/read_many_warm/{data}/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/read_many_warm/{data}/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/read_many_warm/{data}/{mode}/{fmt}/{n}.tsv"
    conda:
        "../../envs/bench.yaml"
    threads: job_threads
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("read_warm"),
        **experiment("read_many"),
        cache="warm",
        options=store_options,
        decoder=decoder,
        config_hash=measure_hash("read_warm"),
    script:
        "../scripts/step.py"


use rule read_many_warm as read_many_cold with:
    output:
        result="results/timings/read_many_cold/{data}/{mode}/{fmt}/{n}.json",
    log:
        "results/logs/read_many_cold/{data}/{mode}/{fmt}/{n}.log",
    benchmark:
        "results/benchmarks/read_many_cold/{data}/{mode}/{fmt}/{n}.tsv"
    params:
        **PLAN.measure_params("read_cold"),
        cache="cold",
        config_hash=measure_hash("read_cold"),


rule read_one_warm:
    input:
        store="results/stores_single/{data}/{mode}/{fmt}",
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/read_one_warm/{data}/{mode}/{fmt}.json",
    log:
        "results/logs/read_one_warm/{data}/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/read_one_warm/{data}/{mode}/{fmt}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("one_read_warm"),
        **experiment("read_one"),
        cache="warm",
        options=store_options,
        n_images=n_images,
        config_hash=measure_hash("one_read_warm"),
    script:
        "../scripts/step.py"


use rule read_one_warm as read_one_cold with:
    output:
        result="results/timings/read_one_cold/{data}/{mode}/{fmt}.json",
    log:
        "results/logs/read_one_cold/{data}/{mode}/{fmt}.log",
    benchmark:
        "results/benchmarks/read_one_cold/{data}/{mode}/{fmt}.tsv"
    params:
        **PLAN.measure_params("one_read_cold"),
        cache="cold",
        config_hash=measure_hash("one_read_cold"),


# Epochs as training reads them, on the largest store: mini-batches in an order, spread over
# several readers (imgbench/experiments/access.py). Warm and cold share one definition.
rule read_epoch_warm:
    input:
        store=largest_store,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/read_epoch_warm/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.json",
    log:
        "results/logs/read_epoch_warm/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.log",
    benchmark:
        "results/benchmarks/read_epoch_warm/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **epoch_params("epoch_warm"),
        **experiment("read_epoch"),
        cache="warm",
        options=store_options,
        n=largest,
    script:
        "../scripts/step.py"


use rule read_epoch_warm as read_epoch_cold with:
    output:
        result="results/timings/read_epoch_cold/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.json",
    log:
        "results/logs/read_epoch_cold/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.log",
    benchmark:
        "results/benchmarks/read_epoch_cold/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.tsv"
    params:
        cache="cold",
        cold_cache=config["cold_cache"],
        config_hash=measure_hash("epoch_cold"),


# Epochs from a store larger than the page cache (page_cache_cap > 0): one time-boxed epoch
# per job with the readers' page cache capped (a memory cgroup; root), read on through one
# permutation: a warm-up window, then the timed window (imgbench/experiments/capped.py).
rule read_epoch_capped:
    input:
        store=largest_store,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/read_epoch_capped/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}_{advice}_d{depth}.json",
    log:
        "results/logs/read_epoch_capped/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}_{advice}_d{depth}.log",
    benchmark:
        "results/benchmarks/read_epoch_capped/{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}_{advice}_d{depth}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **PLAN.measure_params("epoch_capped"),
        **experiment("read_capped"),
        cache="capped",
        repeats=config["capped_windows"],
        warmup=0,
        options=store_options,
        n=largest,
        config_hash=measure_hash("epoch_capped"),
    script:
        "../scripts/step.py"


# Training simulation: shuffled batches consumed by an accelerator that computes
# {compute} seconds per batch while the readers prefetch; accelerator utilisation (AU).
rule train_warm:
    input:
        store=largest_store,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/train_warm/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.json",
    log:
        "results/logs/train_warm/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.log",
    benchmark:
        "results/benchmarks/train_warm/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **epoch_params("train_warm"),
        **experiment("train"),
        cache="warm",
        options=store_options,
        n=largest,
        au_batches=config["au_batches"],
        prefetch=config["prefetch"],
    script:
        "../scripts/step.py"


use rule train_warm as train_cold with:
    output:
        result="results/timings/train_cold/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.json",
    log:
        "results/logs/train_cold/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.log",
    benchmark:
        "results/benchmarks/train_cold/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.tsv"
    params:
        cache="cold",
        cold_cache=config["cold_cache"],
        config_hash=measure_hash("train_cold"),
