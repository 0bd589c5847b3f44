"""One small typed object per job: everything an experiment needs, as plain values.

Built once from the Snakemake object (:func:`imgbench.pipeline.snake.job`) or by hand in tests and
scripts, then passed whole to the experiment functions in :mod:`imgbench.experiments.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgbench.core.names import Cache, Evict


@dataclass(frozen=True)
class Job:
    """One timed job: which store, which data, how often, and where results go."""

    fmt: str
    mode: str
    #: images in the store (the cutoff); 1 for single-image jobs
    n: int
    #: the source arrays (the doubled data set) and how many images they hold
    images: Path
    labels: Path
    #: the store directory (written by builds, read by reads)
    store: Path
    #: the result JSON
    result: Path
    repeats: int = 3
    warmup: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    cache: Cache = Cache.NONE
    evict: Evict = Evict.AUTO
    #: image ids of the single-image experiments
    samples: int = 100
    #: size of the data set the single-image ids are drawn from (0 = n)
    n_images: int = 0
    #: the data variant, as in the target paths (e.g. "cifar32")
    data: str = "cifar32"
    config_hash: str = ""
    #: epoch reads (imgbench/experiments/access.py): order, batch size, reader processes or threads
    pattern: str = "sequential"
    batch_size: int = 256
    readers: int = 1
    reader_kind: str = "process"
    seed: int = 0
    random_samples: int = 10_000
    #: the buffered (WebDataset streaming) pattern's shuffle buffer, in samples
    shuffle_buffer: int = 1000
    #: training simulation: accelerator seconds per batch, batches per run, prefetch per reader
    computation_time: float = 0.0
    au_batches: int = 200
    #: seconds an untimed warm-up epoch reads before it stops (0: the whole epoch; streamed
    #: epochs: whole)
    warmup_s: float = 0.0
    prefetch: int = 2
    #: capped epochs: page cache the readers may fill, as a fraction of the store's bytes;
    #: the time box (warm-up, timed window and its parts; S3 epochs use it too) and the
    #: readers' tuning
    cache_cap: float = 0.0
    capped_warmup_s: float = 5.0
    capped_seconds: float = 15.0
    capped_windows: int = 3
    #: read tuning (Store.tune_reads): readahead advice and reads in flight per reader
    advice: str = "default"
    io_depth: int = 1
    #: object storage (issue 24): the network in front of the server (round trip, link; 0 =
    #: unlimited), requests each reader keeps in flight, and where the objects are ("" =
    #: the S3 command's server, from the environment)
    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0
    requests_in_flight: int = 1
    s3_endpoint: str = ""
    s3_bucket: str = "imgbench"
    #: encoded data (payload: encoded): the decoder of the timed read+decode
    decoder: str = "simplejpeg"
    #: the code it ran: git HEAD of the checkout the workflow was parsed in ("unknown"
    #: outside git), whether tracked files had uncommitted changes, and the hash of the
    #: modules its experiment family and format import (imgbench.pipeline.codehash)
    commit: str = "unknown"
    dirty: bool = False
    code_hash: str = ""

    def __post_init__(self) -> None:
        for name in ("images", "labels", "store", "result"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "cache", Cache(self.cache))
        object.__setattr__(self, "evict", Evict(self.evict))
        if not self.n_images:
            object.__setattr__(self, "n_images", self.n)

    @property
    def what(self) -> str:
        """How errors and logs name this job's store."""
        return f"{self.store} ({self.mode} {self.fmt})"
