"""The tar store's file names and the checks of an encoded-payload store's index.

Split from :mod:`imgbench.stores.tar` (which re-exports the names) to keep that module
short; everything here reads files and raises :class:`StoreError`, it writes nothing.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from imgbench.core.errors import StoreError

INDEX, LABELS, META = "index.npy", "labels.npy", "shards.json"
BLOCK = tarfile.BLOCKSIZE  # 512
REBUILD = "delete the store directory and rerun the build"


def read_whole(file: Path, size: int) -> np.ndarray:
    """The *size* bytes of *file* in one owned buffer (reads loop: Linux returns at most
    ~2 GiB per read)."""
    buf = np.empty(size, dtype=np.uint8)
    view = memoryview(buf)
    with open(file, "rb", buffering=0) as f:
        while view:
            got = f.readinto(view)
            if not got:
                raise StoreError(f"{file}: shorter than the {size} bytes written; {REBUILD}")
            view = view[got:]
    return buf


def encoded_index(path: Path) -> tuple[list[Path], list[int], np.ndarray, np.ndarray]:
    """An encoded store's shard files, their sizes, the (N, 3) index (shard, data offset,
    length) and the labels, checked against each other and the files on disk."""
    try:
        meta = json.loads((path / META).read_text())
        info = meta["imgbench"]
        if info.get("payload") != "encoded":
            raise ValueError("not an encoded-payload store")
        index, labels = np.load(path / INDEX), np.load(path / LABELS)
        n = int(info["n"])
        files = [path / s["url"] for s in meta["shardlist"]]
        counts = [int(s["nsamples"]) for s in meta["shardlist"]]
        sizes = [int(x) for x in info["file_sizes"]]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise StoreError(f"{path}: unreadable tar-store metadata ({exc}); {REBUILD}") from None
    if (
        index.shape != (n, 3)
        or labels.shape != (n,)
        or sum(counts) != n
        or len(sizes) != len(files)
        or not np.array_equal(index[:, 0], np.repeat(np.arange(len(counts)), counts))
    ):
        raise StoreError(f"{path}: index, labels and shards.json disagree; {REBUILD}")
    for file, want in zip(files, sizes, strict=True):
        have = file.stat().st_size if file.exists() else -1
        if have != want:
            raise StoreError(f"{file}: {have} bytes, expected {want}: truncated; {REBUILD}")
    ends = index[:, 1] + index[:, 2]
    if n and (
        index[:, 1].min() < BLOCK
        or index[:, 2].min() < 0
        or np.any(ends > np.asarray(sizes, dtype=np.int64)[index[:, 0]])
    ):
        raise StoreError(f"{path / INDEX}: offsets or lengths are damaged; {REBUILD}")
    return files, sizes, index, labels


def check_first_member(file: Path, shard: np.ndarray, index: np.ndarray, first: int) -> None:
    """The tar header before a shard's first blob names that sample, with its length."""
    offset, length = int(index[first, 1]), int(index[first, 2])
    try:
        info = tarfile.TarInfo.frombuf(shard[offset - BLOCK : offset].tobytes(), "utf-8", "strict")
    except (tarfile.HeaderError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file}: bad tar header ({exc}); {REBUILD}") from None
    key = info.name.partition(".")[0]
    if not key.isdigit() or int(key) != first or info.size != length:
        raise StoreError(f"{file}: member {info.name!r} is not sample {first}; {REBUILD}")
