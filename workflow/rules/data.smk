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
    wildcard_constraints:
        data="cifar32",
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        step="imgbench.data:repeat_to",
        n_images=config["n_images"],
    script:
        "../scripts/step.py"


# Other image sizes (image_sizes): CIFAR resized, streamed chunk by chunk; as many images as
# hold the 32-px data's raw bytes (imgbench/sizes.py).
rule resize:
    input:
        images_in="results/data/cifar32/images.npy",
        labels_in="results/data/cifar32/labels.npy",
    output:
        images="results/data/cifar{size}/images.npy",
        labels="results/data/cifar{size}/labels.npy",
    log:
        "results/logs/resize/cifar{size}.log",
    benchmark:
        "results/benchmarks/resize/cifar{size}.tsv"
    wildcard_constraints:
        size=r"(?!32$)\d+",
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        step="imgbench.sizes:resize",
        data=lambda wildcards: f"cifar{wildcards.size}",
        n_images=lambda wildcards: N_IMAGES[f"cifar{wildcards.size}"],
        resize_filter=config["resize_filter"],
    script:
        "../scripts/step.py"
