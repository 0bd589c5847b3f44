"""Issue 22 item 5: h5py's fastest way to read a shuffled batch, against the per-image loop.

Why a script: which h5py call is fastest is a ratio on this machine (shared and noisy), so
every way is measured here in one process, back to back, warm and cold, each epoch verified
against the source outside the timed section, and printed as a table with ratios.

Ways (all read the same seeded permutation in batches, into one (batch, H, W, C) array):

- ``loop``: ``ds[i]`` per image, stacked, as a stock PyTorch ``Dataset.__getitem__`` + collate
- ``fancy``: one sorted fancy-index read ``ds[sorted unique][inverse]`` (the old read_batch)
- ``read_direct``: ``ds.read_direct(out, np.s_[i], np.s_[row])`` per image
- ``h5d``: the low-level ``DatasetID.read`` per image, one-image hyperslab on a reused file
  space into a reused memory space (no h5py selection objects per image)
- ``h5d_union``: one low-level read of the union of the images' hyperslabs (sorted), reordered
- ``runs``: consecutive indices merged into runs, one low-level read per run

Each way runs with HDF5's default data sieve buffer (64 KiB: a read smaller than it fetches
64 KiB of a contiguous dataset into the buffer, then copies the image out) and with the
sieve buffer set to one image's bytes (``H5Pset_sieve_buf_size``, ``sieve=image``). The tuned
default store is contiguous, so HDF5's chunk cache (``rdcc_nbytes``) does not take part in
these reads; a chunked store is one option away (``--chunk``).

    python benchmarks/hdf5_batch.py [--n 100000] [--cold-images 20000]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from imgbench.measure import cache

ROOT = Path("/work/main/results/bench-hdf5")
Read = Callable[[h5py.Dataset, np.ndarray], np.ndarray]


def loop(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    return np.stack([ds[int(i)] for i in idx])


def fancy(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(idx, return_inverse=True)
    return ds[uniq][inverse]


def read_direct(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    out = np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype)
    for row, i in enumerate(idx.tolist()):
        ds.read_direct(out, np.s_[i], np.s_[row])
    return out


def _spaces(ds: h5py.Dataset) -> tuple:
    one = (1, *ds.shape[1:])
    return h5py.h5s.create_simple(one), ds.id.get_space(), one


def h5d(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    out = np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype)
    mspace, fspace, one = _spaces(ds)
    rest = (0,) * (ds.ndim - 1)
    for row, i in enumerate(idx.tolist()):
        fspace.select_hyperslab((i, *rest), one)
        ds.id.read(mspace, fspace, out[row : row + 1])
    return out


def h5d_union(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(idx, return_inverse=True)
    fspace = ds.id.get_space()
    fspace.select_none()
    rest, one = (0,) * (ds.ndim - 1), (1, *ds.shape[1:])
    for i in uniq.tolist():
        fspace.select_hyperslab((i, *rest), one, op=h5py.h5s.SELECT_OR)
    out = np.empty((len(uniq), *ds.shape[1:]), dtype=ds.dtype)
    ds.id.read(h5py.h5s.create_simple(out.shape), fspace, out)
    return out[inverse]


def runs(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(idx, return_inverse=True)
    out = np.empty((len(uniq), *ds.shape[1:]), dtype=ds.dtype)
    fspace, rest = ds.id.get_space(), (0,) * (ds.ndim - 1)
    cut = np.flatnonzero(np.diff(uniq) != 1) + 1
    pos = 0
    for run in np.split(uniq, cut):
        count = (len(run), *ds.shape[1:])
        fspace.select_hyperslab((int(run[0]), *rest), count)
        ds.id.read(h5py.h5s.create_simple(count), fspace, out[pos : pos + len(run)])
        pos += len(run)
    return out[inverse]


WAYS: dict[str, Read] = {
    "loop": loop,
    "fancy": fancy,
    "read_direct": read_direct,
    "h5d": h5d,
    "h5d_union": h5d_union,
    "runs": runs,
}


def open_file(file: Path, sieve: int | None) -> h5py.File:
    """The file read-only, with a data sieve buffer of *sieve* bytes (None: HDF5's default)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if sieve is not None:
        fapl.set_sieve_buf_size(sieve)
    return h5py.File(h5py.h5f.open(str(file).encode(), h5py.h5f.ACC_RDONLY, fapl))


def epoch(
    file: Path, way: Read, order: np.ndarray, batch: int, sieve: int | None
) -> tuple[float, np.ndarray]:
    """Seconds to read *order* in batches (file opened before the clock), and the batches."""
    got = []
    with open_file(file, sieve) as f:
        ds = f["images"]
        t0 = time.perf_counter()
        for s in range(0, len(order), batch):
            got.append(way(ds, order[s : s + batch]))
        dt = time.perf_counter() - t0
    return dt, np.concatenate(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cold-images", type=int, default=20_000, help="images per cold epoch")
    ap.add_argument("--repeats", type=int, default=3, help="warm epochs per way (median)")
    ap.add_argument("--chunk", type=int, default=0, help="chunk rows (0: contiguous, default)")
    ap.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of the ways")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    ROOT.mkdir(parents=True, exist_ok=True)
    file = ROOT / "store.h5"
    try:
        with h5py.File(file, "w") as f:
            layout = {"chunks": (args.chunk, 32, 32, 3)} if args.chunk else {}
            f.create_dataset("images", data=images, **layout)
        order = rng.permutation(args.n)
        cold_order = order[: args.cold_images]
        rows = []
        ways = {w: WAYS[w] for w in args.ways.split(",")}
        sieves = {"default": None, "image": images[0].nbytes}
        for (name, way), (sieve_name, sieve) in itertools.product(ways.items(), sieves.items()):
            name = f"{name} sieve={sieve_name}"
            epoch(file, way, order[:2048], args.batch, sieve)  # untimed: warm cache, imports
            warm = []
            for _ in range(args.repeats):
                dt, got = epoch(file, way, order, args.batch, sieve)
                if not np.array_equal(got, images[order]):
                    raise SystemExit(f"{name}: warm epoch read wrong pixels")
                warm.append(dt)
            cache.evict(ROOT)
            dt_cold, got = epoch(file, way, cold_order, args.batch, sieve)
            if not np.array_equal(got, images[cold_order]):
                raise SystemExit(f"{name}: cold epoch read wrong pixels")
            rows.append((name, args.n / float(np.median(warm)), len(cold_order) / dt_cold))
        base = {"warm": rows[0][1], "cold": rows[0][2]}
        layout_name = f"chunks of {args.chunk}" if args.chunk else "contiguous"
        print(
            f"HDF5 shuffled batches of {args.batch}, {args.n:,} x 32x32x3 uint8 ({layout_name}),"
            f" h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}; warm: median of "
            f"{args.repeats} epochs; cold: {len(cold_order):,} images after eviction"
        )
        print(f"{'way':<26} {'warm img/s':>11} {'x loop':>7} {'cold img/s':>11} {'x loop':>7}")
        for name, warm_rate, cold_rate in rows:
            print(
                f"{name:<26} {warm_rate:>11,.0f} {warm_rate / base['warm']:>7.2f} "
                f"{cold_rate:>11,.0f} {cold_rate / base['cold']:>7.2f}"
            )
        print("every epoch verified against the source pixels (outside the timed section)")
        print("the tuned store's batch_reader reads the 'loop sieve=image' way")
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
