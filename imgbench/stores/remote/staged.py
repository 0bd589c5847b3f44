"""Formats that cannot read from an object store, staged: LMDB (a memory map of one file),
SQLite (its VFS reads a local file) and LevelDB (its Env reads local files) are downloaded
whole to local disk first, then read there by the local tuned store's own reader.

:meth:`StagedStore.stage` lists the store's prefix and downloads every object into
``stage_dir`` the way ``aws s3 cp --recursive`` does: objects in parallel, and an object larger
than 8 MiB (the AWS CLI's default ``multipart_chunksize``) as 8 MiB ranged GETs in parallel,
each written at its offset; ``requests_in_flight`` GETs in flight in all. Without the split an
LMDB or SQLite store (one large file) would download over one connection whatever
``requests_in_flight`` says. Every GET is checked for its size (:class:`S3Client`), and the
files the format cannot open without are checked to be listed, each named if missing.

Reads then go through ``self.local`` (the local tuned Store) on the staged directory; its
errors name the staged files, rewritten here to the objects they came from.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores.remote.base import RemoteStore
from imgbench.stores.s3 import S3Client

FIX = "upload the store again"
#: objects larger than this download as ranged GETs of this size (the AWS CLI's default
#: multipart_chunksize)
PART = 8 * 1024 * 1024
#: the local stores' own advice, replaced by FIX in their errors about a staged copy
_LOCAL_FIX = re.compile(
    r";\s*(delete the store directory and rerun the build|rebuild( the store| it)?)\s*$"
)


def download(client: S3Client, objects: dict[str, str], sizes: dict[str, int], threads: int) -> int:
    """Every object key of ``objects`` (key -> local file) of its listed size, in ``PART``
    ranges, ``threads`` GETs at a time, each written at its offset; returns the bytes."""
    jobs: list[tuple[str, int, int]] = []
    for key, dest in objects.items():
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as f:
            f.truncate(sizes[key])
        jobs += [(key, a, min(PART, sizes[key] - a)) for a in range(0, sizes[key], PART)]
    fds = {key: os.open(dest, os.O_WRONLY) for key, dest in objects.items()}
    try:

        def one(job: tuple[str, int, int]) -> int:
            key, start, size = job
            data = client.get(key, size, start)  # size-checked: a cut-off GET raises
            os.pwrite(fds[key], data, start)
            return len(data)

        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="stage") as pool:
            return sum(pool.map(one, jobs))
    finally:
        for fd in fds.values():
            os.close(fd)


class StagedStore(RemoteStore):
    """Download the store, then read the local copy with the local tuned Store."""

    access = "staged"
    in_flight = (
        "stage(): requests_in_flight GETs at a time (objects in parallel, large objects as "
        "8 MiB ranges); reads are local, as the local store reads"
    )
    #: files the local library cannot open without (their absence from the listing is
    #: named; other missing files are named by the local store's own checks)
    required: ClassVar[tuple[str, ...]] = ()

    def stage(self) -> dict[str, Any]:
        if self.stage_dir is None:
            raise StoreError(f"{self.format}: a staged store needs a stage_dir to download into")
        stage = Path(self.stage_dir)
        if stage.exists() and any(stage.iterdir()):
            raise StoreError(f"{stage}: stage directory is not empty; stage into a new one")
        t0 = time.perf_counter()
        client = self.target.client()
        base = self.target.prefix.strip("/") + "/"
        sizes = {k: v for k, v in client.list(base).items() if not k.endswith("/")}
        for rel in self.required:
            if self.target.key(rel) not in sizes:
                raise StoreError(f"{self.target.url(rel)}: no such object; {FIX}")
        if not sizes:
            raise StoreError(f"{self.target.url()}: no objects under this prefix; {FIX}")
        stage.mkdir(parents=True, exist_ok=True)
        objects = {key: str(stage / key[len(base) :]) for key in sizes}
        got = download(client, objects, sizes, self.requests_in_flight)
        self.staged = {
            "stage_s": time.perf_counter() - t0,
            "stage_bytes": got,
            "stage_objects": len(sizes),
        }
        return self.staged

    def _path(self) -> Path:
        if not self.staged or self.stage_dir is None:
            raise StoreError(f"{self.target.url()}: not staged yet; call stage() first")
        return Path(self.stage_dir)

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """The local store's errors name the staged files: name the objects instead."""
        try:
            yield
        except IndexError:
            raise
        except Exception as e:  # the local libraries' own errors (lmdb, plyvel, sqlite3)
            local, url = str(self.stage_dir), self.target.url()
            why = " ".join(str(e).split()).replace(local, url)
            if not isinstance(e, StoreError):
                why = f"{type(e).__name__}: {why}"
            raise StoreError(f"{_LOCAL_FIX.sub('', why)} (staged copy of {url}); {FIX}") from e

    @contextlib.contextmanager
    def batch_reader(self, path: Path | str = "") -> Iterator[Callable]:
        stage = self._path()
        with self._named(), self.local.batch_reader(stage) as read:

            def named_read(indices: Any) -> tuple[np.ndarray, np.ndarray]:
                with self._named():
                    return read(indices)

            yield named_read

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        stage = self._path()
        with self._named():
            return self.local.read_many(stage)


class StagedLmdb(StagedStore):
    format = "lmdb"
    required = ("data.mdb",)
    tuned_for_s3 = (
        "none of LMDB's options matter over S3: the store is one data.mdb downloaded in "
        "8 MiB ranges, then memory-mapped locally; lmdb_map_headroom only sets the map size"
    )


class StagedSqlite(StagedStore):
    format = "sqlite"
    required = ("store.sqlite",)  # imgbench.stores.sqlite.FILE
    tuned_for_s3 = (
        "none over S3: one store.sqlite downloaded in 8 MiB ranges; sqlite_page_size 16384 "
        "keeps the file 1.07x the raw bytes (vs 1.34x at 4 KB), so 20 % fewer bytes to stage"
    )


class StagedLeveldb(StagedStore):
    format = "leveldb"
    required = ("db/CURRENT",)
    tuned_for_s3 = (
        "none over S3 but size: table files (~batch x image bytes each, leveldb_batch_images "
        "10000) download in parallel; leveldb_compression null (random pixels do not shrink)"
    )
