"""Lance from object storage: ``lance.dataset`` over the uploaded ``store.lance/`` with S3
storage options, read back by ``take`` (shuffled batches) and a scan (the full read), as the
local tuned store (:mod:`imgbench.stores.lance_store`) reads its files.

Lance reads S3 with its own Rust object-store client (the ``object_store`` crate on a tokio
runtime): opening the dataset GETs the version hint and the manifest; the first ``take``
reads the data file's footer and column metadata, then each ``take`` issues ranged GETs for
the rows' pages, coalescing nearby ranges itself, concurrently on its own scheduler (so
``requests_in_flight`` is not applied: Lance's concurrency is the equivalent). The
dataset is opened inside :meth:`RemoteLance.batch_reader` and kept for all the reader's
batches; the local store's fork guard (:func:`imgbench.stores.lance_store._fork_guard`)
refuses a reader forked from a process that had already used Lance, as locally.

Lance keeps no checksums and reports a missing or cut-off data file in its own words; on
any failure the reader LISTs the prefix once and compares every data file the manifest
names with the objects there, so the error names the object (and the fix); a failure it
cannot pin on one names the dataset.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import lance
import numpy as np

from imgbench.core.errors import StoreError
from imgbench.stores.lance_store import DIR, META, _fork_guard, _pixels, scan_rows
from imgbench.stores.remote.base import Reader, RemoteStore

COLUMNS = ["image", "label"]
#: what Lance raises for I/O and format failures (its Rust errors surface as these)
LANCE_ERRORS = (OSError, ValueError, RuntimeError)


class _Opened:
    """A reader's open dataset and what its metadata says."""

    def __init__(self, store: RemoteLance) -> None:
        self.store = store
        self.url = store.target.url(DIR)
        _fork_guard(self.url)  # type: ignore[arg-type]
        target, creds = store.target, store.target.creds
        options = {
            "aws_access_key_id": creds.access_key,
            "aws_secret_access_key": creds.secret_key,
            "aws_endpoint": target.endpoint,
            "aws_region": creds.region,
            "allow_http": "true",
        }
        if creds.session_token:
            options["aws_session_token"] = creds.session_token
        with self.named():
            self.ds = lance.dataset(self.url, storage_options=options)
            raw = (self.ds.schema.metadata or {}).get(META)
            rows = self.ds.count_rows()  # from the manifest: no data read
        if raw is None:
            raise StoreError(f"{self.url}: no imgbench metadata in the schema; upload it again")
        meta = json.loads(raw)
        self.shape = tuple(int(s) for s in meta["shape"])
        self.label_dtype = np.dtype(meta["label_dtype"])
        if rows != int(meta["n"]) or rows != store.n or self.shape != store.image_shape:
            raise StoreError(
                f"{self.url}: {rows} rows of {self.shape} (metadata: {meta['n']}), expected "
                f"{store.n} of {store.image_shape}; upload the store again"
            )

    @contextlib.contextmanager
    def named(self) -> Iterator[None]:
        """Lance's failures as one line naming the damaged object, found by one LIST."""
        try:
            yield
        except LANCE_ERRORS as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise StoreError(self._culprit() or self._generic(first)) from None

    def _generic(self, first: str) -> str:
        return (
            f"{self.url}: not readable as a Lance dataset over S3 ({first}); upload the store again"
        )

    def _culprit(self) -> str | None:
        """The first data file the manifest names that is missing or of another size."""
        ds = getattr(self, "ds", None)
        if ds is None:
            return None
        target = self.store.target
        base = target.key(f"{DIR}/data/")
        try:
            have = target.client().list(base)
        except StoreError:
            return None
        for frag in ds.get_fragments():
            for data in frag.metadata.files:
                key = base + data.path
                uri = f"s3://{target.bucket}/{key}"
                if key not in have:
                    return f"{uri}: data file missing; upload the store again"
                if data.file_size_bytes is not None and have[key] != data.file_size_bytes:
                    return (
                        f"{uri}: {have[key]} bytes, the manifest says {data.file_size_bytes}: "
                        "truncated or damaged; upload the store again"
                    )
        return None

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows *idx* in the order given, decoded as the local store's ``_take``."""
        with self.named():
            table = self.ds.take(idx, columns=COLUMNS)
        if table.num_rows != len(idx):
            raise StoreError(f"{self.url}: take returned {table.num_rows} of {len(idx)} rows")
        images = _pixels(table.column("image")).reshape(len(idx), *self.shape).copy()
        return images, table.column("label").to_numpy().astype(self.label_dtype)

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.store.n):
            raise IndexError(f"{self.url}: index out of range 0..{self.store.n - 1}")
        return self.take(idx)

    def scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row in store order: one scan, copied once into preallocated arrays."""
        with self.named():
            return scan_rows(self.ds, self.store.n, self.shape, self.label_dtype, self.url,
                             "upload the store again")  # fmt: skip


class RemoteLance(RemoteStore):
    format = "lance"
    access = "range"
    in_flight = (
        "not applied: one take() per batch issues the rows' ranged GETs concurrently on "
        "Lance's own I/O scheduler; splitting the batch into requests_in_flight takes on a "
        "thread pool was slower (2318, 1386, 1039 images/s at 1, 4, 16; 20k images, 5 ms RTT)"
    )
    tuned_for_s3 = (
        "lance_rows_per_file 1048576 (one data file per million rows, so a reader opens one "
        "file's metadata) and lance_storage_version 2.0 (flat pages: a take GETs only its "
        "rows' bytes, nearby ranges coalesced by Lance); Lance has no row groups to size"
    )

    @contextlib.contextmanager
    def batch_reader(self, path: Any = "") -> Iterator[Reader]:
        opened = _Opened(self)  # opened here: in the forked reader, not the parent
        yield opened.read

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        return _Opened(self).scan()
