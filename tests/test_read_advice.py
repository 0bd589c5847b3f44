"""Read tuning (issue 22): readahead off and more reads in flight, checked where they act.

The advice is checked directly, never through speed: LMDB's environment flags, the VmFlags
("rr" = VM_RAND_READ, set by MADV_RANDOM) of this process's mappings of a store's files in
/proc/self/smaps, and the calls to os.posix_fadvise. io_depth > 1 must return the batches
io_depth 1 returns, byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imgbench.stores import FORMATS, get_store, modes, store_class
from imgbench.stores.base import ADVICE
from tests.conftest import random_data

COMBOS = [(f, m) for f in FORMATS for m in modes(f)]
TUNED = [f for f in FORMATS if "tuned" in modes(f)]
BATCHES = [[41, 3, 3, 17, 0, 49, 8], list(range(49, -1, -3)), [5]]


def _store_files(path: Path) -> set[tuple[int, int]]:
    """(device, inode) of every regular file under *path* (symlinks followed)."""
    out = set()
    for f in path.rglob("*"):
        if f.is_file():
            st = f.stat()
            out.add((st.st_dev, st.st_ino))
    return out


def _mappings(path: Path) -> list[tuple[str, bool]]:
    """This process's mappings of files under *path*: (file, advised random?) from smaps."""
    wanted = _store_files(path)
    found, current = [], None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                major, minor = (int(x, 16) for x in head[3].split(":"))
                key = (os.makedev(major, minor), int(head[4]))
                current = head[5] if key in wanted and head[4] != "0" else None
            elif current is not None and line.startswith("VmFlags:"):
                found.append((current, "rr" in head[1:]))
                current = None
    return found


def _built(tmp_path: Path, fmt: str, mode: str = "tuned", n: int = 50) -> tuple:
    images, labels = random_data(n, seed=11)
    get_store(fmt, mode).write_many(tmp_path, images, labels)
    return images, labels


@pytest.mark.parametrize(("fmt", "mode"), COMBOS)
def test_every_class_applies_each_knob_or_says_why_not(fmt: str, mode: str) -> None:
    cls = store_class(fmt, mode)
    for how, why in (
        (cls.random_advice, cls.random_advice_why_not),
        (cls.io_depth_how, cls.io_depth_why_not),
    ):
        assert bool(how.strip()) != bool(why.strip()), f"{cls.__name__}: {how!r} / {why!r}"
    notes = get_store(fmt, mode).tune_reads("random", 4)
    assert notes["advice"] == (cls.random_advice or f"not applied: {cls.random_advice_why_not}")
    assert notes["io_depth"] == (cls.io_depth_how or f"not applied: {cls.io_depth_why_not}")
    assert get_store(fmt, mode).tune_reads() == {"advice": "", "io_depth": ""}


@pytest.mark.parametrize(("advice", "depth"), [("sequential", 1), ("random", 0), ("default", 1.5)])
def test_bad_tuning_is_refused(advice: str, depth: float) -> None:
    assert "random" in ADVICE
    with pytest.raises(ValueError, match="advice|io_depth"):
        get_store("npy", "tuned").tune_reads(advice, depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("advice", ADVICE)
def test_lmdb_reader_opens_without_readahead_under_random(tmp_path: Path, advice: str) -> None:
    import lmdb

    _built(tmp_path, "lmdb")
    opened = []
    real = lmdb.open

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        env = real(*args, **kwargs)
        opened.append(env)
        return env

    store = get_store("lmdb", "tuned")
    store.tune_reads(advice)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lmdb, "open", spy)
        with store.batch_reader(tmp_path) as read:
            read([3, 1])
            assert opened[-1].flags()["readahead"] is (advice == "default")


MAPPED = ["npy", "feather", "parquet", "tar", "sqlite", "leveldb"]


@pytest.mark.parametrize("fmt", MAPPED)
@pytest.mark.parametrize("advice", ADVICE)
def test_maps_are_advised_random(tmp_path: Path, fmt: str, advice: str) -> None:
    images, _ = _built(tmp_path, fmt)
    store = get_store(fmt, "tuned")
    store.tune_reads(advice)
    with store.batch_reader(tmp_path) as read:
        got, _ = read(BATCHES[1])
        np.testing.assert_array_equal(got, images[BATCHES[1]])
        maps = _mappings(tmp_path)
        assert maps, f"{fmt}: the reader maps none of the store's files"
        assert all(rr == (advice == "random") for _, rr in maps), maps


@pytest.mark.parametrize(("fmt", "depth"), [("hdf5", 1), ("npy", 3), ("feather", 2)])
def test_fadvise_random_on_the_descriptor_read(tmp_path: Path, fmt: str, depth: int) -> None:
    _built(tmp_path, fmt)
    calls = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), advice))
        real(fd, offset, length, advice)

    for advice in ADVICE:
        calls.clear()
        store = get_store(fmt, "tuned")
        store.tune_reads(advice, depth)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "posix_fadvise", spy)
            with store.batch_reader(tmp_path) as read:
                read([1, 2])
        randoms = [f for f, a in calls if a == os.POSIX_FADV_RANDOM]
        if advice == "random":
            assert randoms and all(Path(f).parent == tmp_path for f in randoms), calls
        else:
            assert not randoms, calls


@pytest.mark.parametrize("fmt", [f for f in TUNED if store_class(f, "tuned").io_depth_how])
def test_io_depth_returns_the_same_bytes(tmp_path: Path, fmt: str) -> None:
    images, labels = _built(tmp_path, fmt, n=60)
    batches = [*BATCHES, list(np.random.default_rng(2).permutation(60))]
    got = {}
    for depth in (1, 4):  # one reader at a time: LMDB opens a store once per process
        store = get_store(fmt, "tuned")
        store.tune_reads("random" if depth > 1 else "default", depth)
        with store.batch_reader(tmp_path) as read:
            got[depth] = [read(idx) for idx in batches]
    for idx, (a, la), (b, lb) in zip(batches, got[1], got[4], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        np.testing.assert_array_equal(b, images[idx])
        np.testing.assert_array_equal(lb, la)
        np.testing.assert_array_equal(lb, labels[idx])


def test_io_depth_has_reads_in_flight_together(tmp_path: Path) -> None:
    """Three preads are in flight at once: each pool thread's first read waits at a barrier
    that only three concurrent readers pass (a serial reader would time out)."""
    import threading

    _built(tmp_path, "npy", n=60)
    barrier, seen = threading.Barrier(3, timeout=10), set()
    real = os.preadv

    def spy(fd: int, buffers: list, offset: int) -> int:
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            barrier.wait()
        return real(fd, buffers, offset)

    store = get_store("npy", "tuned")
    store.tune_reads("default", 3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "preadv", spy)
        with store.batch_reader(tmp_path) as read:
            read(list(range(60)))
    assert len(seen) == 3 and threading.get_ident() not in seen
