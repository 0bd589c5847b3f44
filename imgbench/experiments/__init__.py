"""The timed experiments, one function per kind of timed job, each taking one
:class:`~imgbench.core.job.Job` and writing one result JSON. Rules name them by the keys of
:data:`EXPERIMENTS` (``params: experiment="read_many"``).

Repeats and warmups are split by :func:`imgbench.measure.timing.measure` alone; the timed
section covers only the store operation: loading the source, eviction, residency checks and
verification happen outside it, in its ``before``/``after`` hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imgbench.core.job import Job
from imgbench.experiments.builds import build_store, build_writers
from imgbench.experiments.capped import read_capped
from imgbench.experiments.epochs import read_epoch, train
from imgbench.experiments.reads import read_many
from imgbench.experiments.s3 import s3_epoch, s3_read_many, s3_train, s3_upload
from imgbench.experiments.s3_limits import s3_probe
from imgbench.experiments.single import read_one, write_one

#: experiment name (a rule's ``params.experiment``) -> the function that runs it
EXPERIMENTS: dict[str, Callable[[Job], dict[str, Any]]] = {
    f.__name__: f
    for f in (
        build_store,
        build_writers,
        read_many,
        write_one,
        read_one,
        read_epoch,
        read_capped,
        train,
        s3_upload,
        s3_read_many,
        s3_epoch,
        s3_train,
        s3_probe,
    )
}
