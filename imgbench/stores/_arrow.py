"""What the two Arrow-based stores (parquet, feather) share: one table layout and the
zero-copy hops between numpy and Arrow.

Layout: one row per image. Column ``image`` is ``fixed_size_binary(H*W*C)`` (not a
``fixed_size_list<uint8>``): its values are one contiguous buffer, so numpy wraps it with
``np.frombuffer`` (no copy) in both directions, and Parquet stores it as a plain
FIXED_LEN_BYTE_ARRAY column with no repetition levels (a list column would carry one level
per pixel). Column ``label`` keeps the labels' own integer type (uint16 for 1,000 classes).
The image shape, the pixel dtype and the label dtype are JSON in the schema metadata.

Encoded payload (issue 13): column ``image`` is ``binary`` instead (``large_binary`` when
the blobs total more than 2 GiB, past 32-bit offsets), each value the original file's
bytes, unchanged; the metadata says ``"payload": "encoded"``. It is built from one joined
values buffer and read back as memoryviews of each chunk's values buffer (no copy per
blob).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from imgbench.core.errors import StoreError
from imgbench.stores.base import Store

IMAGE, LABEL = "image", "label"
META_KEY = b"imgbench"


def rebuild(file: Path, what: str) -> StoreError:
    """The one-line error for a store file that is not what this package wrote."""
    return StoreError(f"{file}: {what}; delete the store directory and rerun the build")


@contextlib.contextmanager
def damage_is_clear(file: Path) -> Iterator[None]:
    """Turn pyarrow's errors on a missing, truncated or corrupt file into one line naming it
    (pyarrow raises ArrowInvalid for a bad footer, plain OSError for bad page headers)."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise rebuild(file, f"unreadable ({type(exc).__name__}: {exc})") from exc


class MappedFile:
    """A store file memory-mapped whole (``whole``), read through ``stream``, a
    ``pa.BufferReader`` over the mapping; ``close`` unmaps it once nothing else holds a
    slice of it.

    Why not hand pyarrow the ``MemoryMappedFile`` itself: pyarrow reads it on its IO
    threads (opening an IPC file, pre-buffering Parquet), and those threads let go of their
    slice of the map a moment after the read has returned: the file was still mapped
    right after 1 to 7 of 1,000 reads (a CI run failed on it), and a mapped page cannot be
    evicted for the next cold read. A ``BufferReader`` reads on the calling thread,
    zero-copy slices of the same map: none of 4,000 reads under load left a map, and full
    reads are as fast warm and cold (``benchmarks/arrow_map_release.py``).
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        with damage_is_clear(file):
            self.source = pa.memory_map(str(file))
        self.whole = self.source.read_buffer()  # zero-copy: the whole mapping
        self.stream = pa.BufferReader(self.whole)

    def close(self) -> None:
        """Drop our slices and unmap (at once, if the caller dropped its own)."""
        self.stream = self.whole = None
        self.source.close()


def to_table(images: np.ndarray, labels: np.ndarray, **extra: Any) -> pa.Table:
    """A two-column table whose image column wraps *images*' memory (no copy); *extra* goes
    into the metadata next to the shape and dtypes."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    n, shape = len(images), images.shape[1:]
    nbytes = int(np.prod(shape))
    meta = {"n": n, "shape": list(shape), "dtype": "uint8", "label_dtype": labels.dtype.str}
    labels = labels.astype(labels.dtype.newbyteorder("="), copy=False)  # Arrow: native order
    meta.update(extra)
    schema = pa.schema(
        [
            pa.field(IMAGE, pa.binary(nbytes), nullable=False),
            pa.field(LABEL, pa.from_numpy_dtype(labels.dtype), nullable=False),
        ],
        metadata={META_KEY: json.dumps(meta).encode()},
    )
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(nbytes), n, [None, pa.py_buffer(images)]
    )
    return pa.table([column, pa.array(labels)], schema=schema)


#: The most bytes a ``binary`` array's 32-bit offsets address; beyond: ``large_binary``.
BINARY_MAX = (1 << 31) - 1


def to_encoded_table(blobs: Sequence[bytes], labels: np.ndarray, **extra: Any) -> pa.Table:
    """A two-column table of encoded images: ``image`` binary (``large_binary`` past
    :data:`BINARY_MAX` bytes in all), ``label`` in the labels' own type."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    n = len(blobs)
    if len(labels) != n:
        raise ValueError(f"{n} blobs but {len(labels)} labels")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(b) for b in blobs), dtype=np.int64, count=n), out=offsets[1:])
    large = int(offsets[-1]) > BINARY_MAX
    kind = pa.large_binary() if large else pa.binary()
    values = b"".join(blobs)  # the one copy: Arrow holds the values in one buffer
    column = pa.Array.from_buffers(
        kind,
        n,
        [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)), pa.py_buffer(values)],
    )
    meta = {"payload": "encoded", "n": n, "label_dtype": labels.dtype.str, **extra}
    labels = labels.astype(labels.dtype.newbyteorder("="), copy=False)  # Arrow: native order
    schema = pa.schema(
        [
            pa.field(IMAGE, kind, nullable=False),
            pa.field(LABEL, pa.from_numpy_dtype(labels.dtype), nullable=False),
        ],
        metadata={META_KEY: json.dumps(meta).encode()},
    )
    return pa.table([column, pa.array(labels)], schema=schema)


def blobs_of(chunks: Iterable[pa.Array], mapped: pa.Buffer | None = None) -> list[memoryview]:
    """Every value of binary *chunks*, in order, as a memoryview of its chunk's values
    buffer (no copy per value). A values buffer inside *mapped* (a memory-mapped file) is
    first copied out, once per chunk: no blob may point into a map that will be closed."""
    blobs: list[memoryview] = []
    for chunk in chunks:
        if not len(chunk):
            continue
        if not (pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type)):
            chunk = chunk.cast(pa.large_binary())  # e.g. a binary_view column: one copy
        _, offsets_buf, values = chunk.buffers()
        kind = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        width = np.dtype(kind).itemsize
        offsets = np.frombuffer(
            offsets_buf, dtype=kind, count=len(chunk) + 1, offset=chunk.offset * width
        )
        lo, hi = int(offsets[0]), int(offsets[-1])
        view = memoryview(values if values is not None else b"").cast("B")[lo:hi]
        if (
            mapped is not None
            and values is not None
            and (mapped.address <= values.address < mapped.address + mapped.size)
        ):
            view = memoryview(view.tobytes())
        bounds = (offsets - lo).tolist()
        blobs.extend(view[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return blobs


class Meta:
    """What the schema metadata says: row count, image shape, label dtype."""

    def __init__(self, schema: pa.Schema, file: Path) -> None:
        raw = (schema.metadata or {}).get(META_KEY)
        if raw is None or schema.names[:2] != [IMAGE, LABEL]:
            raise rebuild(file, "not an imgbench image table (no image/label columns or metadata)")
        meta: dict[str, Any] = json.loads(raw)
        self.raw = meta
        self.n = int(meta["n"])
        self.shape = tuple(int(s) for s in meta["shape"])
        self.nbytes = int(np.prod(self.shape))
        self.label_dtype = np.dtype(meta["label_dtype"])
        image_type = schema.field(IMAGE).type
        if not pa.types.is_fixed_size_binary(image_type) or image_type.byte_width != self.nbytes:
            raise rebuild(file, f"image column is {image_type}, metadata says {self.shape}")
        self.file = file

    def check_rows(self, rows: int) -> None:
        """Refuse a file whose row count differs from what its writer recorded."""
        if rows != self.n:
            raise rebuild(self.file, f"{rows} rows, but its metadata says {self.n}")

    def check_indices(self, indices: Iterable[int]) -> np.ndarray:
        """*indices* as int64, refusing any outside the store (no wrap-around)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.file}: index out of range for {self.n} images")
        return idx


class EncodedMeta(Meta):
    """What the schema metadata of an encoded-payload table says: row count, label dtype
    (``shape`` and ``nbytes`` are None: the images differ in length)."""

    def __init__(self, schema: pa.Schema, file: Path) -> None:  # replaces Meta's checks
        raw = (schema.metadata or {}).get(META_KEY)
        if raw is None or schema.names[:2] != [IMAGE, LABEL]:
            raise rebuild(file, "not an imgbench image table (no image/label columns or metadata)")
        meta: dict[str, Any] = json.loads(raw)
        if meta.get("payload") != "encoded":
            raise rebuild(file, "not an encoded-payload image table")
        image_type = schema.field(IMAGE).type
        if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
            raise rebuild(file, f"image column is {image_type}, not binary")
        self.raw, self.n, self.file = meta, int(meta["n"]), file
        self.shape = self.nbytes = None
        self.label_dtype = np.dtype(meta["label_dtype"])


def rows_of(array: pa.Array, nbytes: int) -> np.ndarray:
    """A (len, nbytes) uint8 view of a fixed_size_binary array's values (no copy)."""
    buf = array.buffers()[1]
    return np.frombuffer(buf, np.uint8, count=len(array) * nbytes, offset=array.offset * nbytes)


def fill(out: np.ndarray, chunks: Iterable[pa.Array], meta: Meta) -> None:
    """Copy image chunks, in order, into *out* (k, H, W, C): the one copy of a read."""
    flat = out.reshape(len(out), meta.nbytes)
    pos = 0
    for chunk in chunks:
        if pos + len(chunk) > len(out):
            raise rebuild(meta.file, f"more image rows than the {len(out)} expected")
        flat[pos : pos + len(chunk)] = rows_of(chunk, meta.nbytes).reshape(-1, meta.nbytes)
        pos += len(chunk)
    if pos != len(out):
        raise rebuild(meta.file, f"{pos} image rows where {len(out)} were expected")


def copy_images(chunks: Iterable[pa.Array], meta: Meta) -> np.ndarray:
    """Copy the image chunks once into one (n, H, W, C) array."""
    out = np.empty((meta.n, *meta.shape), dtype=np.uint8)
    fill(out, chunks, meta)
    return out


def labels_of(column: pa.ChunkedArray, meta: Meta) -> np.ndarray:
    """The label column as an owned numpy array (never a view of a mapped file), in the
    dtype the writer recorded."""
    labels = column.to_numpy()
    if labels.dtype != meta.label_dtype.newbyteorder("="):
        raise rebuild(meta.file, f"labels are {labels.dtype}, metadata says {meta.label_dtype}")
    meta.check_rows(len(labels))
    return np.array(labels, dtype=meta.label_dtype, copy=True)


class PerThread:
    """One handle per thread (readers may be threads sharing one ``batch_reader``, and
    pyarrow's file readers are not documented as safe to share); closes them all."""

    def __init__(self, open_handle: Callable[[], Any]) -> None:
        self._open = open_handle
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Any] = []

    def get(self) -> Any:
        """This thread's handle, opened on first use."""
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = self._open()
            with self._lock:
                self._all.append(handle)
        return handle

    def close(self) -> None:
        """Close every handle opened by any thread."""
        with self._lock:
            for handle in self._all:
                handle.close()
            self._all.clear()


class ArrowStore(Store):
    """What the Parquet and Feather stores share: a batch reader over their one file, kept
    open across batches and closed after, and one image read through it."""

    #: the store's one file, and the class that reads batches from it (``read``, ``close``)
    file: ClassVar[str]
    batches: ClassVar[type]

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        # Read tuning (issue 22): the advice goes to every map the reader makes of the file;
        # the pool (None at io_depth 1) to a format that reads by offset.
        with self.read_pool() as pool:
            batches = self.batches(path / self.file, self.random_reads, pool, self.io_depth)
            try:
                yield batches.read
            finally:
                batches.close()

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        images, labels = self.read_batch(path, [0])
        return images[0], int(labels[0])
