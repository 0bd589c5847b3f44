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
        **step("imgbench.data.download:download"),
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
        **step("imgbench.data.cifar:unpickle"),
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
        **step("imgbench.data.cifar:repeat_to"),
        n_images=config["n_images"],
    script:
        "../scripts/step.py"


# Other image sizes (image_sizes): CIFAR resized, streamed chunk by chunk; as many images as
# hold the 32-px data's raw bytes (imgbench/data/sizes.py).
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
        **step("imgbench.data.sizes:resize"),
        data=lambda wildcards: f"cifar{wildcards.size}",
        n_images=lambda wildcards: PLAN.n_images[f"cifar{wildcards.size}"],
        resize_filter=config["resize_filter"],
    script:
        "../scripts/step.py"


# Your own images (images_dir): read, checksum and check every file once (bad_images
# decides what a bad file does), then fit each to every image size. The DAG lists the
# folder's names only; the signature (names, sizes, mtimes) reruns the scan on a change.
rule scan_folder:
    output:
        record="results/data/folder/scan.json",
    log:
        "results/logs/scan_folder.log",
    benchmark:
        "results/benchmarks/scan_folder.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.data.folder:scan"),
        images_dir=config["images_dir"],
        bad_images=config["bad_images"],
        n_images=config["n_images"],
        signature=lambda wildcards: PLAN.folder.signature,
    script:
        "../scripts/step.py"


rule ingest_folder:
    input:
        record=rules.scan_folder.output.record,
    output:
        images="results/data/folder{size}/images.npy",
        labels="results/data/folder{size}/labels.npy",
        source="results/data/folder{size}/source.json",
    log:
        "results/logs/ingest_folder/folder{size}.log",
    benchmark:
        "results/benchmarks/ingest_folder/folder{size}.tsv"
    wildcard_constraints:
        size=r"\d+",
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.data.folder:ingest"),
        n_images=config["n_images"],
        images_fit=config["images_fit"],
        resize_filter=config["resize_filter"],
    script:
        "../scripts/step.py"


# payload: encoded. A folder's files byte for byte; CIFAR (no files) as lossless PNG.
rule encode_folder:
    input:
        record=rules.scan_folder.output.record,
    output:
        images="results/data/folderenc/blobs.bin",
        offsets="results/data/folderenc/offsets.npy",
        labels="results/data/folderenc/labels.npy",
        source="results/data/folderenc/source.json",
    log:
        "results/logs/encode_folder.log",
    benchmark:
        "results/benchmarks/encode_folder.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.data.folder:encoded_source"),
        n_images=config["n_images"],
    script:
        "../scripts/step.py"


rule encode_cifar:
    input:
        images_in="results/data/cifar32/images.npy",
        labels_in="results/data/cifar32/labels.npy",
    output:
        images="results/data/cifarenc/blobs.bin",
        offsets="results/data/cifarenc/offsets.npy",
        labels="results/data/cifarenc/labels.npy",
    log:
        "results/logs/encode_cifar.log",
    benchmark:
        "results/benchmarks/encode_cifar.tsv"
    conda:
        "../../envs/bench.yaml"
    resources:
        timing_slots=1,
    params:
        **step("imgbench.data.folder:encode_cifar"),
        n_images=config["n_images"],
        png_compress_level=config["png_compress_level"],
    script:
        "../scripts/step.py"
