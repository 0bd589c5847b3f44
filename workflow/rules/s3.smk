# Object storage (issue 24): the tuned store at s3_images uploaded to an S3 server and read
# back through a delaying, rate-limiting proxy at each round trip and bandwidth. Every job
# needs the server that `python -m imgbench.pipeline.s3run` starts (or s3_endpoint); with
# s3_formats empty (the default) none of these rules is in the DAG. A loopback server is not
# reachable from other cluster nodes: unless s3_endpoint names a reachable server, the S3
# jobs run on the host that runs Snakemake (localrules), also under profiles/slurm.
rule s3_probe:
    input:
        images=f"results/data/{PLAN.s3_data}/images.npy",
        labels=f"results/data/{PLAN.s3_data}/labels.npy",
    output:
        result="results/timings/s3_probe/{lat}ms_{bw}mbps.json",
    log:
        "results/logs/s3_probe/{lat}ms_{bw}mbps.log",
    benchmark:
        "results/benchmarks/s3_probe/{lat}ms_{bw}mbps.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **experiment("s3_probe"),
        **s3_params(),
        fmt="probe",
        mode="tuned",
        store=lambda w: f"s3://{config['s3_bucket']}/probe",
        repeats=1,
        warmup=0,
        options={
            "readers": config["s3_readers"],
            "depths": config["s3_requests_in_flight"],
            "seconds": config["s3_probe_seconds"],
            "small_bytes": int(sizes.image_bytes(PLAN.s3_data)),
        },
        config_hash=PLAN.measure_hash("s3_probe", "probe", "tuned", PLAN.s3_data),
    script:
        "../scripts/step.py"


rule s3_upload:
    input:
        store=s3_store,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/s3_upload/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.json",
    log:
        "results/logs/s3_upload/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.log",
    benchmark:
        "results/benchmarks/s3_upload/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **experiment("s3_upload"),
        **s3_params(),
        repeats=1,
        warmup=0,
        options=store_options,
        requests_in_flight=max(config["s3_requests_in_flight"]),
        config_hash=measure_hash("s3_upload"),
    script:
        "../scripts/step.py"


rule s3_read_many:
    input:
        upload=s3_upload_result,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/s3_read_many/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.json",
    log:
        "results/logs/s3_read_many/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.log",
    benchmark:
        "results/benchmarks/s3_read_many/{data}/{mode}/{fmt}/{n}/{lat}ms_{bw}mbps.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **experiment("s3_read_many"),
        **s3_params(),
        store=s3_name,
        repeats=config["s3_repeats"],
        warmup=0,
        options=store_options,
        requests_in_flight=max(config["s3_requests_in_flight"]),
        config_hash=measure_hash("s3_read"),
    script:
        "../scripts/step.py"


rule s3_epoch:
    input:
        upload=s3_upload_result,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/s3_epoch/{data}/{mode}/{fmt}/{n}/{pattern}_r{readers}_q{rif}_{lat}ms_{bw}mbps.json",
    log:
        "results/logs/s3_epoch/{data}/{mode}/{fmt}/{n}/{pattern}_r{readers}_q{rif}_{lat}ms_{bw}mbps.log",
    benchmark:
        "results/benchmarks/s3_epoch/{data}/{mode}/{fmt}/{n}/{pattern}_r{readers}_q{rif}_{lat}ms_{bw}mbps.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **experiment("s3_epoch"),
        **s3_params(),
        store=s3_name,
        repeats=config["s3_repeats"],
        warmup=0,
        options=store_options,
        batch_size=config["batch_size"],
        seed=config["seed"],
        shuffle_buffer=config["shuffle_buffer"],
        s3_warmup_s=config["s3_warmup_s"],
        s3_seconds=config["s3_seconds"],
        s3_windows=config["s3_windows"],
        config_hash=measure_hash("s3_epoch"),
    script:
        "../scripts/step.py"


rule s3_train:
    input:
        upload=s3_upload_result,
        images=rules.double.output.images,
        labels=rules.double.output.labels,
    output:
        result="results/timings/s3_train/{data}/{mode}/{fmt}/{n}/r{readers}_q{rif}_{compute}s_{lat}ms_{bw}mbps.json",
    log:
        "results/logs/s3_train/{data}/{mode}/{fmt}/{n}/r{readers}_q{rif}_{compute}s_{lat}ms_{bw}mbps.log",
    benchmark:
        "results/benchmarks/s3_train/{data}/{mode}/{fmt}/{n}/r{readers}_q{rif}_{compute}s_{lat}ms_{bw}mbps.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=TIMING_SLOTS,
    params:
        **experiment("s3_train"),
        **s3_params(),
        store=s3_name,
        repeats=1,
        warmup=0,
        options=store_options,
        batch_size=config["batch_size"],
        seed=config["seed"],
        au_batches=config["au_batches"],
        prefetch=config["prefetch"],
        config_hash=measure_hash("s3_train"),
    script:
        "../scripts/step.py"


# The S3 command's target: every S3 job and their own report (the local tables need the
# whole default run; this does not).
rule s3_report:
    input:
        s3_runs=[
            t for k in ("upload", "read", "epochs", "training") for t in PLAN.s3[k]
        ],
        s3_probes=PLAN.s3["probes"],
    output:
        table="results/s3/s3.csv",
        probes="results/s3/limits.csv",
        markdown="results/s3/s3.md",
        figure=report(
            f"results/s3/s3.{config['figure_format']}",
            caption="../report/s3.rst",
            category="Figures",
        ),
    log:
        "results/logs/s3_report.log",
    benchmark:
        "results/benchmarks/s3_report.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.report.s3:write_s3_report"),
    script:
        "../scripts/step.py"


localrules:
    s3,


if not config["s3_endpoint"]:

    localrules:
        s3_probe,
        s3_upload,
        s3_read_many,
        s3_epoch,
        s3_train,


rule s3:
    input:
        rules.s3_report.output,
        "results/provenance.json",


# The S3 run copied into docs/results/s3/<machine>/ (imgbench.pipeline.publish, as the
# reference run): s3.csv, limits.csv, s3.md, the figure, provenance, RUN.md, run.json, jobs.
rule s3_publish:
    input:
        tables=[
            rules.s3_report.output.table,
            rules.s3_report.output.probes,
            rules.s3_report.output.markdown,
        ],
        figures=[rules.s3_report.output.figure],
        provenance=rules.provenance.output.provenance,
    output:
        published="results/s3/published.json",
    log:
        "results/logs/s3_publish.log",
    benchmark:
        "results/benchmarks/s3_publish.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.pipeline.publish:publish"),
        dest_root=Path(workflow.basedir) / "docs" / "results" / "s3",
        command=f"python -m imgbench.pipeline.s3run {run_command(sys.argv, 's3')}",
        config=PLAN.measured_config,
        logs="results/logs",
        benchmarks="results/benchmarks",
        title="Object-storage run",
        snakemake_logs=".snakemake/log",
        layout=(
            "s3.csv, limits.csv and s3.md as results/s3/ holds them, figures/ the S3 "
            "figure, provenance.json as results/ holds it. Published with "
            "`snakemake s3_publish --workflow-profile profiles/s3` (imgbench.pipeline.publish)."
        ),
    script:
        "../scripts/step.py"
