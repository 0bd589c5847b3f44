import os
import tempfile
from pathlib import Path

import pytest

from imgbench.core.errors import BenchError
from imgbench.measure import cache

MIB = 1 << 20


def write_file(path: Path, size: int) -> Path:
    """Write random bytes and fsync, as the benchmark's writers do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())
    return path


def warm(*paths: Path) -> None:
    for p in paths:
        p.read_bytes()


def _fadvise_works(directory: Path) -> bool:
    probe = write_file(directory / "fadvise-probe.bin", 2 * MIB)
    try:
        warm(probe)
        cache._fadvise_dontneed([probe])
        return cache.resident_fraction([probe]) < 0.05
    finally:
        probe.unlink()


@pytest.fixture
def cold_dir(tmp_path):
    """A directory on a file system that honours posix_fadvise(DONTNEED).

    tmpfs keeps pages in memory by design, so if tmp_path is on tmpfs fall
    back to /var/tmp (normally on disk).
    """
    if _fadvise_works(tmp_path):
        yield tmp_path
        return
    if Path("/var/tmp").is_dir() and os.access("/var/tmp", os.W_OK):
        with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="imgbench-test-") as d:
            if _fadvise_works(Path(d)):
                yield Path(d)
                return
    pytest.skip(f"neither {tmp_path} nor /var/tmp honours posix_fadvise(DONTNEED) (tmpfs?)")


def test_store_files_sorted_and_skips_snakemake_marker(tmp_path):
    store = tmp_path / "store"
    for rel in ["b.png", "a.png", "sub/c.png", "sub/.snakemake_timestamp", ".snakemake_timestamp"]:
        write_file(store / rel, 10)
    (store / "emptydir").mkdir()

    files = cache.store_files(store)

    assert files == [store / "a.png", store / "b.png", store / "sub" / "c.png"]


def test_store_files_single_file_and_missing(tmp_path):
    f = write_file(tmp_path / "data.mdb", 10)
    assert cache.store_files(f) == [f]
    with pytest.raises(FileNotFoundError):
        cache.store_files(tmp_path / "nope")


def test_resident_fraction_empty_file_and_no_files(tmp_path):
    empty = tmp_path / "empty"
    empty.touch()
    assert cache.resident_fraction([empty]) == 0.0
    assert cache.resident_fraction([]) == 0.0
    assert cache.evict(empty, "fadvise").fraction == 0.0


def test_resident_fraction_warm_after_full_read(tmp_path):
    # size deliberately not a multiple of the page size
    f = write_file(tmp_path / "warm.bin", 8 * MIB + 123)
    warm(f)
    assert cache.resident_fraction([f]) > 0.9


def test_evict_fadvise_makes_file_cold(cold_dir):
    f = write_file(cold_dir / "big.bin", 8 * MIB)
    warm(f)
    assert cache.resident_fraction([f]) > 0.9

    ev = cache.evict(f, "fadvise")

    assert ev == ("fadvise", ev.fraction, "data") and ev.fraction < 0.05
    assert cache.resident_fraction([f]) < 0.05
    # the measurement itself must not read pages back in
    assert cache.resident_fraction([f]) < 0.05


def test_resident_fraction_is_weighted_by_pages(cold_dir):
    small = write_file(cold_dir / "small.bin", 2 * MIB)
    large = write_file(cold_dir / "large.bin", 6 * MIB)
    cache.evict(cold_dir, "fadvise", [small, large])
    warm(small)

    fraction = cache.resident_fraction([small, large])

    # 2 MiB of 8 MiB resident; a per-file average would give 0.5
    assert 0.2 < fraction < 0.3


def test_evict_directory_store(cold_dir):
    store = cold_dir / "store.lmdb"
    files = [write_file(store / f"part{i}.bin", 2 * MIB) for i in range(4)]
    write_file(store / ".snakemake_timestamp", 0)
    warm(*files)
    assert cache.resident_fraction(files) > 0.9

    ev = cache.evict(store, method="fadvise")

    assert ev.method == "fadvise" and ev.scope == "data" and ev.fraction < 0.05
    assert cache.resident_fraction(files) < 0.05


def test_evict_auto_prefers_fadvise(cold_dir, monkeypatch):
    store = cold_dir / "store"
    files = [write_file(store / f"{i}.bin", 1 * MIB) for i in range(3)]
    warm(*files)
    dropped = []
    monkeypatch.setattr(cache, "drop_caches", lambda what="1": dropped.append(what))
    monkeypatch.setattr(cache, "can_drop_caches", lambda: False)

    assert cache.evict(store) == ("fadvise", 0.0, "data")
    assert dropped == []
    assert cache.resident_fraction(files) < 0.05


def test_evict_auto_as_root_drops_inodes_last_for_full_scope(cold_dir, monkeypatch):
    store = cold_dir / "store"
    files = [write_file(store / f"{i}.bin", 1 * MIB) for i in range(3)]
    warm(*files)
    events = []
    real = cache.resident_fraction
    monkeypatch.setattr(cache, "can_drop_caches", lambda: True)
    monkeypatch.setattr(cache, "drop_caches", lambda what="1": events.append(f"drop{what}"))
    monkeypatch.setattr(
        cache, "resident_fraction", lambda paths: events.append("mincore") or real(paths)
    )

    ev = cache.evict(store)

    assert ev.method == "fadvise" and ev.scope == "full" and ev.fraction < 0.05
    # the inode/dentry drop comes after the last residency check: nothing opens in between
    assert events[-1] == "drop2" and "mincore" in events[:-1]
    assert "drop1" not in events  # fadvise sufficed: the page cache was not dropped globally


def test_evict_auto_falls_back_to_drop_caches(tmp_path, monkeypatch):
    f = write_file(tmp_path / "f.bin", 1 * MIB)
    dropped = []
    # simulate a file system that ignores fadvise until the page cache is dropped
    state = {"resident": 1.0}
    monkeypatch.setattr(cache, "_fadvise_dontneed", lambda paths: None)
    monkeypatch.setattr(cache, "resident_fraction", lambda paths: state["resident"])
    monkeypatch.setattr(cache, "can_drop_caches", lambda: True)

    def drop(what="1"):
        dropped.append(what)
        state["resident"] = 0.0

    monkeypatch.setattr(cache, "drop_caches", drop)

    assert cache.evict(f) == ("drop_caches", 0.0, "full")
    assert dropped == ["1", "2"]

    dropped.clear()
    state["resident"] = 1.0
    monkeypatch.setattr(cache, "can_drop_caches", lambda: False)
    with pytest.raises(cache.ColdCacheError):
        cache.evict(f)
    assert dropped == []


def test_evict_rejects_unknown_method_and_missing_store(tmp_path):
    f = write_file(tmp_path / "f.bin", 10)
    with pytest.raises(ValueError, match="unknown eviction method"):
        cache.evict(f, method="bogus")
    with pytest.raises(FileNotFoundError):
        cache.evict(tmp_path / "missing", method="fadvise")


def test_cold_error_is_one_clear_bench_error(cold_dir, monkeypatch):
    store = cold_dir / "store.h5"
    f = write_file(store, 8 * MIB)
    warm(f)
    monkeypatch.setattr(cache, "_fadvise_dontneed", lambda paths: None)  # eviction "fails"
    monkeypatch.setattr(cache, "can_drop_caches", lambda: False)

    with pytest.raises(cache.ColdCacheError) as excinfo:
        cache.evict(store, "auto")
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(store) in message
    assert "limit 5%" in message
    assert "drop_caches" in message and "posix_fadvise" in message
    assert isinstance(excinfo.value, BenchError)  # the pipeline prints it as one line

    monkeypatch.undo()
    assert cache.evict(store, method="fadvise").fraction < 0.05


def test_evict_detects_tmpfs_ignoring_fadvise(monkeypatch):
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("/dev/shm not available")
    monkeypatch.setattr(cache, "can_drop_caches", lambda: False)
    with tempfile.TemporaryDirectory(dir=shm, prefix="imgbench-test-") as d:
        f = write_file(Path(d) / "store.bin", 1 * MIB)
        if _fadvise_works(Path(d)):
            pytest.skip("/dev/shm honours fadvise here (not tmpfs)")
        with pytest.raises(cache.ColdCacheError):
            cache.evict(f, method="fadvise")


def test_drop_caches_writes_1_when_permitted(tmp_path, monkeypatch):
    fake = tmp_path / "drop_caches"
    fake.touch()
    monkeypatch.setattr(cache, "DROP_CACHES_PATH", fake)
    monkeypatch.setattr(cache.os, "geteuid", lambda: 0)
    synced = []
    monkeypatch.setattr(cache.os, "sync", lambda: synced.append(True))

    assert cache.can_drop_caches()
    cache.drop_caches()

    assert synced == [True]
    assert fake.read_text() == "1"
    cache.drop_caches(cache.INODES)
    assert fake.read_text() == "2"


def test_drop_caches_refuses_without_permission(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "DROP_CACHES_PATH", tmp_path / "does-not-exist")
    assert not cache.can_drop_caches()
    with pytest.raises(cache.ColdCacheError, match="needs root"):
        cache.drop_caches()

    monkeypatch.setattr(cache.os, "geteuid", lambda: 1000)
    assert not cache.can_drop_caches()
    with pytest.raises(cache.ColdCacheError, match="needs root"):
        cache.evict(tmp_path, method="drop_caches")


def test_resident_fraction_refuses_files_mincore_cannot_measure(tmp_path, monkeypatch):
    f = write_file(tmp_path / "foreign.bin", 4096)
    owner = f.stat().st_uid
    monkeypatch.setattr(cache.os, "geteuid", lambda: owner + 4242 if owner else 4242)
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="mincore"):
        cache.resident_fraction([f])


def test_evict_syncs_and_retries_once_if_pages_remain(tmp_path, monkeypatch):
    f = write_file(tmp_path / "f.bin", 4096)
    calls = []
    monkeypatch.setattr(cache, "_fadvise_dontneed", lambda paths: calls.append("fadvise"))
    monkeypatch.setattr(cache.os, "sync", lambda: calls.append("sync"))
    monkeypatch.setattr(cache, "can_drop_caches", lambda: False)

    monkeypatch.setattr(cache, "resident_fraction", lambda paths: 0.01)
    cache.evict(f, "fadvise")
    assert calls == ["fadvise", "sync", "fadvise"]

    calls.clear()
    monkeypatch.setattr(cache, "resident_fraction", lambda paths: 0.0)
    cache.evict(f, "fadvise")
    assert calls == ["fadvise"]


def test_make_resident_reads_in_an_evicted_store(cold_dir):
    files = [write_file(cold_dir / f"{i}.bin", 2 * MIB) for i in range(2)]
    cache.evict(cold_dir, "fadvise", files)
    assert cache.resident_fraction(files) < 0.05
    assert cache.make_resident(files) >= cache.WARM_LIMIT
