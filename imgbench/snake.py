"""Glue between a Snakemake ``script:`` job and :mod:`imgbench.steps`.

Maps each rule's named inputs, outputs and params onto one step function, logs to the
rule's log file, and turns a :class:`~imgbench.errors.BenchError` into one clear line
(on stderr and in the log) instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgbench import steps
from imgbench.errors import BenchError

# pandas/matplotlib are imported only by the steps that need them: each job is a fresh
# process, and a second of imports per timed job would be pure pipeline overhead.


def _download(sm: Any) -> None:
    from imgbench.download import fetch

    fetch(sm.params.url, Path(sm.output.archive), sm.params.md5)


def _unpickle(sm: Any) -> None:
    steps.unpickle(Path(sm.input.archive), Path(sm.output.images), Path(sm.output.labels))


def _double(sm: Any) -> None:
    from imgbench.data import repeat_to

    repeat_to(
        Path(sm.input.images),
        Path(sm.input.labels),
        int(sm.params.n_images),
        Path(sm.output.images),
        Path(sm.output.labels),
    )


def _common(sm: Any) -> dict[str, Any]:
    p = sm.params
    return {
        "fmt": sm.wildcards.fmt,
        "mode": sm.wildcards.mode,
        "options": p.options,
        "images": Path(sm.input.images),
        "labels": Path(sm.input.labels),
        "repeats": int(p.repeats),
        "warmup": int(p.warmup),
        "config_hash": p.config_hash,
    }


def _build(sm: Any) -> None:
    steps.build_store(
        workers=sm.threads,
        n=int(sm.wildcards.n),
        store_out=Path(sm.output.store),
        result_out=Path(sm.output.result),
        **_common(sm),
    )


def _read_many(cache_state: str) -> Callable[[Any], None]:
    def run(sm: Any) -> None:
        steps.read_many(
            workers=sm.threads,
            store_path=Path(sm.input.store),
            n=int(sm.wildcards.n),
            cache_state=cache_state,
            evict_method=sm.params.cold_cache,
            result_out=Path(sm.output.result),
            **_common(sm),
        )

    return run


def _write_one(sm: Any) -> None:
    steps.write_one(
        n_images=int(sm.params.n_images),
        samples=int(sm.params.samples),
        stores_out=Path(sm.output.stores),
        result_out=Path(sm.output.result),
        **_common(sm),
    )


def _read_one(cache_state: str) -> Callable[[Any], None]:
    def run(sm: Any) -> None:
        steps.read_one(
            n_images=int(sm.params.n_images),
            stores_dir=Path(sm.input.stores),
            cache_state=cache_state,
            evict_method=sm.params.cold_cache,
            result_out=Path(sm.output.result),
            **_common(sm),
        )

    return run


def _du(sm: Any) -> None:
    steps.du(
        Path(sm.input.store),
        Path(sm.output.result),
        sm.wildcards.fmt,
        sm.wildcards.mode,
        int(sm.wildcards.n),
    )


def _tables(sm: Any) -> None:
    from imgbench import aggregate

    aggregate.write_tables(
        timings=[Path(p) for p in sm.input.timings],
        disk=[Path(p) for p in sm.input.disk],
        outputs={k: Path(v) for k, v in sm.output.items()},
    )


def _figures(sm: Any) -> None:
    from imgbench import figures

    figures.write_figures(
        Path(sm.input.summary),
        Path(sm.input.disk),
        {k: Path(v) for k, v in sm.output.items()},
        dpi=int(sm.params.dpi),
    )


def _provenance(sm: Any) -> None:
    from imgbench import provenance

    data = provenance.collect(
        sm.params.config, Path(sm.params.results_dir), Path(sm.params.repo_dir)
    )
    provenance.write(Path(sm.output.provenance), data)


STEPS: dict[str, Callable[[Any], None]] = {
    "download": _download,
    "unpickle": _unpickle,
    "double": _double,
    "build_store": _build,
    "read_many_warm": _read_many("warm"),
    "read_many_cold": _read_many("cold"),
    "write_one": _write_one,
    "read_one_warm": _read_one("warm"),
    "read_one_cold": _read_one("cold"),
    "du": _du,
    "tables": _tables,
    "figures": _figures,
    "provenance": _provenance,
}


def run(sm: Any) -> None:
    """Run the step for ``sm.rule`` with logging to the rule's log file."""
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
    try:
        STEPS[sm.rule](sm)
    except BenchError as exc:
        logging.getLogger("imgbench").error("%s", exc)
        sys.exit(1)
