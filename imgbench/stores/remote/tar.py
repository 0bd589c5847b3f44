"""WebDataset tar shards from object storage: ranged GETs by the index, or whole shards streamed.

The tuned local store (:mod:`imgbench.stores.tar`) is ``shard-NNNNNN.tar`` files, the
offset index ``index.npy`` (shard, data offset of each image's ``.npy`` member),
``labels.npy`` and ``shards.json`` (shape, member size, each shard's size). A reader opens
the store with one LIST of the prefix (a missing or truncated shard fails here, naming it)
and one GET each of the three metadata objects.

* Batches (``access`` "range"): one ranged GET per image of its ``.npy`` member (header and
  pixels, ``member_size`` bytes) at its indexed offset: what ``wids`` does with indexed tars,
  over HTTP. Each member's ``.npy`` header is compared with the expected one.
* The full read (``full_access`` "stream") and streamed epochs (:meth:`stream_shards`, the
  ``buffered`` pattern): each shard object GET whole, ``requests_in_flight`` shards at
  once per reader, its image members taken out through the index as the local
  :func:`imgbench.stores.tar.stream` does (tar header of the first member checked, every
  ``.npy`` header compared), then passed through WebDataset's shuffle buffer exactly as the
  local store does (same seed, same order of samples out).
"""

from __future__ import annotations

import contextlib
import json
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores.remote.base import Reader, RemoteStore, in_flight
from imgbench.stores.remote.npy import load_npy
from imgbench.stores.s3 import S3Client
from imgbench.stores.tar import BLOCK, INDEX, LABELS, META, npy_header, shuffle_buffered

AGAIN = "upload the store again"


class _Opened:
    """A remote tar store's metadata, checked against the objects' sizes from one LIST."""

    def __init__(self, store: RemoteTar, client: S3Client) -> None:
        target = store.target
        self.client = client
        where = client.uri(target.key(META))
        meta_raw = client.get(target.key(META))
        try:
            meta = json.loads(meta_raw)
            info = meta["imgbench"]
            if info.get("payload") == "encoded":
                raise ValueError("an encoded-payload store: only pixel stores are read from S3")
            self.shape = tuple(int(x) for x in info["shape"])
            self.size, n = int(info["member_size"]), int(info["n"])
            self.keys = [target.key(s["url"]) for s in meta["shardlist"]]
            counts = [int(s["nsamples"]) for s in meta["shardlist"]]
            self.file_sizes = [int(x) for x in info["file_sizes"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{where}: unreadable tar-store metadata ({exc}); {AGAIN}") from None
        self.counts = counts
        self.index = load_npy(client, target.key(INDEX))
        self.labels = load_npy(client, target.key(LABELS))
        self.header = np.frombuffer(npy_header(self.shape), dtype=np.uint8)
        self.hlen = len(self.header)
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        if (
            n != store.n
            or self.shape != store.image_shape
            or self.size != self.hlen + int(np.prod(self.shape))
            or self.index.shape != (n, 2)
            or self.labels.shape != (n,)
            or self.starts[-1] != n
            or len(self.file_sizes) != len(self.keys)
        ):
            raise StoreError(
                f"{target.url()}: index, labels and shards.json disagree with each other or "
                f"with {store.n} images of {store.image_shape}; {AGAIN}"
            )
        listed = client.list(target.prefix.rstrip("/") + "/")
        for key, want in zip(self.keys, self.file_sizes, strict=True):
            if key not in listed:
                raise StoreError(f"{client.uri(key)}: no such object; {AGAIN}")
            if listed[key] != want:
                raise StoreError(
                    f"{client.uri(key)}: {listed[key]} bytes, expected {want}: the object is "
                    "truncated; upload it again"
                )
        offs = self.index[:, 1]
        ends = np.asarray(self.file_sizes, dtype=np.int64)[self.index[:, 0]] if n else offs
        shards = np.repeat(np.arange(len(counts)), counts)
        if not np.array_equal(self.index[:, 0], shards) or (
            n and (offs.min() < BLOCK or np.any(offs + self.size > ends))
        ):
            raise StoreError(f"{client.uri(target.key(INDEX))}: offsets are damaged; {AGAIN}")

    def pixels(self, members: np.ndarray, out: np.ndarray, where: str) -> None:
        """Check the ``.npy`` header of every member row, copy the pixels into *out*."""
        if not np.array_equal(
            members[:, : self.hlen], np.broadcast_to(self.header, (len(members), self.hlen))
        ):
            raise StoreError(f"{where}: an image member has a damaged .npy header; {AGAIN}")
        out.reshape(len(members), self.size - self.hlen)[:] = members[:, self.hlen :]

    def shard(self, s: int, out: np.ndarray | None = None) -> np.ndarray:
        """Shard *s* GET whole (one request), its images taken out by the index."""
        a, b = int(self.starts[s]), int(self.starts[s + 1])
        out = np.empty((b - a, *self.shape), dtype=np.uint8) if out is None else out
        if b == a:
            return out
        key, uri = self.keys[s], self.client.uri(self.keys[s])
        buf = np.frombuffer(self.client.get(key, self.file_sizes[s]), dtype=np.uint8)
        offs = self.index[a:b, 1]
        first = int(offs[0])
        try:
            info = tarfile.TarInfo.frombuf(buf[first - BLOCK : first].tobytes(), "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError) as exc:
            raise StoreError(f"{uri}: bad tar header ({exc}); {AGAIN}") from None
        stem, _, ext = info.name.partition(".")
        if ext != "npy" or info.size != self.size or not stem.isdigit() or int(stem) != a:
            raise StoreError(f"{uri}: member {info.name!r} is not image {a}; {AGAIN}")
        stride = np.diff(offs)
        if len(offs) == 1 or np.all(stride == stride[0]):  # the fixed stride of ustar samples
            step = int(stride[0]) if len(stride) else self.size
            members = np.lib.stride_tricks.as_strided(
                buf[first:], shape=(b - a, self.size), strides=(step, 1), writeable=False
            )
        else:
            members = buf[offs[:, None] + np.arange(self.size)]
        self.pixels(members, out, uri)
        return out

    def image(self, i: int, out: np.ndarray, row: int) -> None:
        """Image *i* by one ranged GET of its ``.npy`` member, into ``out[row]``."""
        s, off = (int(x) for x in self.index[i])
        key = self.keys[s]
        data = np.frombuffer(self.client.get(key, self.size, off), dtype=np.uint8)
        self.pixels(data.reshape(1, self.size), out[row : row + 1], self.client.uri(key))


def _ahead(
    pool: ThreadPoolExecutor | None,
    depth: int,
    fn: Callable[[int], np.ndarray],
    order: Sequence[int],
) -> Iterator[np.ndarray]:
    """``fn(s)`` for each shard of *order*, in order, *depth* running at once on the pool
    (the next shards download while this one is consumed)."""
    if pool is None:
        yield from (fn(s) for s in order)
        return
    pending: list[Future[np.ndarray]] = [pool.submit(fn, s) for s in order[:depth]]
    for k in range(len(order)):
        result = pending.pop(0).result()
        if k + depth < len(order):
            pending.append(pool.submit(fn, order[k + depth]))
        yield result


class RemoteTar(RemoteStore):
    format = "tar"
    access = "range"
    full_access = "stream"
    in_flight = (
        "batches: a pool of requests_in_flight threads per reader, one ranged GET per image "
        "each; full read and streamed epochs: requests_in_flight whole-shard GETs at once"
    )
    tuned_for_s3 = (
        "tar_shard_images sets the streamed GET size and how many shards readers can split: "
        "profiles/s3 builds 1,000 (~4 MB CIFAR shards, 10 for its 10,000-image store, so 2 "
        "readers split them; the local default 10,000 would make that store one shard); "
        "ustar members at a fixed stride make each image one "
        "contiguous range by the index, so a batch reads no padding"
    )

    #: the store opened by the current :meth:`batch_reader` (its connections and metadata)
    _open: _Opened | None = None

    def shard_sizes(self, path: Path | str = "") -> list[int]:
        """Samples per shard, in shard order (the ``buffered`` pattern deals shards to
        readers); from ``shards.json`` alone, one GET."""
        client = self.target.client()
        key = self.target.key(META)
        try:
            return [int(s["nsamples"]) for s in json.loads(client.get(key))["shardlist"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{client.uri(key)}: unreadable tar-store metadata ({exc}); {AGAIN}"
            ) from None

    def stream_shards(
        self, path: Path | str, shards: Sequence[int], shuffle_buffer: int, seed: int
    ) -> Iterator[tuple[int, np.ndarray, int]]:
        """Samples of *shards* in the order given, each shard one streaming GET, through a
        shuffle buffer: the same samples in the same order as the local ``stream``."""
        # the reader's open store when run_stream calls this inside batch_reader (as it does)
        store = self._open or _Opened(self, self.target.client())
        order = [int(s) for s in shards]

        def samples(pool: ThreadPoolExecutor | None) -> Iterator[tuple[int, np.ndarray, int]]:
            shard_images = _ahead(pool, self.requests_in_flight, store.shard, order)
            for s, images in zip(order, shard_images, strict=True):
                start = int(store.starts[s])
                for j, label in enumerate(store.labels[start : start + len(images)].tolist()):
                    yield start + j, images[j], label

        with self.pool() as pool:
            yield from shuffle_buffered(samples(pool), shuffle_buffer, random.Random(seed))

    def _read(
        self, store: _Opened, pool: ThreadPoolExecutor | None, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.target.url()}: index out of range 0..{self.n - 1}")
        out = np.empty((len(idx), *self.image_shape), dtype=np.uint8)
        rows = idx.tolist()
        in_flight(pool, lambda r: store.image(rows[r], out, r), range(len(rows)))
        return out, store.labels[idx]

    @contextlib.contextmanager
    def batch_reader(self, path: Path | str = "") -> Iterator[Reader]:
        store = _Opened(self, self.target.client())  # in the forked reader, not the parent
        self._open = store
        try:
            with self.pool() as pool:
                yield lambda indices: self._read(store, pool, indices)
        finally:
            self._open = None

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        store = _Opened(self, self.target.client())
        out = np.empty((self.n, *self.image_shape), dtype=np.uint8)

        def one(s: int) -> None:
            store.shard(s, out[store.starts[s] : store.starts[s + 1]])

        with self.pool() as pool:
            in_flight(pool, one, range(len(store.keys)))
        return out, store.labels
