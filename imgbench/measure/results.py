"""The result of one timed job, as written to ``results/timings/**.json``."""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgbench.core.atomic import write_json
from imgbench.core.job import Job
from imgbench.measure.stats import summarize


@dataclass
class Result:
    """One timed measurement: its identity, every sample, and how it was taken."""

    format: str
    mode: str
    operation: str
    cache: str
    n_images: int
    data: str = "cifar32"
    samples: list[float] = field(default_factory=list)
    warmup_samples: list[float] = field(default_factory=list)
    #: writes: seconds until the library call returned (``samples``: until durable)
    returned_samples: list[float] = field(default_factory=list)
    #: user and kernel CPU seconds per timed sample (kernel time tells machine noise apart)
    cpu_user_s: list[float] = field(default_factory=list)
    cpu_sys_s: list[float] = field(default_factory=list)
    repeats: int = 0
    warmup: int = 0
    threads: int = 1
    verified: bool = False
    resident_fraction: list[float] = field(default_factory=list)
    evict_method: str | None = None
    #: see imgbench.core.names.CacheScope: cold "data" or "full", warm "resident" or "partial"
    cache_scope: str | None = None
    config_hash: str = ""
    #: which code measured it (see imgbench.core.job.Job): git commit, uncommitted changes,
    #: the hash of the modules the job's experiment family and format import
    commit: str = "unknown"
    dirty: bool = False
    code_hash: str = ""
    #: seconds from process start to the first run, warmup or timed (the job's start-up cost)
    startup_s: float | None = None
    node: str = field(default_factory=socket.gethostname)
    start: float = field(default_factory=time.time)
    end: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_job(cls, job: Job, operation: str, n_images: int | None = None) -> Result:
        """A result stamped with the job's identity and measurement settings."""
        return cls(
            job.fmt,
            job.mode,
            operation,
            str(job.cache),
            job.n if n_images is None else n_images,
            data=job.data,
            repeats=job.repeats,
            warmup=job.warmup,
            threads=job.workers,
            config_hash=job.config_hash,
            commit=job.commit,
            dirty=job.dirty,
            code_hash=job.code_hash,
        )

    def save(self, path: Path) -> dict[str, Any]:
        """Stamp the end time, write the JSON atomically (statistics included), return it."""
        self.end = time.time()
        out = asdict(self)
        # A row that could not be measured (a capped epoch without a memory controller)
        # has no samples and says why in extra["not_measured"].
        out["stats"] = summarize(self.samples) if self.samples else None
        write_json(path, out)
        return out
