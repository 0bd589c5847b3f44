"""What the workflow will run, as plain Python: data sets, cutoffs per image size, every
target list, the rerun keys and the config cross-checks.

Built from the normalised, schema-validated config dict and the format registry, with no
Snakemake import, so it is unit-tested in milliseconds (tests/test_plan.py) while
workflow/rules/common.smk only validates the config and calls it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from imgbench import stores
from imgbench.core.config import config_hash
from imgbench.core.errors import BenchError
from imgbench.data import folder, sizes

#: the article's 50,000 CIFAR training images, doubled
ARTICLE_N = 100_000
#: the article's data: its claims and reproduction are judged on it
DATA = "cifar32"

#: config keys of the data every timed job reads
DATA_KEYS = ["cifar_md5", "n_images", "resize_filter", "images_dir", "bad_images", "images_fit"]
_EPOCH_KEYS = ["epoch_repeats", "epoch_warmup", "epoch_warmup_s", "batch_size", "seed"]
_KINDS: dict[str, list[str]] = {
    "build": ["repeats", "warmup"],
    "writers": ["repeats", "warmup"],
    "read": ["repeats", "warmup"],
    "one_write": ["repeats", "warmup", "single_samples"],
    "one_read": ["repeats", "warmup", "single_samples"],
    "epoch": [*_EPOCH_KEYS, "random_samples", "shuffle_buffer"],
    "train": [*_EPOCH_KEYS, "au_batches", "prefetch"],
}
# Reads come warm and cold; only the cold ones depend on how the store is evicted.
#: capped epochs are one time box each: no epoch repeats, their own window keys
_KINDS["epoch_capped"] = ["batch_size", "seed", "cold_cache", "page_cache_cap",
                          "capped_warmup_s", "capped_seconds", "capped_windows"]  # fmt: skip
# Object storage: where the objects are, and what each kind of S3 job reads from the config.
_S3_KEYS = ["s3_endpoint", "s3_bucket"]
_KINDS |= {
    "s3_probe": [*_S3_KEYS, "s3_readers", "s3_requests_in_flight", "s3_probe_seconds"],
    "s3_upload": [*_S3_KEYS, "s3_requests_in_flight"],
    "s3_read": [*_S3_KEYS, "s3_requests_in_flight", "s3_repeats"],
    "s3_epoch": [*_S3_KEYS, "batch_size", "seed", "shuffle_buffer", "s3_warmup_s",
                 "s3_seconds", "s3_windows", "s3_repeats"],
    "s3_train": [*_S3_KEYS, "batch_size", "seed", "au_batches", "prefetch"],
}  # fmt: skip
_CACHED = ("read", "one_read", "epoch", "train")
#: config keys that change what each kind of timed job measures: changing one reruns only the
#: jobs whose kind lists it (store options are added per format and mode)
MEASURE_KEYS: dict[str, list[str]] = {
    **{k: [*DATA_KEYS, *v] for k, v in _KINDS.items() if k not in _CACHED},
    **{f"{k}_warm": [*DATA_KEYS, *_KINDS[k]] for k in _CACHED},
    **{f"{k}_cold": [*DATA_KEYS, *_KINDS[k], "cold_cache"] for k in _CACHED},
}

_FIGURES = [
    "store_linear",
    "store_log",
    "read_linear",
    "read_log",
    "store_read",
    "cold_warm",
    "disk",
    "single",
]
#: every table the tables rule writes
TABLES = {
    "samples": "results/tables/samples.csv",
    "summary": "results/tables/summary.csv",
    "disk": "results/tables/disk.csv",
    "article": "results/tables/article_comparison.csv",
    "claims": "results/tables/claims.csv",
    "access": "results/tables/access.csv",
    "au": "results/tables/au.csv",
    "writers": "results/tables/writers.csv",
    "capped": "results/tables/capped.csv",
    "payload": "results/tables/payload.csv",
    "s3": "results/tables/s3.csv",
    "reproduction": "results/tables/reproduction.csv",
    "markdown": "results/tables/summary.md",
}
_EPOCH = "{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}.json"
_CAPPED = "{data}/{mode}/{fmt}/{pattern}_r{readers}_{kind}_{advice}_d{depth}.json"
#: S3 jobs: the tuned store at s3_images, per network setting (round trip, bandwidth)
_S3 = "results/timings/s3_{kind}/{data}/tuned/{fmt}/{n}/"
_NET = "{lat:g}ms_{bw:g}mbps.json"


class PlanError(BenchError):
    """A config that passes the schema but cannot be planned (one line: key, problem, fix)."""


@dataclass(frozen=True)
class FolderFacts:
    """What the DAG knows of an images_dir: its file count, its signature (names, sizes,
    mtimes) and, after a scan that skipped bad files, how many were good."""

    files: int
    signature: str
    good: int | None = None


def folder_facts(images_dir: str | Path, bad_images: str, scan_record: Path) -> FolderFacts:
    """List the folder's names once (its bytes are read by the scan rule, not here)."""
    try:
        listed = folder.listing(Path(images_dir))[1]
        sig = folder.signature(Path(images_dir), listed)
    except BenchError as exc:
        raise PlanError(f"config key images_dir: {exc}") from None
    return FolderFacts(len(listed), sig, folder.good_count(scan_record, sig, bad_images))


@dataclass
class Plan:
    """Everything derived from one config: build with :func:`make_plan`."""

    #: the config with n_images resolved (the rules and provenance read it)
    config: dict[str, Any]
    #: "cifar" (the article's data) or "folder" (images_dir)
    source: str
    #: (mode, format) pairs that exist: e.g. npy has only a tuned mode
    combos: list[tuple[str, str]]
    cutoffs: list[int]
    #: data variant (as in every target path) -> its cutoffs
    datasets: dict[str, list[int]]
    #: data variant -> images in it
    n_images: dict[str, int]
    #: image sizes whose largest store epochs and training read
    epoch_sizes: set[int]
    #: the encoded data variant (payload: encoded), or None
    encoded: str | None
    folder: FolderFacts | None = field(default=None, repr=False)

    @property
    def encoded_combos(self) -> list[tuple[str, str]]:
        """(mode, format) pairs of encoded data: tuned stores of formats with variable records."""
        return [(m, f) for m, f in self.combos if m == "tuned" and stores.encoded(f)]

    @property
    def pixel_datasets(self) -> dict[str, list[int]]:
        return {d: c for d, c in self.datasets.items() if not sizes.is_encoded(d)}

    @property
    def lazy_formats(self) -> list[str]:
        """Formats of the lazy-items claim run: where their article-mode stores are built."""
        return [f for f in ("lmdb", "hdf5") if ("article", f) in self.combos]

    def disk_estimate(self) -> int | None:
        """Bytes of raw pixels the stores of an image-size sweep take (None: one size)."""
        if len(self.pixel_datasets) < 2:
            return None
        return sizes.disk_estimate(self.pixel_datasets, len(self.combos))

    def disk_note(self) -> str | None:
        """What an image-size sweep's stores will take, said before any job starts."""
        est = self.disk_estimate()
        if est is None:
            return None
        return (
            f"image-size sweep {sorted(self.config['image_sizes'])}: stores take about "
            f"{est / 1e9:.1f} GB (raw pixels of every store; files and padding add more)"
        )

    def largest(self, data: str) -> int:
        """The largest cutoff of a data variant (epochs, training, claims read that store)."""
        return self.datasets[data][-1]

    # -- targets ---------------------------------------------------------------------------

    def targets(
        self,
        path: str,
        n: str | None = None,
        encoded: bool = False,
        epochs: bool = False,
        **axes: list[Any],
    ) -> list[str]:
        """*path* for every data variant, (mode, format) pair and combination of the *axes*
        values; *n*: "cutoffs" (each variant's cutoffs), "largest" (its largest) or None.
        Encoded data only where *encoded*; only the sizes in epoch_sizes where *epochs*."""
        out = []
        for data, cuts in self.datasets.items():
            if sizes.is_encoded(data) and not encoded:
                continue
            if epochs and sizes.size_of(data) not in self.epoch_sizes:
                continue
            ns = {None: [None], "cutoffs": cuts, "largest": cuts[-1:]}[n]
            for m, f in self.encoded_combos if sizes.is_encoded(data) else self.combos:
                for k in ns:
                    for values in itertools.product(*axes.values()):
                        named = dict(zip(axes, values, strict=True))
                        out.append(path.format(data=data, mode=m, fmt=f, n=k, **named))
        return out

    def _many(self, path: str) -> list[str]:
        return self.targets(path, n="cutoffs", encoded=True)

    @cached_property
    def timings(self) -> list[str]:
        """Whole-store builds and reads at every cutoff, one-image writes and reads."""
        t = "results/timings/"
        return (
            self._many(t + "write_many/{data}/{mode}/{fmt}/{n}.json")
            + self._many(t + "read_many_warm/{data}/{mode}/{fmt}/{n}.json")
            + self._many(t + "read_many_cold/{data}/{mode}/{fmt}/{n}.json")
            + self.targets(t + "write_one/{data}/{mode}/{fmt}.json")
            + self.targets(t + "read_one_warm/{data}/{mode}/{fmt}.json")
            + self.targets(t + "read_one_cold/{data}/{mode}/{fmt}.json")
        )

    @cached_property
    def disk(self) -> list[str]:
        return self._many("results/du/{data}/{mode}/{fmt}/{n}.json")

    @property
    def _readers(self) -> dict[str, list[Any]]:
        return {"readers": self.config["readers"], "kind": self.config["reader_kind"]}

    @cached_property
    def epochs(self) -> list[str]:
        """Epochs warm and cold; the buffered pattern (WebDataset streaming) only where the
        format streams shards."""
        every = self.targets(
            "results/timings/read_epoch_{cache}/" + _EPOCH,
            cache=["warm", "cold"],
            pattern=self.config["access_patterns"],
            epochs=True,
            **self._readers,
        )
        return [
            t
            for t in every
            if not Path(t).name.startswith("buffered_") or stores.streams(Path(t).parent.name)
        ]

    @cached_property
    def capped(self) -> list[str]:
        """Epochs from a store 1 / page_cache_cap times the readers' page cache (0: none):
        reader processes, each capped mode, order, reader count, advice and io depth."""
        c = self.config
        if not c["page_cache_cap"]:
            return []
        every = self.targets(
            "results/timings/read_epoch_capped/" + _CAPPED,
            epochs=True,
            pattern=c["capped_patterns"],
            readers=c["capped_readers"],
            kind=["process"],
            advice=c["capped_advice"],
            depth=c["io_depth"],
        )
        return [t for t in every if Path(t).parts[4] in c["capped_modes"]]

    @cached_property
    def training(self) -> list[str]:
        return self.targets(
            "results/timings/train_{cache}/{data}/{mode}/{fmt}/r{readers}_{kind}_{compute}s.json",
            cache=["warm", "cold"],
            compute=self.config["computation_time"],
            epochs=True,
            **self._readers,
        )

    @cached_property
    def writers(self) -> list[str]:
        """Writer scaling: tuned formats that can use several writer processes, largest
        store only."""
        every = self.targets(
            "results/timings/write_writers/{data}/{mode}/{fmt}/{n}_w{writers}.json",
            n="largest",
            writers=self.config["writers"],
        )
        return [
            t
            for t in every
            if Path(t).parts[4] == "tuned" and stores.parallel_writes(Path(t).parent.name)
        ]

    @property
    def s3_data(self) -> str:
        """The data set read from S3: the smallest image size (the article's, for CIFAR)."""
        return next(iter(self.pixel_datasets))

    def _s3(self, kind: str, name: str, fmts: list[str] | None = None, **axes: Any) -> list[str]:
        c = self.config
        nets = {"lat": c["s3_latency_ms"], "bw": c["s3_bandwidth_mbps"]}
        every = {**axes, **nets}
        return [
            (_S3 + name + _NET).format(
                kind=kind, data=self.s3_data, fmt=f, n=c["s3_images"],
                **dict(zip(every, values, strict=True)),
            )
            for f in (c["s3_formats"] if fmts is None else fmts)
            for values in itertools.product(*every.values())
        ]  # fmt: skip

    @cached_property
    def s3(self) -> dict[str, list[str]]:
        """Object storage (issue 24): uploads, full reads, shuffled epochs (per readers and
        requests in flight), streamed epochs where a format streams shards, training, and
        the probe of the store's limits, at every round trip and bandwidth."""
        c = self.config
        if not c["s3_formats"]:
            return {k: [] for k in ("upload", "read", "epochs", "training", "probes")}
        most = {"readers": [max(c["s3_readers"])], "rif": [max(c["s3_requests_in_flight"])]}
        streams = [f for f in c["s3_formats"] if stores.streams(f)]
        # requests in flight are a knob only where a reader's pool applies them (Lance keeps
        # its own depth, h5py one read at a time): the others are read at 1
        pooled = [f for f in c["s3_formats"] if stores.FORMATS[f].s3_in_flight == "pool"]
        fixed = [f for f in c["s3_formats"] if f not in pooled]
        nets = itertools.product(c["s3_latency_ms"], c["s3_bandwidth_mbps"])
        return {
            "upload": self._s3("upload", ""),
            "read": self._s3("read_many", ""),
            "epochs": self._s3("epoch", "shuffled_r{readers}_q{rif}_", pooled,
                               readers=c["s3_readers"], rif=c["s3_requests_in_flight"])
            + self._s3("epoch", "shuffled_r{readers}_q1_", fixed, readers=c["s3_readers"])
            + self._s3("epoch", "buffered_r{readers}_q1_", streams, readers=c["s3_readers"]),
            "training": self._s3("train", "r{readers}_q{rif}_{compute:g}s_", **most,
                                 compute=c["computation_time"]),
            "probes": [f"results/timings/s3_probe/{lat:g}ms_{bw:g}mbps.json"
                       for lat, bw in nets],
        }  # fmt: skip

    @cached_property
    def claim_runs(self) -> list[str]:
        """The claim experiments run where their article-mode stores are built."""
        if DATA not in self.datasets:
            return []
        out = []
        if ("article", "lmdb") in self.combos:
            out.append(f"results/claims/{DATA}/lmdb_map_full.json")
        if self.lazy_formats:
            out.append(f"results/claims/{DATA}/lazy_items.json")
        return out

    @cached_property
    def figures(self) -> dict[str, str]:
        names = [
            *_FIGURES,
            *(["access"] if self.config["access_patterns"] else []),
            *(["au"] if self.config["computation_time"] else []),
            *(["sizes"] if len(self.pixel_datasets) > 1 else []),
            "answer",
            *(["capped"] if self.config["page_cache_cap"] else []),
            *(["s3"] if self.config["s3_formats"] else []),
        ]
        return {n: f"results/figures/{n}.{self.config['figure_format']}" for n in names}

    @property
    def tables(self) -> dict[str, str]:
        return dict(TABLES)

    # -- rerun keys ------------------------------------------------------------------------

    @property
    def measured_config(self) -> dict[str, Any]:
        """The config behind the numbers (figure settings only change how they are drawn,
        publish_dir only where a finished run is copied)."""
        drawn = {k for k in self.config if k.startswith("figure_")} | {"publish_dir"}
        return {k: v for k, v in self.config.items() if k not in drawn}

    def store_options(self, fmt: str, mode: str) -> dict[str, Any]:
        """Flat config keys the store class reads (changing one reruns only that format)."""
        return {k: self.config[k] for k in stores.options(fmt, mode)}

    def measure_hash(self, kind: str, fmt: str, mode: str, data: str) -> str:
        """Hash of everything that defines one kind of timed measurement; on every row."""
        keys = {k: self.config[k] for k in MEASURE_KEYS[kind]}
        if sizes.is_encoded(data) and kind.startswith("read"):
            keys["decoder"] = self.config["decoder"]  # only encoded reads decode
        ident = {"format": fmt, "mode": mode, "kind": kind}
        options = self.store_options(fmt, mode) if fmt in stores.FORMATS else {}
        return config_hash({**keys, **options, **ident})

    def measure_params(self, kind: str) -> dict[str, Any]:
        """The config keys of one kind of job, as rule params (Snakemake reruns on change)."""
        return {k: self.config[k] for k in MEASURE_KEYS[kind] if k not in DATA_KEYS}

    def epoch_params(self) -> dict[str, Any]:
        """Params of the epoch rules: their own repeat counts, batch size and seed."""
        c = self.config
        return {
            "repeats": c["epoch_repeats"],
            "warmup": c["epoch_warmup"],
            "warmup_s": c["epoch_warmup_s"],
            "batch_size": c["batch_size"],
            "random_samples": c["random_samples"],
            "shuffle_buffer": c["shuffle_buffer"],
            "seed": c["seed"],
        }

    def decoder(self, data: str) -> str | None:
        """The decoder of an encoded read (None for pixel data: changing it reruns nothing)."""
        return self.config["decoder"] if sizes.is_encoded(data) else None


def check(config: dict[str, Any], source: str, combos: list[tuple[str, str]]) -> None:
    """Cross-key checks a JSON schema cannot express; raise :class:`PlanError` (one line)."""
    unknown = [f for f in config["formats"] if f not in stores.FORMATS]
    if unknown:
        raise PlanError(f"config key formats: unknown {unknown}; allowed: {sorted(stores.FORMATS)}")
    too_big = [c for c in config["cutoffs"] if c > config["n_images"]]
    if too_big and source == "cifar":
        raise PlanError(
            f"config key cutoffs: {too_big} exceed n_images={config['n_images']}; "
            "lower the cutoffs or raise n_images"
        )
    stray = sorted(set(config["epoch_sizes"] or []) - set(config["image_sizes"]))
    if stray:
        raise PlanError(
            f"config key epoch_sizes: {stray} not in image_sizes {config['image_sizes']}; "
            "add them to image_sizes or drop them from epoch_sizes"
        )
    if not combos:
        raise PlanError(f"config keys formats/modes: no format implements modes {config['modes']}")
    no_s3 = [f for f in config["s3_formats"] if f not in stores.s3_formats()]
    if no_s3:
        raise PlanError(
            f"config key s3_formats: {no_s3} have no object-storage reader; "
            f"use some of {stores.s3_formats()}"
        )
    if config["s3_formats"] and config["s3_images"] not in config["cutoffs"]:
        raise PlanError(
            f"config key s3_images: {config['s3_images']} is not one of cutoffs "
            f"{config['cutoffs']}; pick a cutoff (its tuned store is uploaded)"
        )


def make_plan(config: dict[str, Any], folder_facts: FolderFacts | None = None) -> Plan:
    """The plan of a normalised, schema-valid config; *folder_facts* when images_dir is set.

    Cutoffs: CIFAR at size s holds the same raw bytes as the 32-px run at the same cutoff
    position (cutoffs scaled by 32^2 / s^2, at least 10 images; cutoffs that collide after
    scaling merge); a folder's cutoffs stop at its n_images, which is always the largest.
    """
    source = "folder" if config["images_dir"] else "cifar"
    if source == "folder" and folder_facts is None:
        raise PlanError("config key images_dir: set, but the folder was not listed (internal)")
    config = dict(config)
    if not config["n_images"]:
        if folder_facts is not None and source == "folder":
            config["n_images"] = folder_facts.good or folder_facts.files
        else:
            config["n_images"] = ARTICLE_N
    n_all = config["n_images"]
    combos = [
        (m, f)
        for m in config["modes"]
        for f in config["formats"]
        if f in stores.FORMATS and m in stores.modes(f)
    ]
    check(config, source, combos)
    if source == "cifar":
        cutoffs = sorted(config["cutoffs"])
        scale = sizes.scaled
    else:
        cutoffs = sorted({c for c in config["cutoffs"] if c < n_all} | {n_all})
        scale = _unscaled
    # min_images_per_size: a larger size's largest store holds at least this many images
    # (scaled cutoffs give 256 px 1,562 of the 100,000 32-px images' bytes; capped epochs
    # at 256 px want a store several times the readers' cache in images as well as bytes).
    floor = min(config.get("min_images_per_size") or 0, n_all)
    n_images = {
        sizes.data_key(s, source): max(scale(n_all, s), floor) for s in config["image_sizes"]
    }
    datasets = {
        sizes.data_key(s, source): sorted(
            {scale(c, s) for c in cutoffs} | {n_images[sizes.data_key(s, source)]}
            if floor > scale(n_all, s)
            else {scale(c, s) for c in cutoffs}
        )
        for s in sorted(config["image_sizes"])
    }
    # Epochs read at these sizes only (null: every image size): at four sizes they would
    # take about four times the full sweep's hours.
    epoch_sizes = set(
        config["image_sizes"] if config["epoch_sizes"] is None else config["epoch_sizes"]
    )
    encoded = sizes.encoded_key(source) if config["payload"] == "encoded" else None
    if encoded:
        datasets[encoded] = cutoffs
        n_images[encoded] = n_all
    return Plan(
        config, source, combos, cutoffs, datasets, n_images, epoch_sizes, encoded, folder_facts
    )


def _unscaled(n: int, size: int) -> int:
    return n
