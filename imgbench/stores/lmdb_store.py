"""LMDB: one environment per store, one key per image.

article: values are pickled ``CIFARImage`` records, ``map_size = N * image.nbytes * 10``,
all puts in one write transaction, reads by ``txn.get`` per key (as in the article; the
pickles are read through the restricted unpickler, never plain ``pickle.loads``).
tuned: raw image bytes as values (no pickle at all), labels and shape in two metadata
keys, ``append=True`` puts in key order in batched transactions, a map sized from the
data that grows on ``MapFullError``, and cursor reads into one preallocated array.
Encoded payload (tuned, issue 13): the same, each value the original file's bytes (one
value per key), read by one cursor pass that copies each value once out of the map.

Read tuning (tuned, issue 22): advice "random" opens the batch reader's environment with
``readahead=False`` (LMDB then madvises MADV_RANDOM on its map); ``io_depth`` k > 1 cuts a
batch's sorted keys into k runs, each looked up on its own thread in its own read
transaction (py-lmdb releases the GIL inside ``mdb_cursor_get``, where the B-tree pages
fault, and numpy's copy of a 3 KB value out of the map releases it too).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lmdb
import numpy as np

from imgbench.core.errors import StoreError
from imgbench.core.safepickle import loads
from imgbench.stores.base import Store, article_labels, encoded_header, in_runs

log = logging.getLogger(__name__)


def key(i: int) -> bytes:
    """The article's key: zero-padded so lexical order is numeric order."""
    return f"{i:08}".encode("ascii")


def open_readonly(path: Path, **kwargs: object) -> lmdb.Environment:
    """Open a store to read it, refusing a truncated data file: LMDB maps the file and would
    die of SIGBUS (no message at all) on the first page past its end."""
    env = lmdb.open(str(path), readonly=True, **kwargs)
    data = Path(path) / "data.mdb"
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if data.stat().st_size < need:
        env.close()
        raise StoreError(
            f"{data}: {data.stat().st_size} bytes, but its last page ends at {need}: the LMDB "
            "file is truncated; delete the store directory and rerun the build"
        )
    return env


class CIFARImage:
    """The article's record: image bytes, shape and label (pickled as the LMDB value)."""

    def __init__(self, image: np.ndarray, label: int) -> None:
        self.channels = image.shape[2]
        self.size = image.shape[:2]
        self.image = image.tobytes()
        self.label = label

    def get_image(self) -> np.ndarray:
        """Rebuild the (H, W, C) uint8 array from the stored bytes."""
        image = np.frombuffer(self.image, dtype=np.uint8)
        return image.reshape(*self.size, self.channels)


ARTICLE_WHY_NOT = "article mode runs the article's read code unchanged"


class ArticleLmdb(Store):
    format = "lmdb"
    mode = "article"
    library_sync = True  # the article's lmdb.open keeps sync=True: fsync at every commit
    random_advice_why_not = io_depth_why_not = ARTICLE_WHY_NOT

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        map_size = len(images) * images[0].nbytes * 10
        env = lmdb.open(str(path), map_size=map_size)
        try:
            with env.begin(write=True) as txn:
                for i in range(len(images)):
                    value = CIFARImage(images[i], int(labels[i]))
                    txn.put(key(i), pickle.dumps(value))
        except lmdb.MapFullError:
            raise StoreError(
                f"{path}: LMDB map full at map_size={map_size} bytes (article sizing "
                "N * image.nbytes * 10); use mode tuned, which grows the map"
            ) from None
        finally:
            env.close()

    @staticmethod
    def _get(txn: lmdb.Transaction, path: Path, i: int) -> CIFARImage:
        data = txn.get(key(i))
        if data is None:
            raise StoreError(f"{path}: key {i:08} missing; rebuild the store")
        record = loads(data, f"{path}:{i:08}")
        if not isinstance(record, CIFARImage):
            raise StoreError(f"{path}:{i:08}: value is not a CIFARImage record; rebuild it")
        return record

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        env = open_readonly(path)
        try:
            n = env.stat()["entries"]
            return self._read(env, path, range(n))
        finally:
            env.close()

    def _read(
        self, env: lmdb.Environment, path: Path, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        with env.begin() as txn:
            for i in indices:
                record = self._get(txn, path, i)
                images.append(record.get_image())
                labels.append(record.label)
        return np.array(images), article_labels(labels)

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        env = open_readonly(path)
        try:
            yield lambda indices: self._read(env, path, indices)
        finally:
            env.close()


META, LABELS = b"~meta", b"~labels"  # '~' sorts after the digit keys: appends stay ordered


class TunedLmdb(Store):
    format = "lmdb"
    mode = "tuned"
    random_advice = "lmdb.open(readahead=False): LMDB madvises MADV_RANDOM on its map"
    io_depth_how = (
        "a batch's sorted keys in io_depth runs, each on its own thread and read transaction "
        "(py-lmdb releases the GIL in mdb_cursor_get)"
    )

    def _initial_map_size(self, images: np.ndarray) -> int:
        # Each value sits in its own overflow page(s) for images > ~2 KB: budget whole pages.
        page = 4096
        per = -(-images[0].nbytes // page) * page + 64 if len(images) else page
        return max(1 << 20, int(len(images) * per * float(self.options["lmdb_map_headroom"])))

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        n = len(images)
        labels = np.asarray(labels)
        meta = {"n": n, "shape": list(images.shape[1:]), "dtype": "uint8"}
        meta["label_dtype"] = labels.dtype.str
        items = sorted([(META, json.dumps(meta).encode()), (LABELS, labels.tobytes())])
        # sync=False: no fsync per commit; the harness's common flush makes it durable, as
        # for every other format.
        env = lmdb.open(str(path), map_size=self._initial_map_size(images), subdir=True, sync=False)
        try:
            step = max(1, int(self.options["lmdb_txn_images"]))
            batches = [range(s, min(n, s + step)) for s in range(0, n, step)]
            for batch in batches:
                self._put_batch(env, lambda b=batch: ((key(i), images[i]) for i in b))
            self._put_batch(env, lambda: iter(items))
        finally:
            env.close()

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # As write_many: append=True in key order, batched transactions, no fsync, a map
        # sized from the data (whole overflow pages per value) that doubles when full.
        n, labels = len(blobs), np.asarray(labels)
        if len(labels) != n:
            raise ValueError(f"{n} blobs but {len(labels)} labels")
        meta = {"payload": "encoded", "n": n, "label_dtype": labels.dtype.str}
        items = sorted([(META, json.dumps(meta).encode()), (LABELS, labels.tobytes())])
        page = 4096
        lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=n)
        need = int(((lengths + page - 1) // page * page + 64).sum())
        map_size = max(1 << 20, int(need * float(self.options["lmdb_map_headroom"])))
        env = lmdb.open(str(path), map_size=map_size, subdir=True, sync=False)
        try:
            step = max(1, int(self.options["lmdb_txn_images"]))
            for start in range(0, n, step):
                batch = range(start, min(n, start + step))
                self._put_batch(env, lambda b=batch: ((key(i), blobs[i]) for i in b))
            self._put_batch(env, lambda: iter(items))
        finally:
            env.close()

    def read_encoded(self, path: Path) -> tuple[list[bytes], np.ndarray]:
        env = open_readonly(path, lock=False)
        try:
            with env.begin() as txn:  # no buffers: each value copied once, into its bytes
                n, labels = encoded_header(txn.get(META), txn.get(LABELS), path, "LMDB")
                entries = env.stat()["entries"]
                if entries != n + 2 or len(labels) != n:
                    raise StoreError(
                        f"{path}: {entries - 2} values and {len(labels)} labels for {n} images; "
                        "delete the store directory and rerun the build"
                    )
                with txn.cursor() as cur:
                    cur.first()
                    blobs = list(itertools.islice(cur.iternext(keys=False, values=True), n))
        finally:
            env.close()
        return blobs, labels

    @staticmethod
    def _put_batch(env: lmdb.Environment, pairs) -> None:  # noqa: ANN001
        """Put one batch in one transaction; on MapFullError double the map and redo it."""
        while True:
            try:
                with env.begin(write=True) as txn, txn.cursor() as cur:
                    for k, v in pairs():
                        if not cur.put(k, memoryview(v).cast("B"), append=True):
                            raise StoreError(f"key {k!r} out of order in LMDB append")
                return
            except lmdb.MapFullError:
                new = env.info()["map_size"] * 2
                log.info("LMDB map full: growing map to %d bytes", new)
                env.set_mapsize(new)

    @staticmethod
    def _meta(txn: lmdb.Transaction, path: Path) -> tuple[int, tuple[int, ...], np.ndarray]:
        meta_raw, lab_raw = txn.get(META), txn.get(LABELS)
        if meta_raw is None or lab_raw is None:
            raise StoreError(f"{path}: not a tuned imgbench LMDB store; rebuild it")
        meta = json.loads(bytes(meta_raw))
        labels = np.frombuffer(lab_raw, dtype=meta.get("label_dtype", "|u1")).copy()
        return int(meta["n"]), tuple(meta["shape"]), labels

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        env = open_readonly(path, lock=False)
        try:
            with env.begin(buffers=True) as txn:
                n, shape, labels = self._meta(txn, path)
                out = np.empty((n, *shape), dtype=np.uint8)
                flat = memoryview(out.reshape(-1))
                size = int(np.prod(shape))
                with txn.cursor() as cur:
                    cur.first()
                    for i, value in enumerate(cur.iternext(keys=False, values=True)):
                        if i == n:
                            break
                        flat[i * size : (i + 1) * size] = value
        finally:
            env.close()
        return out, labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        env = open_readonly(path, lock=False, readahead=not self.random_reads)
        try:
            with env.begin(buffers=True) as txn:
                _, shape, labels = self._meta(txn, path)
            with self.read_pool() as pool:
                depth = self.io_depth
                yield lambda indices: self._batch(env, path, shape, labels, indices, pool, depth)
        finally:
            env.close()

    @staticmethod
    def _batch(
        env: lmdb.Environment,
        path: Path,
        shape: tuple,
        labels: np.ndarray,
        indices: Sequence[int],
        pool: ThreadPoolExecutor | None = None,
        depth: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        # Keys in sorted order through one cursor (B-tree locality), scattered to their rows;
        # with a pool, the sorted keys in *depth* runs, one cursor each.
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), *shape), dtype=np.uint8)
        flat = out.reshape(len(idx), -1)

        def run(rows: Sequence[int]) -> None:
            with env.begin(buffers=True) as txn, txn.cursor() as cur:
                for row in rows:
                    i = int(idx[row])
                    if not cur.set_key(key(i)):
                        raise StoreError(f"{path}: key {i:08} missing; rebuild the store")
                    flat[row] = np.frombuffer(cur.value(), dtype=np.uint8)

        in_runs(run, np.argsort(idx, kind="stable").tolist(), pool, depth)
        return out, labels[idx]


STORES = {"article": ArticleLmdb, "tuned": TunedLmdb}
