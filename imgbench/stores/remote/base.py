"""The one small interface of a format read from object storage.

A tuned local store (built by the pipeline, under ``results/stores``) is uploaded file by file
as objects ``<prefix>/<relative path>`` (what ``aws s3 sync`` does; the upload is timed by the
experiment, not here). A :class:`RemoteStore` reads those objects back the way its format
reads from S3 in practice, and says how in its class attributes:

* ``access``: ``object`` (one GET per image: PNG), ``range`` (ranged GETs into larger objects,
  by an index or the format's own metadata: npy, tar by index, Parquet, Feather, Lance, Zarr,
  HDF5), ``stream`` (whole shards streamed front to back: tar's ``buffered`` order) or
  ``staged`` (download the store to local disk first, then read it locally: LMDB, LevelDB and
  SQLite cannot read from an object store);
* ``in_flight``: how a reader keeps ``requests_in_flight`` requests going (a thread pool over
  the batch's images, the library's own concurrency, ...), or why it cannot.
* ``tuned_for_s3``: which of the format's options matter for ranged reads, and why the
  values the pipeline builds with suit them.

Readers are forked processes (:mod:`imgbench.experiments.access`): a reader opens its own
connections inside :meth:`batch_reader`, never in ``__init__``, and the parent must not start a
library's I/O runtime (pyarrow's AWS SDK, Lance's and obstore's tokio) before it forks.
Images are (N, H, W, C) uint8 and labels (N,) as the local store returns them.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imgbench.stores.base import Store
from imgbench.stores.s3 import S3Target

#: values of a row's ``access`` column
ACCESS = ("object", "range", "stream", "staged")

Reader = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]


class RemoteStore(ABC):
    """A format's tuned store as objects under ``target.prefix``, read from object storage."""

    format: ClassVar[str]
    #: how the shuffled epochs read (one of :data:`ACCESS`)
    access: ClassVar[str]
    #: how the full read (store order, every image) reads; the same as ``access`` by default
    full_access: ClassVar[str] = ""
    #: how ``requests_in_flight`` is applied per reader, or "not applied: why"
    in_flight: ClassVar[str]
    #: which options matter over S3 and why the built store's values suit ranged reads
    tuned_for_s3: ClassVar[str]

    def __init__(
        self,
        target: S3Target,
        local: Store,
        n: int,
        image_shape: tuple[int, ...],
        requests_in_flight: int = 1,
        stage_dir: Path | None = None,
    ) -> None:
        #: where the objects are (the proxy's endpoint), as plain values
        self.target = target
        #: the local tuned store class with the options the store was built with (for its
        #: layout helpers; a staged store reads through it)
        self.local = local
        self.n = int(n)
        self.image_shape = tuple(image_shape)
        self.requests_in_flight = max(1, int(requests_in_flight))
        #: a local directory the job owns and removes (staged stores download into it)
        self.stage_dir = stage_dir
        #: what staging cost (staged stores fill it: seconds, bytes, objects)
        self.staged: dict[str, Any] = {}

    def pool(self) -> contextlib.AbstractContextManager[ThreadPoolExecutor | None]:
        """``requests_in_flight`` threads for one reader (None at 1): made inside
        :meth:`batch_reader`, so a forked reader makes its own."""
        if self.requests_in_flight <= 1:
            return contextlib.nullcontext(None)
        return ThreadPoolExecutor(self.requests_in_flight, thread_name_prefix=f"{self.format}-s3")

    @abstractmethod
    def batch_reader(self, path: Path | str = "") -> contextlib.AbstractContextManager[Reader]:
        """A reader for many batches, as one data-loader worker holds it: a context manager
        yielding ``read(indices) -> (images, labels)``, in the order asked. ``path`` is only
        a name for messages (the epoch machinery passes one)."""

    @abstractmethod
    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image and label in store order, the way the format reads a whole store
        from S3 (one reader, ``requests_in_flight`` requests)."""

    def stage(self) -> dict[str, Any] | None:
        """Staged stores download every object into ``stage_dir`` here (the experiment
        times this call and states it); the others read in place and return None."""
        return None


def in_flight(
    pool: ThreadPoolExecutor | None, read_one: Callable[[int], Any], indices: Sequence[int]
) -> list[Any]:
    """``read_one`` over ``indices``, results in order: on the pool (as many requests in
    flight as it has threads) or one after another."""
    if pool is None:
        return [read_one(int(i)) for i in indices]
    return list(pool.map(read_one, [int(i) for i in indices]))
