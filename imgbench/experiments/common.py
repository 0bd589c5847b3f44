"""What every timed experiment shares: the store it opens, clear errors for a full disk or a
damaged store, the single-image ids, and the cache state prepared right before a timed read."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imgbench.core.errors import BenchError, StoreError
from imgbench.core.job import Job
from imgbench.core.names import Cache, CacheScope
from imgbench.measure import cache
from imgbench.measure.results import Result
from imgbench.stores import get_store
from imgbench.stores.base import Store

#: Free space below which a failed write counts as "disk full": not every library says ENOSPC
#: (LMDB reports EIO from its commit, SQLite "database or disk is full", numpy a short write).
NEARLY_FULL_BYTES = 16 << 20


def _nearly_full(path: Path) -> bool:
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize < NEARLY_FULL_BYTES


@contextlib.contextmanager
def disk_full_is_clear(job: Job) -> Iterator[None]:
    """Turn ENOSPC from any library (OSError, h5py, lmdb) into one line with the fix."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if (
            getattr(exc, "errno", None) == errno.ENOSPC
            or "No space left" in str(exc)
            or _nearly_full(job.store.parent)
        ):
            raise StoreError(
                f"{job.store}: no space left on device while writing the {job.fmt} store "
                f"({' '.join(str(exc).split())}); free space or move results/ to a larger "
                "file system, then rerun"
            ) from None
        raise


@contextlib.contextmanager
def damage_is_clear(job: Job) -> Iterator[None]:
    """Any library error while reading a store becomes one line naming the store and the fix
    (formats name the file or key themselves where they can)."""
    try:
        yield
    except BenchError:
        raise
    except Exception as exc:
        raise StoreError(
            f"{job.store}: cannot read the {job.mode} {job.fmt} store ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); it is damaged or incomplete: delete it and rerun "
            "the build"
        ) from None


def open_store(job: Job, workers: int | None = None) -> Store:
    return get_store(job.fmt, job.mode, job.options, job.workers if workers is None else workers)


def sample_ids(n_images: int, k: int, seed: int = 0) -> list[int]:
    """*k* distinct image ids spread over the data set (fixed seed: same ids every run)."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_images, size=min(k, n_images), replace=False))


def _joined(old: str | None, new: str) -> str:
    """Comma-joined set of the values seen over the repeats (usually just one)."""
    return ",".join(sorted(set(filter(None, (old or "").split(","))) | {new}))


def prepare_cache(res: Result, job: Job, path: Path, files: list[Path]) -> None:
    """Right before a timed read: evict and prove it cold, or make and prove it warm.

    Cold: nothing of the store is opened after :func:`cache.evict` returns (a ``full``
    eviction dropped its inodes and dentries too). Warm: read in first if needed.
    """
    if job.cache in (Cache.COLD, Cache.CAPPED):
        ev = cache.evict(path, job.evict, files)
        res.evict_method = _joined(res.evict_method, ev.method)
        res.cache_scope = _joined(res.cache_scope, ev.scope)
        res.resident_fraction.append(ev.fraction)
    else:
        fraction = cache.make_resident(files)
        warm = fraction >= cache.WARM_LIMIT
        scope = CacheScope.RESIDENT if warm else CacheScope.PARTIAL
        res.cache_scope = _joined(res.cache_scope, scope)
        res.resident_fraction.append(fraction)
