"""Glue between a Snakemake ``script:`` job and the package: the only code that sees the
Snakemake object. Every rule names what it runs in its params:

- ``experiment="read_many"``: a timed experiment in :mod:`imgbench.experiments`, given one
  :class:`~imgbench.core.job.Job` built here from the rule's inputs, outputs, params, wildcards;
- ``step="imgbench.measure.du:record"``: any other function, called with the rule's named inputs,
  outputs, params and wildcards as keyword arguments (paths as :class:`~pathlib.Path`).

Logs go to the rule's log file; a :class:`~imgbench.core.errors.BenchError` ends the job with
one clear line (on stderr and in the log) instead of a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgbench.core.config import config_hash
from imgbench.core.errors import BenchError
from imgbench.core.job import Job
from imgbench.data.folder import source_id
from imgbench.pipeline.codehash import job_git_state

#: params that say what runs and which code it is, not arguments of the step
_META = ("step", "code_hash")

# Heavy modules (pandas, matplotlib, format libraries) are imported only by the steps that
# need them: each job is a fresh process, and a second of imports per timed job would be
# pure pipeline overhead.


def job(sm: Any) -> Job:
    """The job object of a timed rule (named inputs/outputs as in workflow/rules)."""
    p, w = sm.params, sm.wildcards
    store = sm.input.get("store") or sm.output.get("store") or p.get("store")
    commit, dirty = job_git_state()  # set by the main process (workflow/rules/common.smk)
    return Job(
        fmt=w.get("fmt", p.get("fmt")),  # the S3 probe names no format: params say "probe"
        mode=w.get("mode", p.get("mode")),
        n=int(w.get("n", p.get("n", 1))),
        data=w.get("data", "cifar32"),
        images=Path(sm.input.images),
        labels=Path(sm.input.labels),
        store=Path(store),
        result=Path(sm.output.result),
        repeats=int(p.repeats),
        warmup=int(p.warmup),
        options=dict(p.options),
        # Writer sweeps ask for more writers than cores on purpose; Snakemake caps threads.
        workers=int(p.get("writers", sm.threads)),
        cache=p.get("cache", "none"),
        evict=p.get("cold_cache", "auto"),
        samples=int(p.get("single_samples", 0) or 0),
        n_images=int(p.get("n_images", 0) or 0),
        config_hash=data_hash(p.config_hash, Path(sm.input.images)),
        pattern=w.get("pattern", "sequential"),
        readers=int(w.get("readers", 1)),
        reader_kind=w.get("kind", "process"),
        batch_size=int(p.get("batch_size", 256)),
        seed=int(p.get("seed", 0)),
        random_samples=int(p.get("random_samples", 10_000)),
        shuffle_buffer=int(p.get("shuffle_buffer", 1000)),
        computation_time=float(w.get("compute", 0.0)),
        au_batches=int(p.get("au_batches", 200)),
        warmup_s=float(p.get("warmup_s", 0.0)),
        prefetch=int(p.get("prefetch", 2)),
        cache_cap=float(p.get("page_cache_cap", 0.0)),
        # the time box: capped epochs' keys, or the S3 epochs' own (s3_warmup_s, ...)
        capped_warmup_s=float(p.get("capped_warmup_s", p.get("s3_warmup_s", 5.0))),
        capped_seconds=float(p.get("capped_seconds", p.get("s3_seconds", 15.0))),
        capped_windows=int(p.get("capped_windows", p.get("s3_windows", 3))),
        latency_ms=float(w.get("lat", 0.0)),
        bandwidth_mbps=float(w.get("bw", 0.0)),
        requests_in_flight=int(w.get("rif", p.get("requests_in_flight", 1))),
        s3_endpoint=str(p.get("s3_endpoint", "")),
        s3_bucket=str(p.get("s3_bucket", "imgbench")),
        advice=w.get("advice", "default"),
        io_depth=int(w.get("depth", 1)),
        decoder=p.get("decoder", "simplejpeg"),
        commit=commit,
        dirty=dirty,
        code_hash=p.get("code_hash", ""),
    )


def data_hash(measure_hash: str, images: Path) -> str:
    """A row's config hash: the measurement's, plus the data's checksum where the data has
    one (a folder's, computed by the scan rule: the DAG never reads the folder's bytes)."""
    sid = source_id(images)
    if not sid:
        return measure_hash
    return config_hash({"measure": measure_hash, "data_sha256": sid["sha256"]})


def _path(v: Any) -> Any:
    return [Path(x) for x in v] if isinstance(v, list) else Path(v)


def kwargs(sm: Any, accepts: Callable[[str], bool] = lambda _: True) -> dict[str, Any]:
    """A rule's named inputs, outputs and params, and the wildcards the step *accepts*, as
    one keyword dict."""
    out: dict[str, Any] = {}
    parts = [
        ((k, _path(v)) for k, v in sm.input.items()),
        ((k, _path(v)) for k, v in sm.output.items()),
        ((k, v) for k, v in sm.params.items() if k not in _META),
        ((k, v) for k, v in sm.wildcards.items() if accepts(k)),
    ]
    for part in parts:
        for k, v in part:
            if k in out:
                raise ValueError(f"rule {sm.rule}: name {k!r} used twice (inputs/outputs/params)")
            out[k] = v
    return out


def _call(sm: Any) -> None:
    if "experiment" in sm.params.keys():
        from imgbench.experiments import EXPERIMENTS

        EXPERIMENTS[sm.params.experiment](job(sm))
    else:
        module, name = sm.params.step.split(":")
        fn = getattr(importlib.import_module(module), name)
        params = inspect.signature(fn).parameters
        fn(**kwargs(sm, lambda k: k in params))


def run(sm: Any) -> None:
    """Run the rule's experiment or step with logging to the rule's log file."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # details go to the log file; problems also to the terminal
    handlers: list[logging.Handler] = [console]
    if sm.log:
        handlers.append(logging.FileHandler(sm.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    start = time.time()
    try:
        _call(sm)
    except BenchError as exc:
        logging.getLogger("imgbench").error("%s", exc)
        sys.exit(1)
    # The job's wall-clock window, so tests can check that no job overlapped a timed one.
    logging.getLogger("imgbench").info("job window: %.6f %.6f", start, time.time())
