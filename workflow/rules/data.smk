# Stage 1-3: fetch the archive, read it safely, repeat it to n_images. Untimed.


rule download:
    output:
        archive="resources/cifar-10-python.tar.gz",
    log:
        "results/logs/download.log",
    benchmark:
        "results/benchmarks/download.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        step="imgbench.download:download",
        url=config["cifar_url"],
        md5=config["cifar_md5"],
    script:
        "../scripts/step.py"


rule unpickle:
    input:
        archive=rules.download.output.archive,
    output:
        images="results/data/cifar32/train_images.npy",
        labels="results/data/cifar32/train_labels.npy",
    log:
        "results/logs/unpickle.log",
    benchmark:
        "results/benchmarks/unpickle.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        step="imgbench.data:unpickle",
    script:
        "../scripts/step.py"


rule double:
    input:
        images_in=rules.unpickle.output.images,
        labels_in=rules.unpickle.output.labels,
    output:
        images="results/data/{data}/images.npy",
        labels="results/data/{data}/labels.npy",
    log:
        "results/logs/double/{data}.log",
    benchmark:
        "results/benchmarks/double/{data}.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        step="imgbench.data:repeat_to",
        n_images=config["n_images"],
    script:
        "../scripts/step.py"
