"""WebDataset tar shards, written with the standard library, plus a wids-style offset index.

Layout of a store directory:

- ``shard-000000.tar``, ``shard-000001.tar``, ...: POSIX ustar archives of
  ``tar_shard_images`` samples each, in index order. Sample *i* is two members with the
  key ``f"{i:08d}"``: ``<key>.npy`` (exactly the bytes ``np.save`` writes for the image, so
  WebDataset's default ``npy`` decoder yields the array) and ``<key>.cls`` (the label as
  ASCII digits, WebDataset's class convention). WebDataset groups consecutive members by
  the name up to the first dot, so these shards stream unchanged through
  ``webdataset.WebDataset`` or any tar reader (https://github.com/webdataset/webdataset,
  "The WebDataset Format").
- ``index.npy``: (N, 2) int64, the shard number and byte offset of each image's ``.npy``
  member data; every ``.npy`` member has the same size (one header, one shape).
- ``labels.npy``: the labels in their own dtype (uint16 for 1,000 classes stays uint16);
  this module's readers take the labels from here (the ``.cls`` members are for
  WebDataset readers and are not cross-checked).
- ``shards.json``: a wids dataset description (``wids_version`` 1 and a ``shardlist`` of
  ``url``/``nsamples``, as ``wids.ShardListDataset`` reads it) plus this store's metadata
  (image shape, label dtype, member size, expected shard file sizes).

Encoded payload (``write_encoded``, issue 13): the same shards, sample *i* being
``<key>.<ext>`` (the original file's bytes, unchanged; *ext* sniffed from its magic bytes:
``jpg``, ``png``, ``webp``, else ``bin``) and ``<key>.cls``: WebDataset's own layout for
images. ``index.npy`` is then (N, 3) int64: shard, data offset, length; ``shards.json``
says ``"payload": "encoded"``. ``read_encoded`` reads each shard whole into memory (one
copy) and returns every blob as a memoryview of it (no copy per blob).

Why no ``webdataset`` dependency: ``tarfile`` writes the same POSIX tar that WebDataset's
reader streams (its ``TarWriter`` is itself a thin layer over ``tarfile``), and random
access -- the training case -- needs an index of member offsets, which WebDataset's
streaming reader does not have (``wids`` builds one; this store writes it at build time).
ustar, not pax: no per-member extended headers, so every member header is one 512-byte
block and the samples of a shard sit at one fixed stride; mtime is a fixed 0, so shards
are byte-for-byte reproducible. Building the headers in ``tarfile`` costs tens of
microseconds per member, so shards are written in parallel (one shard per task) when the
job has several cores.

Reads go through the index, checked once per open: shard file sizes against the sizes
recorded at build time (a truncated shard raises :class:`StoreError` before anything is
mapped, so a map never runs past the end of a file), every image's shard and offset
against a fixed per-shard stride, and the tar header of each shard's first member. The
``.npy`` header is not parsed per image: each read compares the header bytes of every
member it returns with the one expected header, vectorized (the sizes are all equal).
``read_many`` streams the shards in order, each memory-mapped and its image members
copied out through one strided view: one copy, 1.7-2.8x the time of ``np.load`` of the
same pixels (the shards hold 1.67x the bytes). Reading each shard with ``readinto``
first was no faster (up to 3x slower), slicing per image ~4x slower, iterating
``tarfile`` ~35x. ``read_batch`` is the random access the streaming default lacks: the
shards stay mapped in ``batch_reader`` (as wids maps its indexed tars, ``MMIndexedTar``)
and a shuffled batch is one memoryview slice per image at its indexed offset, joined in
one copy. Measured (rough, shared 2-core VM, 100k CIFAR, batch 256, warm): one
``os.pread`` per image ~0.4 M images/s; numpy fancy indexing shard by shard 0.3-1.5 M
(slow with many shards); the joined slices 0.7-1.6 M whatever the shard count (npy
memmap fancy indexing: 1.5-3.6 M in the same runs).
The streaming default itself, :func:`stream`, has no random access at all: shards in a
shuffled order through a shuffle buffer, a partial shuffle.

Cost of the format: every member is padded to 512-byte blocks behind a 512-byte header,
so a 3,072-byte CIFAR image takes 5,120 bytes with its label (1.67x the raw pixels).
Shard size: shards of ~1 GB are common for streaming (Hugging Face, "WebDataset" hub
docs; WebDataset's "Sharding, Parallel I/O, and DataLoader" page: OpenImages in 554
shards of ~1 GB), and many shards are what lets workers read in parallel and shuffle
by shard. 10,000 CIFAR samples make ~51 MB shards, 10 of them at 100k; neither random
access nor ``read_many`` depends much on it here.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores._tar_encoded import (
    BLOCK,
    INDEX,
    LABELS,
    META,
    REBUILD,
    check_first_member,
    encoded_index,
    read_whole,
)
from imgbench.stores.base import (
    PARALLEL_MIN_IMAGES,
    Store,
    advise_maps,
    blob_ext,
    fork_map,
    shared_array,
)

MTIME = 0  # fixed: shards are reproducible byte for byte
WRITE_BUFFER = 1 << 24  # 16 MB writes, not one per member


def shard_name(s: int) -> str:
    """File name of shard *s* (WebDataset's usual ``-%06d.tar`` pattern)."""
    return f"shard-{s:06d}.tar"


def npy_header(shape: Sequence[int]) -> bytes:
    """The header ``np.save`` writes before a C-ordered uint8 array of *shape*."""
    buf = io.BytesIO()
    d = {"descr": "|u1", "fortran_order": False, "shape": tuple(int(x) for x in shape)}
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


# --- writing ------------------------------------------------------------------------------
# Forked writers inherit these module globals, so nothing large is pickled through pipes.
_SHARED: dict = {}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one member; return the offset of its data in the archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o444
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - -(-len(data) // BLOCK) * BLOCK  # the data ends padded to a block


def _write_shards(bounds: tuple[int, int]) -> None:
    """Write shards [first, stop): one tar file each, index rows into the shared array."""
    images, labels, index = _SHARED["images"], _SHARED["labels"], _SHARED["index"]
    path, per, width, header = _SHARED["path"], _SHARED["per"], _SHARED["width"], _SHARED["header"]
    for s in range(*bounds):
        with (
            open(path / shard_name(s), "wb", buffering=WRITE_BUFFER) as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for i in range(s * per, min(len(images), (s + 1) * per)):
                key = f"{i:0{width}d}"
                index[i] = s, _add(tar, f"{key}.npy", header + images[i].tobytes())
                _add(tar, f"{key}.cls", str(int(labels[i])).encode("ascii"))


def _describe(path: Path, n: int, per: int, shards: int, info: dict) -> None:
    """Write ``shards.json``: the wids shard list and this store's metadata *info*, with
    the shard files' sizes as written (checked on every open)."""
    sizes = [(path / shard_name(s)).stat().st_size for s in range(shards)]
    counts = [min(n, (s + 1) * per) - s * per for s in range(shards)]
    meta = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "shardlist": [
            {"url": shard_name(s), "nsamples": c, "filesize": z}
            for s, (c, z) in enumerate(zip(counts, sizes, strict=True))
        ],
        "imgbench": {**info, "file_sizes": sizes},
    }
    (path / META).write_text(json.dumps(meta, indent=1))


# --- reading ------------------------------------------------------------------------------
class _Shards:
    """An opened store: metadata, index and labels, checked against the shard files."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            meta = json.loads((self.path / META).read_text())
            info = meta["imgbench"]
            self.index = np.load(self.path / INDEX)
            self.labels = np.load(self.path / LABELS)
            self.shape = tuple(int(x) for x in info["shape"])
            self.size, self.n = int(info["member_size"]), int(info["n"])
            self.files = [self.path / s["url"] for s in meta["shardlist"]]
            counts = [int(s["nsamples"]) for s in meta["shardlist"]]
            sizes = [int(x) for x in info["file_sizes"]]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise StoreError(
                f"{self.path}: unreadable tar-store metadata ({exc}); {REBUILD}"
            ) from None
        self.header = np.frombuffer(npy_header(self.shape), dtype=np.uint8)
        self.hlen = len(self.header)
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        if (
            self.size != self.hlen + int(np.prod(self.shape))
            or self.index.shape != (self.n, 2)
            or self.labels.shape != (self.n,)
            or self.starts[-1] != self.n
            or len(sizes) != len(self.files)
        ):
            raise StoreError(f"{self.path}: index, labels and shards.json disagree; {REBUILD}")
        for file, want in zip(self.files, sizes, strict=True):
            have = file.stat().st_size if file.exists() else -1
            if have != want:
                raise StoreError(f"{file}: {have} bytes, expected {want}: truncated; {REBUILD}")
        self.shard_of = np.repeat(np.arange(len(counts)), counts)
        self.first = np.zeros(len(counts), dtype=np.int64)
        self.stride = np.full(len(counts), self.size, dtype=np.int64)
        for s in range(len(counts)):
            offs = self.index[self.starts[s] : self.starts[s + 1], 1]
            if len(offs):
                self.first[s] = offs[0]
            if len(offs) > 1:
                self.stride[s] = offs[1] - offs[0]
            expect = self.first[s] + self.stride[s] * np.arange(len(offs))
            if len(offs) and (
                not np.array_equal(offs, expect)
                or self.first[s] < BLOCK
                or self.stride[s] < self.size
                or expect[-1] + self.size > sizes[s]
            ):
                raise StoreError(
                    f"{self.path / INDEX}: offsets of shard {s} are damaged; {REBUILD}"
                )
        if not np.array_equal(self.index[:, 0], self.shard_of):
            raise StoreError(f"{self.path / INDEX}: shard numbers are damaged; {REBUILD}")

    @contextlib.contextmanager
    def mapped(self, shards: Sequence[int]) -> Iterator[dict[int, memoryview]]:
        """*shards* mapped read-only, as memoryviews; each shard's first member header is
        checked once. The sizes were checked at open, so no map runs past a file's end."""
        maps: list[mmap.mmap] = []
        views: dict[int, memoryview] = {}
        try:
            for s in shards:
                if self.starts[s + 1] == self.starts[s]:
                    views[s] = memoryview(b"")
                    continue
                with open(self.files[s], "rb") as f:
                    maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
                views[s] = memoryview(maps[-1])
                first = int(self.first[s])
                self._check_member(s, bytes(views[s][first - BLOCK : first]))
            yield views
        finally:
            # An array still held by a traceback keeps its map open until it is freed.
            for view in views.values():
                with contextlib.suppress(BufferError):
                    view.release()
            for m in maps:
                with contextlib.suppress(BufferError):
                    m.close()

    def _check_member(self, s: int, raw: bytes) -> None:
        start = int(self.starts[s])
        try:
            info = tarfile.TarInfo.frombuf(raw, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise StoreError(f"{self.files[s]}: bad tar header ({exc}); {REBUILD}") from None
        key, _, ext = info.name.partition(".")
        if ext != "npy" or info.size != self.size or not key.isdigit() or int(key) != start:
            raise StoreError(f"{self.files[s]}: member {info.name!r} is not image {start}")

    def pixels(self, members: np.ndarray, out: np.ndarray, where: Path) -> None:
        """Check the npy header of every member row, copy the pixels into *out*."""
        if not np.array_equal(
            members[:, : self.hlen], np.broadcast_to(self.header, (len(members), self.hlen))
        ):
            raise StoreError(f"{where}: an image member has a damaged .npy header; {REBUILD}")
        out.reshape(len(members), self.size - self.hlen)[:] = members[:, self.hlen :]

    def shard_images(self, s: int, out: np.ndarray | None = None) -> np.ndarray:
        """All images of shard *s* (into *out* if given): the shard mapped, its image
        members copied out through one strided view (they sit at a fixed stride)."""
        count = int(self.starts[s + 1] - self.starts[s])
        out = np.empty((count, *self.shape), dtype=np.uint8) if out is None else out
        if count == 0:
            return out
        with self.mapped([s]) as views:
            buf = np.frombuffer(views[s], dtype=np.uint8)
            members = np.lib.stride_tricks.as_strided(
                buf[self.first[s] :],
                shape=(count, self.size),
                strides=(int(self.stride[s]), 1),
                writeable=False,
            )
            try:
                self.pixels(members, out, self.files[s])
            finally:
                del buf, members  # before the map closes
        return out


# --- payload: encoded (issue 13) ----------------------------------------------------------
def _write_encoded_shards(bounds: tuple[int, int]) -> None:
    """Write shards [first, stop) of blobs: ``<key>.<ext>`` + ``<key>.cls`` per sample; the
    shard, data offset and length of every blob into the shared index."""
    blobs, labels, index = _SHARED["blobs"], _SHARED["labels"], _SHARED["index"]
    path, per, width = _SHARED["path"], _SHARED["per"], _SHARED["width"]
    for s in range(*bounds):
        with (
            open(path / shard_name(s), "wb", buffering=WRITE_BUFFER) as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for i in range(s * per, min(len(blobs), (s + 1) * per)):
                key, blob = f"{i:0{width}d}", blobs[i]
                index[i] = s, _add(tar, f"{key}.{blob_ext(blob)}", blob), len(blob)
                _add(tar, f"{key}.cls", str(int(labels[i])).encode("ascii"))


class TunedTar(Store):
    format = "tar"
    mode = "tuned"
    random_advice = "madvise(MADV_RANDOM) on the batch reader's maps of the shards"
    io_depth_why_not = (
        "not yet: a batch joins slices of the mapped shards in one copy that holds the GIL; "
        "a pread pool like npy's is left for after the tar trim (issue 22)"
    )

    def shard_sizes(self, path: Path) -> list[int]:
        """Samples per shard, in shard order (the buffered pattern splits shards by reader)."""
        shards = _Shards(Path(path))
        return [int(x) for x in np.diff(shards.starts)]

    def stream_shards(
        self, path: Path, shards: Sequence[int], shuffle_buffer: int, seed: int
    ) -> Iterator[tuple[int, np.ndarray, int]]:
        """Samples of *shards*, each shard front to back, through a shuffle buffer."""
        return stream(path, shuffle_buffer, seed, shards)

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        n = len(images)
        per = max(1, int(self.options["tar_shard_images"]))
        shards = max(1, -(-n // per))
        index = shared_array((n, 2), np.int64)  # filled by the (forked) shard writers
        header = npy_header(images.shape[1:])
        width = max(8, len(str(max(n - 1, 0))))
        _SHARED.update(
            images=images,
            labels=labels,
            index=index,
            path=path,
            per=per,
            width=width,
            header=header,
        )
        try:
            parallel = self.workers > 1 and n >= PARALLEL_MIN_IMAGES
            fork_map(
                _write_shards, [(s, s + 1) for s in range(shards)], self.workers if parallel else 1
            )
        finally:
            _SHARED.clear()
        np.save(path / INDEX, index)
        np.save(path / LABELS, labels)
        info = {
            "n": n,
            "shape": list(images.shape[1:]),
            "dtype": "uint8",
            "label_dtype": labels.dtype.str,
            "member_size": len(header) + int(np.prod(images.shape[1:])),
        }
        _describe(path, n, per, shards, info)

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # WebDataset's own layout for encoded images: <key>.jpg (or .png, .webp, .bin as
        # sniffed) + <key>.cls; shards written in parallel as for pixels.
        labels = np.asarray(labels)
        n = len(blobs)
        if len(labels) != n:
            raise ValueError(f"{n} blobs but {len(labels)} labels")
        per = max(1, int(self.options["tar_shard_images"]))
        shards = max(1, -(-n // per))
        index = shared_array((n, 3), np.int64)  # filled by the (forked) shard writers
        width = max(8, len(str(max(n - 1, 0))))
        _SHARED.update(blobs=blobs, labels=labels, index=index, path=path, per=per, width=width)
        try:
            parallel = self.workers > 1 and n >= PARALLEL_MIN_IMAGES
            fork_map(
                _write_encoded_shards,
                [(s, s + 1) for s in range(shards)],
                self.workers if parallel else 1,
            )
        finally:
            _SHARED.clear()
        np.save(path / INDEX, index)
        np.save(path / LABELS, labels)
        info = {"payload": "encoded", "n": n, "label_dtype": labels.dtype.str}
        _describe(path, n, per, shards, info)

    def read_encoded(self, path: Path) -> tuple[list[memoryview], np.ndarray]:
        # Each shard read whole into memory it owns (one copy from the page cache, one
        # read call per ~2 GiB), every blob a memoryview of its bytes there: no copy per blob.
        files, sizes, index, labels = encoded_index(Path(path))
        blobs: list[memoryview] = []
        start = 0
        for s, (file, size) in enumerate(zip(files, sizes, strict=True)):
            stop = int(np.searchsorted(index[:, 0], s, side="right"))
            if stop == start:
                continue
            shard = read_whole(file, size)
            check_first_member(file, shard, index, start)
            view = memoryview(shard)
            blobs.extend(view[o : o + k] for o, k in index[start:stop, 1:].tolist())
            start = stop
        return blobs, labels

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        store = _Shards(path)
        out = np.empty((store.n, *store.shape), dtype=np.uint8)
        for s in range(len(store.files)):
            store.shard_images(s, out[store.starts[s] : store.starts[s + 1]])
        return out, store.labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        store = _Shards(path)
        with store.mapped(range(len(store.files))) as views:
            advise_maps(store.files, self.random_reads)
            yield lambda indices: self._batch(store, views, indices)

    @staticmethod
    def _batch(
        store: _Shards, views: dict[int, memoryview], indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        # One memoryview slice per image at its indexed offset, joined in one copy: faster
        # than numpy fancy indexing shard by shard, whatever the number of shards.
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= store.n):
            raise IndexError(f"{store.path}: index out of range 0..{store.n - 1}")
        size = store.size
        joined = b"".join([views[s][o : o + size] for s, o in store.index[idx].tolist()])
        members = np.frombuffer(joined, dtype=np.uint8).reshape(len(idx), size)
        images = np.empty((len(idx), *store.shape), dtype=np.uint8)
        store.pixels(members, images, store.path)
        return images, store.labels[idx]


def stream(
    path: Path, shuffle_buffer: int = 1000, seed: int = 0, shards: Sequence[int] | None = None
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yield ``(index, image, label)`` the way WebDataset streams a shuffled epoch.

    Shards in a seeded random order, each read front to back in one go, samples passed
    through a buffer of *shuffle_buffer* samples from which a random one leaves as each new
    one enters (WebDataset's ``shuffle(bufsize)``); the buffer drains at the end. With
    ``shuffle_buffer <= 1`` samples leave in shard order. Every sample comes exactly once.
    """
    store = _Shards(Path(path))
    rng = random.Random(seed)
    if shards is None:  # every shard, in a seeded order
        order = list(range(len(store.files)))
        rng.shuffle(order)
    else:  # this reader's share, in the order given (WebDataset's split_by_worker)
        order = [int(s) for s in shards]

    def samples() -> Iterator[tuple[int, np.ndarray, int]]:
        for s in order:
            images = store.shard_images(s)
            start = int(store.starts[s])
            for j, label in enumerate(store.labels[start : start + len(images)].tolist()):
                yield start + j, images[j], label

    yield from shuffle_buffered(samples(), shuffle_buffer, rng)


def shuffle_buffered(
    samples: Iterable[tuple[int, np.ndarray, int]], shuffle_buffer: int, rng: random.Random
) -> Iterator[tuple[int, np.ndarray, int]]:
    """WebDataset's ``shuffle(bufsize)``: a random sample of the buffer leaves as each new one
    enters, the buffer drains (shuffled) at the end; ``shuffle_buffer <= 1`` keeps the order.
    The local and the S3 stream share it, so both give the same order for the same seed."""
    buf: list[tuple[int, np.ndarray, int]] = []
    for item in samples:
        if shuffle_buffer <= 1:
            yield item
        elif len(buf) < shuffle_buffer:
            buf.append(item)
        else:
            k = rng.randrange(shuffle_buffer)
            yield buf[k]
            buf[k] = item
    rng.shuffle(buf)
    yield from buf
