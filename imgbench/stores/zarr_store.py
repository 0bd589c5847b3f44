"""Zarr v3 (zarr-python 3): one group with a sharded ``images`` array and a ``labels`` array.

Layout (``path`` is the group)::

    zarr.json                  group metadata; attribute ``label_dtype`` (numpy dtype string)
    images/zarr.json           (N, H, W, C) uint8, codec ``sharding_indexed``
    images/c/<s>/0/0/0         one shard object: ``zarr_shard_images`` images packed as inner
                               chunks of ``zarr_chunk_images`` images (compressed with
                               ``zarr_compressor``, + a crc32c if ``zarr_checksum``), the shard
                               index (with its own crc32c) at the end
    labels/zarr.json           (N,) in the labels' own integer dtype
    labels/c/0                 all labels in one chunk (+ crc32c)

Encoded payload (issue 13): ``images`` is then (N,) of zarr's variable-length bytes type
(``VLenBytesCodec``; each element the original file's bytes, unchanged), chunked and
sharded by the same image counts and options; the group attribute ``payload`` is
``encoded``. zarr-python warns that this type has no Zarr v3 specification yet (other
Zarr libraries may not read it); accepted here, the warning is silenced.

Why this layout. The zarr docs (https://zarr.readthedocs.io/en/stable/user-guide/performance/)
advise chunks of >= 1 MB uncompressed, which is advice for streaming; the sharding codec
(https://zarr.readthedocs.io/en/stable/user-guide/arrays/, "Sharding") lets small inner chunks
live in a few shard files, so random access does not need millions of files. Measured here
(100k CIFAR images, 2 shared cores, rough): zarr-python spends ~0.3 ms of Python/asyncio work
per inner chunk a read touches, whatever the chunk's size, plus one shard-index read per shard
touched. A shuffled batch of 256 touches ~250 inner chunks with 1-image and with 64-image
chunks alike, so the chunk size hardly changes random access (~2.5-4k images/s for every
layout tried), while a full read with 1-image chunks is 100k chunk reads (8 s, and a 10 s
write) against ~0.2 s with 64-image chunks. Fewer, larger shards save index reads: 8192-image
shards (13 objects of 25 MB for 100k) read shuffled batches ~1.5x faster than 1024-image
shards; larger shards gained nothing more. Hence the defaults: 64-image inner chunks (192 KB
for CIFAR, below the 1 MB advice: each random image reads its whole inner chunk) in
8192-image shards. Larger images would want fewer images per chunk (the option counts images).

Reads. A batch is one orthogonal selection (``oindex``) with sorted unique indices, then
reordered (as hdf5.py): one zarr call per batch, which zarr runs as concurrent chunk reads
(per-image ``arr[i]`` calls were slower). Labels are read once per reader and indexed in
memory. A forked reader is safe: zarr resets its event loop and thread pool in the child
(``os.register_at_fork`` in ``zarr.core.sync``) and the store is opened inside
``batch_reader``, i.e. in the child. ``async.concurrency`` is pinned to zarr's default, 10:
1, 4, 10 and 32 measured alike warm on 2 cores; concurrency overlaps cold-cache reads.

Integrity. zarr silently returns the fill value for a missing (or empty) chunk or shard
file. Reads therefore go through :class:`_StrictLocalStore`, which raises for those, and every
shard is written (``write_empty_chunks``). Shard indexes carry a crc32c (zarr's default), so a
truncated shard fails its index check. ``zarr_checksum`` adds a crc32c to every inner chunk so
that a flipped byte raises too; off by default (like npy and HDF5 here): it costs ~10-15 %
CPU on shuffled batches, which checksum 64 images per image read.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec
from zarr.core.dtype import VariableLengthBytes
from zarr.errors import UnstableSpecificationWarning
from zarr.storage import LocalStore

from imgbench.core.errors import StoreError
from imgbench.stores.base import Store

#: zarr_compressor values -> codec factory (None: no compression; random pixels do not compress)
COMPRESSORS: dict[str, Callable[[], Any]] = {
    "zstd": ZstdCodec,
    "blosc": BloscCodec,
    "gzip": GzipCodec,
}
#: zarr-python settings while this module reads or writes (see the module docstring)
ZARR_CONFIG = {"async.concurrency": 10}
ARRAY_CONFIG = {"write_empty_chunks": True}  # every shard exists: a missing one is damage


def _missing(root: Path, key: str, buf: Any) -> StoreError:
    what = "missing" if buf is None else "empty"
    return StoreError(
        f"{root / key}: chunk/shard file {what} (zarr would return fill values); "
        "delete the store directory and rerun the build"
    )


@contextlib.contextmanager
def _damage(path: Path) -> Iterator[None]:
    """Turn zarr's failures on a damaged store (a failed crc32c, unreadable metadata, a
    missing array) into one line that names the store and what to do."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError) as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise StoreError(
            f"{path}: zarr store is damaged or incomplete ({why}); a shard, chunk or metadata "
            "file is truncated, corrupt or missing; delete the store directory and rerun the build"
        ) from exc


class _StrictLocalStore(LocalStore):
    """A LocalStore that raises for a missing chunk or shard instead of returning ``None``
    (which zarr turns into fill values). Metadata probes (``zarr.json``, v2 ``.zarray``...)
    are not chunk keys and still return ``None`` when absent."""

    @staticmethod
    def _is_chunk(key: str) -> bool:
        return "/c/" in f"/{key}"

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        buf = await super().get(key, prototype, byte_range)
        if self._is_chunk(key) and (buf is None or len(buf) == 0):
            raise _missing(Path(self.root), key, buf)
        return buf

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
        key_ranges = list(key_ranges)
        out = await super().get_partial_values(prototype, key_ranges)
        for (key, _), buf in zip(key_ranges, out, strict=True):
            if self._is_chunk(key) and (buf is None or len(buf) == 0):
                raise _missing(Path(self.root), key, buf)
        return out


def _codecs(name: str | None, checksum: bool) -> list[Any]:
    """Bytes-to-bytes codecs of an inner chunk: the compressor if any, then a crc32c if
    *checksum* (zarr's order: compress, then checksum the stored bytes)."""
    codecs = [Crc32cCodec()] if checksum else []
    if name is None or str(name).lower() in ("", "none"):
        return codecs
    if str(name).lower() not in COMPRESSORS:
        raise ValueError(f"zarr_compressor {name!r}: use null or one of {sorted(COMPRESSORS)}")
    return [COMPRESSORS[str(name).lower()](), *codecs]


def layout(n: int, chunk: int, shard: int) -> tuple[int, int]:
    """Inner chunk and shard sizes in images, clipped to the data (a 1-image store does not
    write a 1024-image shard); the shard stays a multiple of the chunk, as sharding needs."""
    chunk, shard = int(chunk), int(shard)
    if chunk < 1 or shard < chunk or shard % chunk:
        raise ValueError(
            f"zarr_chunk_images={chunk}, zarr_shard_images={shard}: need chunk >= 1 and a "
            "shard that is a multiple of the chunk"
        )
    chunk = min(chunk, max(1, n))
    shard = min(shard, -(-max(1, n) // chunk) * chunk)
    return chunk, shard - shard % chunk


@contextlib.contextmanager
def _open(path: Path, encoded: bool = False) -> Iterator[tuple[zarr.Array, np.ndarray]]:
    """The images array and all labels (in memory, original dtype) of a store, with this
    module's zarr settings in force while the caller reads; *encoded*: of a store of
    encoded images (a 1-D variable-length bytes array)."""
    with zarr.config.set(ZARR_CONFIG):
        with _damage(path):
            group = zarr.open_group(_StrictLocalStore(path, read_only=True), mode="r")
            images, labels_arr = group["images"], group["labels"]
            dtype = np.dtype(str(group.attrs["label_dtype"]))
            labels = np.asarray(labels_arr[...]).astype(dtype, copy=False)
            payload = group.attrs.get("payload")
        if not isinstance(images, zarr.Array):
            raise StoreError(f"{path}: 'images' is not a zarr array; rebuild it")
        if encoded and (payload != "encoded" or images.ndim != 1):
            raise StoreError(f"{path}: not an encoded-payload imgbench zarr store; rebuild it")
        if not encoded and (images.ndim != 4 or images.dtype != np.uint8):
            raise StoreError(f"{path}: 'images' is not an (N, H, W, C) uint8 array; rebuild it")
        if labels.shape != images.shape[:1]:
            raise StoreError(f"{path}: {len(labels)} labels for {len(images)} images; rebuild it")
        yield images, labels


def _write_labels(group: zarr.Group, labels: np.ndarray) -> None:
    """All labels in one chunk, in their own dtype (native order), + a crc32c."""
    native = labels.dtype.newbyteorder("=")
    group.attrs["label_dtype"] = labels.dtype.str
    lab = group.create_array(
        "labels",
        shape=(len(labels),),
        dtype=native,
        chunks=(max(1, len(labels)),),
        compressors=[Crc32cCodec()],
        fill_value=0,
        config=ARRAY_CONFIG,
    )
    lab[...] = labels.astype(native, copy=False)


class TunedZarr(Store):
    format = "zarr"
    mode = "tuned"
    random_advice_why_not = (
        "zarr's LocalStore opens and reads the shard file itself for every chunk read, on its "
        "own threads: no descriptor or map outlives a read to be advised"
    )
    io_depth_why_not = (
        "zarr already reads a batch's chunks concurrently (async.concurrency = 10 reads in flight)"
    )

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        n, shape = len(images), images.shape[1:]
        chunk, shard = layout(
            n, self.options["zarr_chunk_images"], self.options["zarr_shard_images"]
        )
        with zarr.config.set(ZARR_CONFIG):
            group = zarr.open_group(LocalStore(path), mode="w")
            arr = group.create_array(
                "images",
                shape=images.shape,
                dtype=np.uint8,
                chunks=(chunk, *shape),
                shards=(shard, *shape),
                compressors=_codecs(
                    self.options["zarr_compressor"], bool(self.options["zarr_checksum"])
                ),
                fill_value=0,
                config=ARRAY_CONFIG,
            )
            arr[...] = images
            _write_labels(group, labels)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # A 1-D array of zarr's variable-length bytes type (VLenBytesCodec), chunked and
        # sharded by the same image counts, same compressor and checksum options.
        labels = np.asarray(labels)
        n = len(blobs)
        if len(labels) != n:
            raise ValueError(f"{n} blobs but {len(labels)} labels")
        chunk, shard = layout(
            n, self.options["zarr_chunk_images"], self.options["zarr_shard_images"]
        )
        data = np.empty(n, dtype=object)
        for i, blob in enumerate(blobs):
            data[i] = blob if isinstance(blob, bytes) else bytes(blob)
        with zarr.config.set(ZARR_CONFIG), warnings.catch_warnings():
            # zarr warns that this dtype has no Zarr v3 spec yet (readable by zarr-python
            # only, its representation may change): accepted, the store is this package's.
            warnings.simplefilter("ignore", UnstableSpecificationWarning)
            group = zarr.open_group(LocalStore(path), mode="w")
            group.attrs["payload"] = "encoded"
            arr = group.create_array(
                "images",
                shape=(n,),
                dtype=VariableLengthBytes(),
                chunks=(chunk,),
                shards=(shard,),
                compressors=_codecs(
                    self.options["zarr_compressor"], bool(self.options["zarr_checksum"])
                ),
                fill_value=b"",
                config=ARRAY_CONFIG,
            )
            arr[...] = data
            _write_labels(group, labels)

    def read_encoded(self, path: Path) -> tuple[list[bytes], np.ndarray]:
        # One read of the whole array, as read_many: zarr returns each element as bytes.
        with _open(path, encoded=True) as (images, labels), _damage(path):
            return images[...].tolist(), labels

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with _open(path) as (images, labels), _damage(path):
            return np.asarray(images[...]), labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        with _open(path) as (images, labels):
            yield lambda indices: self._batch(path, images, labels, indices)

    @staticmethod
    def _batch(
        path: Path, images: zarr.Array, labels: np.ndarray, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        # One orthogonal selection with increasing unique indices, reordered afterwards.
        idx = np.asarray(indices, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        with _damage(path):
            got = np.asarray(images.oindex[uniq])
        return got[inverse], labels[idx]

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        with _open(path) as (images, labels), _damage(path):
            return np.asarray(images[0]), int(labels[0])
