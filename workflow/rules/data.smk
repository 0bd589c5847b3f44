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
    params:
        url=config["cifar_url"],
        md5=config["cifar_md5"],
    script:
        "../scripts/step.py"


rule unpickle:
    input:
        archive=rules.download.output.archive,
    output:
        images="results/data/train_images.npy",
        labels="results/data/train_labels.npy",
    log:
        "results/logs/unpickle.log",
    benchmark:
        "results/benchmarks/unpickle.tsv"
    conda:
        "../../envs/bench.yaml"
    script:
        "../scripts/step.py"


rule double:
    input:
        images=rules.unpickle.output.images,
        labels=rules.unpickle.output.labels,
    output:
        images="results/data/images.npy",
        labels="results/data/labels.npy",
    log:
        "results/logs/double.log",
    benchmark:
        "results/benchmarks/double.tsv"
    conda:
        "../../envs/bench.yaml"
    params:
        n_images=config["n_images"],
    script:
        "../scripts/step.py"
