"""One function per pipeline stage. Rules call these through ``workflow/scripts/step.py``.

Every function takes plain paths and values (no Snakemake objects), so each stage can be
unit-tested and run by hand. Timed stages write one JSON result (see
:class:`imgbench.timing.Result`); the timed section covers only the store operation:
loading the source, eviction, residency checks and verification happen outside it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from imgbench import cache, verify
from imgbench.atomic import atomic_path, fsync_tree, remove
from imgbench.data import read_cifar_archive, save_arrays
from imgbench.du import disk_use
from imgbench.errors import StoreError
from imgbench.stores import get_store
from imgbench.timing import Result, measure

log = logging.getLogger(__name__)

COLD_LIMIT = 0.05  # a cold repeat with more of the store resident than this is refused
VERIFY_CHUNK = 8192


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic JSON write (a killed job never leaves a truncated result)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def load_source(images: Path, labels: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map the repeated data set and return its first *n* images and labels."""
    imgs = np.load(images, mmap_mode="r")
    labs = np.load(labels, mmap_mode="r")
    if n > len(imgs) or len(imgs) != len(labs):
        raise StoreError(
            f"{images}: holds {len(imgs)} images and {len(labs)} labels, need {n}; "
            "rerun the double step (is the cutoff above n_images?)"
        )
    return imgs[:n], labs[:n]


def verify_chunked(
    what: str, got: tuple[np.ndarray, np.ndarray], src_images: np.ndarray, src_labels: np.ndarray
) -> None:
    """Exact comparison in chunks, so verifying 100k images needs no second full copy."""
    images, labels = got
    if images.shape != src_images.shape or labels.shape != src_labels.shape:
        verify.check(what, images, labels, src_images, src_labels)  # raises: says which shape
    for s in range(0, len(images), VERIFY_CHUNK):
        e = s + VERIFY_CHUNK
        verify.check(what, images[s:e], labels[s:e], src_images[s:e], src_labels[s:e], s)


@contextlib.contextmanager
def _disk_full_is_clear(store_out: Path, fmt: str) -> Iterator[None]:
    """Turn ENOSPC from any library (OSError, h5py, lmdb) into one line with the fix."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
            raise StoreError(
                f"{store_out}: no space left on device while writing the {fmt} store "
                f"({' '.join(str(exc).split())}); free space or move results/ to a larger "
                "file system, then rerun"
            ) from None
        raise


def _save(res: Result, result_out: Path) -> dict[str, Any]:
    """Stamp the end time, write the result JSON atomically, return it."""
    out = res.finish()
    write_json(result_out, out)
    return out


def unpickle(archive: Path, images_out: Path, labels_out: Path) -> None:
    """Safely read the five training batches into two .npy files."""
    images, labels = read_cifar_archive(Path(archive))
    save_arrays(images, labels, Path(images_out), Path(labels_out))


def build_store(
    fmt: str,
    mode: str,
    options: Mapping[str, Any],
    workers: int,
    images: Path,
    labels: Path,
    n: int,
    repeats: int,
    warmup: int,
    store_out: Path,
    result_out: Path,
    config_hash: str,
) -> dict[str, Any]:
    """Build the store *repeats* (+ *warmup*) times from scratch, keep the last one.

    Each build goes to a temporary sibling directory that is renamed to *store_out* only
    after the last timed build has completed and been flushed to disk.
    """
    store_out = Path(store_out)
    res = Result(
        fmt,
        mode,
        "write_many",
        "none",
        n,
        repeats=repeats,
        warmup=warmup,
        threads=workers,
        config_hash=config_hash,
    )
    src_images, src_labels = load_source(images, labels, n)
    src_images, src_labels = np.array(src_images), np.array(src_labels)  # in RAM, untimed
    store = get_store(fmt, mode, options, workers)
    fsync_s: list[float] = []

    with atomic_path(store_out) as tmp:

        def fresh(timed: bool) -> None:
            remove(tmp)
            tmp.mkdir(parents=True)
            # Flush the previous build's deletion now, so its writeback does not land inside
            # the next timed build (seen: 100k-PNG builds slowing from 45 s to 85 s).
            fsync_tree(tmp)

        def flushed(_: object, timed: bool) -> None:
            t0 = time.perf_counter()
            fsync_tree(tmp)
            fsync_s.append(time.perf_counter() - t0)
            log.info(
                "build %s/%s n=%d: %s build done", mode, fmt, n, "timed" if timed else "warmup"
            )

        with _disk_full_is_clear(store_out, fmt):
            res.samples = measure(
                lambda: store.write_many(tmp, src_images, src_labels),
                repeats,
                warmup,
                before=fresh,
                after=flushed,
                warmups=res.warmup_samples,
            )
    res.extra["fsync_s"] = fsync_s
    res.extra["options"] = dict(store.options)
    return _save(res, result_out)


def read_many(
    fmt: str,
    mode: str,
    options: Mapping[str, Any],
    workers: int,
    store_path: Path,
    images: Path,
    labels: Path,
    n: int,
    cache_state: str,
    repeats: int,
    warmup: int,
    evict_method: str,
    result_out: Path,
    config_hash: str,
) -> dict[str, Any]:
    """Time reading the whole store into arrays, warm or cold, verifying every read."""
    store_path = Path(store_path)
    res = Result(
        fmt,
        mode,
        "read_many",
        cache_state,
        n,
        repeats=repeats,
        warmup=warmup,
        threads=workers,
        config_hash=config_hash,
    )
    src_images, src_labels = load_source(images, labels, n)
    store = get_store(fmt, mode, options, workers)
    files = cache.store_files(store_path)  # listed once: 100k PNG files take a second

    def before(timed: bool) -> None:
        if timed:
            _prepare_cache(store_path, cache_state, evict_method, res, files)

    def after(got: tuple[np.ndarray, np.ndarray], timed: bool) -> None:
        verify_chunked(f"{store_path} ({mode} {fmt})", got, src_images, src_labels)

    res.samples = measure(
        lambda: store.read_many(store_path), repeats, warmup, before, after, res.warmup_samples
    )
    res.verified = True
    return _save(res, result_out)


def sample_ids(n_images: int, k: int, seed: int = 0) -> list[int]:
    """*k* distinct image ids spread over the data set (fixed seed: same ids every run)."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_images, size=min(k, n_images), replace=False))


def write_one(
    fmt: str,
    mode: str,
    options: Mapping[str, Any],
    images: Path,
    labels: Path,
    n_images: int,
    samples: int,
    repeats: int,
    warmup: int,
    stores_out: Path,
    result_out: Path,
    config_hash: str,
) -> dict[str, Any]:
    """Time storing one image in its own store, for many ids; keep the last stores."""
    stores_out = Path(stores_out)
    ids = sample_ids(n_images, samples)
    src_images, src_labels = load_source(images, labels, n_images)
    store = get_store(fmt, mode, options, 1)
    res = Result(
        fmt, mode, "write_one", "none", 1, repeats=repeats, warmup=warmup, config_hash=config_hash
    )
    with atomic_path(stores_out) as tmp, _disk_full_is_clear(stores_out, fmt):
        for r in range(warmup + repeats):
            remove(tmp)
            tmp.mkdir(parents=True)
            for i in ids:
                d = tmp / f"{i:08}"
                d.mkdir()
                image, label = np.array(src_images[i]), int(src_labels[i])
                s = measure(partial(store.write_one, d, image, label), 1)
                (res.samples if r >= warmup else res.warmup_samples).extend(s)
        fsync_tree(tmp)
        res.extra["single_store_disk"] = disk_use(tmp / f"{ids[0]:08}")
    res.extra["ids"] = ids
    return _save(res, result_out)


def _check_one(
    what: str, src_image: np.ndarray, src_label: int, got: tuple[np.ndarray, int], timed: bool
) -> None:
    image, label = got
    verify.check(
        what,
        np.asarray(image)[None],
        np.asarray([label], np.uint8),
        np.asarray(src_image)[None],
        np.asarray([src_label], np.uint8),
    )


def _prepare_cache(
    path: Path,
    cache_state: str,
    method: str,
    res: Result,
    files: list[Path] | None = None,
) -> None:
    """Before a timed read: evict and prove it cold, or record how warm it is."""
    if cache_state == "cold":
        used, fraction = cache.evict_cold(path, method, COLD_LIMIT, files)
        seen = set(filter(None, (res.evict_method or "").split(","))) | {used}
        res.evict_method = ",".join(sorted(seen))
        res.resident_fraction.append(fraction)
    else:
        res.resident_fraction.append(cache.resident_fraction(files or cache.store_files(path)))


def read_one(
    fmt: str,
    mode: str,
    options: Mapping[str, Any],
    stores_dir: Path,
    images: Path,
    labels: Path,
    n_images: int,
    cache_state: str,
    repeats: int,
    warmup: int,
    evict_method: str,
    result_out: Path,
    config_hash: str,
) -> dict[str, Any]:
    """Time reading one image from its single-image store, warm or cold, verified."""
    stores_dir = Path(stores_dir)
    src_images, src_labels = load_source(images, labels, n_images)
    store = get_store(fmt, mode, options, 1)
    res = Result(
        fmt,
        mode,
        "read_one",
        cache_state,
        1,
        repeats=repeats,
        warmup=warmup,
        config_hash=config_hash,
    )
    ids = sorted(int(p.name) for p in stores_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not ids:
        raise StoreError(f"{stores_dir}: no single-image stores; rerun the write_one step")
    for r in range(warmup + repeats):
        timed = r >= warmup
        for i in ids:
            d = stores_dir / f"{i:08}"
            if timed:
                _prepare_cache(d, cache_state, evict_method, res)
            check = partial(_check_one, f"{d} ({mode} {fmt})", src_images[i], src_labels[i])
            [dt] = measure(partial(store.read_one, d), 1, after=check)
            (res.samples if timed else res.warmup_samples).append(dt)
    res.verified = True
    res.extra["ids"] = ids
    return _save(res, result_out)


def du(store: Path, result_out: Path, fmt: str, mode: str, n: int) -> dict[str, Any]:
    """Disk use of one store as a JSON result."""
    start = time.time()
    out = {
        "format": fmt,
        "mode": mode,
        "n_images": n,
        **disk_use(Path(store)),
        "start": start,
        "end": time.time(),
    }
    write_json(result_out, out)
    return out
