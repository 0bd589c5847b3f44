"""Parquet and Feather full reads: through pyarrow's memory-mapped file, or through a
``BufferReader`` over the same map? Speed, and whether a map outlives the read.

Why: a page still mapped cannot be evicted, so a cold read must leave no map behind. Until
this measurement the two Arrow stores handed pyarrow its own ``MemoryMappedFile``; pyarrow
reads that on its IO threads (opening an IPC file, pre-buffering Parquet), which release
their slice of the map a moment after the read returns, and CI caught the file still mapped
right after a read. The stores now read a ``BufferReader`` over the map
(``imgbench.stores._arrow.MappedFile``), which reads on the calling thread. This script
times both ways (the old one rebuilt here, the new one being the stores' ``read_many``),
warm and cold (evicted and proven, as the pipeline does), alternating so machine noise hits
both, checks every read against the source outside the timing, then counts the reads of a
small store after which its file was still mapped. Run it with other load on the machine
for the counts (the release race needs a busy CPU), alone for the times.

    python benchmarks/arrow_map_release.py results/bench/arrow-map --rounds 7
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from imgbench.measure.cache import evict
from imgbench.stores import get_store
from imgbench.stores._arrow import IMAGE, LABEL, Meta, copy_images, labels_of

FILES = {"parquet": "store.parquet", "feather": "store.arrow"}
Read = Callable[[Path], tuple[np.ndarray, np.ndarray]]


def _columns(table: pa.Table, meta: Meta) -> tuple[np.ndarray, np.ndarray]:
    return copy_images(table.column(IMAGE).chunks, meta), labels_of(table.column(LABEL), meta)


def parquet_pyarrow_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The parquet store's read_many before: pyarrow maps and pre-buffers the file."""
    file = path / FILES["parquet"]
    pf = pq.ParquetFile(file, memory_map=True, pre_buffer=True)
    try:
        return _columns(
            pf.read(columns=[IMAGE, LABEL], use_threads=False), Meta(pf.schema_arrow, file)
        )
    finally:
        pf.close()


def feather_pyarrow_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The feather store's read_many before: the IPC reader over pyarrow's mapped file."""
    file = path / FILES["feather"]
    source = pa.memory_map(str(file))
    try:
        reader = ipc.open_file(source)
        return _columns(reader.read_all(), Meta(reader.schema, file))
    finally:
        reader = None
        source.close()


def mapped(file: Path) -> bool:
    """Whether this process still maps *file*."""
    return any(str(file) in line for line in Path("/proc/self/maps").read_text().splitlines())


def main() -> None:
    """Build both stores, time both ways warm and cold, count maps left, print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="a scratch directory (created, then deleted)")
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--probes", type=int, default=1000, help="untimed reads checked for a map")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images, dtype=np.uint8)
    ways: dict[tuple[str, str], Read] = {}
    for fmt, old in (("parquet", parquet_pyarrow_map), ("feather", feather_pyarrow_map)):
        ways[fmt, "pyarrow's map"] = old
        ways[fmt, "BufferReader"] = get_store(fmt, "tuned").read_many
    times: dict[tuple[str, str, str], list[float]] = {}
    left: dict[tuple[str, str], int] = dict.fromkeys(ways, 0)
    try:
        for fmt in FILES:
            for name, n in (("big", args.images), ("small", 40)):
                (args.dir / fmt / name).mkdir(parents=True)
                get_store(fmt, "tuned").write_many(args.dir / fmt / name, images[:n], labels[:n])
        for _ in range(args.rounds):
            for (fmt, way), read in ways.items():
                store = args.dir / fmt / "big"
                for cache in ("warm", "cold"):
                    if cache == "cold":
                        evict(store / FILES[fmt])
                    else:
                        read(store)
                    t0 = time.perf_counter()
                    got = read(store)
                    times.setdefault((fmt, way, cache), []).append(time.perf_counter() - t0)
                    if not (np.array_equal(got[0], images) and np.array_equal(got[1], labels)):
                        raise SystemExit(f"{fmt}, {way}, {cache}: the read differs from the source")
                    del got
        for (fmt, way), read in ways.items():  # one way at a time: a map the other way
            time.sleep(0.1)  # left behind must not count against this one
            for _ in range(args.probes):
                read(args.dir / fmt / "small")
                left[fmt, way] += mapped(args.dir / fmt / "small" / FILES[fmt])
    finally:
        shutil.rmtree(args.dir)
    print(f"{args.images} images of 32x32x3, {args.rounds} rounds, medians (all samples, s):")
    for (fmt, way, cache), samples in times.items():
        each = [round(s, 3) for s in samples]
        print(f"  {fmt:7} {way:13} {cache}: {statistics.median(samples):.3f}  {each}")
    for fmt in FILES:
        for cache in ("warm", "cold"):
            new, old = (
                statistics.median(times[fmt, w, cache]) for w in ("BufferReader", "pyarrow's map")
            )
            print(f"  {fmt} {cache}: BufferReader / pyarrow's map = {new / old:.2f}")
    for (fmt, way), n in left.items():
        print(f"  {fmt} {way}: still mapped right after {n} of {args.probes} reads of 40 images")


if __name__ == "__main__":
    main()
