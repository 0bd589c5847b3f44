"""memcap: v1 on this machine's real controller, v2 (and detection) on a fake cgroup tree."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imgbench.measure import blockdev, cache, memcap

MiB = 1 << 20


def own_v1_line() -> str:
    return next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in x)


def real_v1() -> memcap.Hierarchy:
    ok, reason = memcap.usable()
    if not ok:
        pytest.skip(reason)
    h = memcap.detect()
    if h.version != 1:
        pytest.skip(f"the memory controller here is cgroup v{h.version}, not v1")
    return h


def evicted_file(path: Path, nbytes: int) -> Path:
    """A file of random bytes written, synced and dropped from the page cache."""
    if blockdev.describe(path.parent)["block_device"] is None:
        pytest.skip(f"{path.parent} is not on a disk: its page cache cannot be evicted")
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        for _ in range(nbytes // MiB):
            fh.write(rng.bytes(MiB))
        fh.flush()
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if cache.resident_fraction([path]) > 0.01:
        pytest.skip("posix_fadvise(DONTNEED) did not evict the file here")
    return path


def test_v1_capped_read_keeps_the_file_within_the_cap_and_charges_the_group(tmp_path):
    h = real_v1()
    size, cap_bytes = 64 * MiB, 16 * MiB
    path = evicted_file(tmp_path / "big.bin", size)
    buf = bytearray(MiB)  # faulted in before entering: not charged to the group
    start_line = own_v1_line()
    peak = 0.0
    with memcap.capped(None) as cap:
        assert cap.version == 1 and cap.start == h.start and cap.path.parent == h.start
        cap.set_limit(cap_bytes)
        assert (cap.path / "memory.limit_in_bytes").read_text().strip() == str(cap_bytes)
        cap.enter()
        with open(path, "rb", buffering=0) as fh:
            for i in range(size // MiB):
                assert fh.readinto(buf) == MiB
                if i % 4 == 3:
                    peak = max(peak, cache.resident_fraction([path]))
        resident = cache.resident_fraction([path])
        mem = cap.memory()
        cap.leave()
        assert own_v1_line() == start_line  # back in the start group, not the root
        assert cap.peak() <= cap_bytes
        assert cap.limit_hits() >= 1  # the limit was reached and reclaimed the file's pages
    assert own_v1_line() == start_line
    assert not cap.path.exists()
    assert 0 < peak <= (cap_bytes + 0.05 * size) / size
    # every resident page of the evicted file was brought in inside the group: the group's
    # page-cache charge covers it, so nothing of the file is charged outside
    assert resident * size <= mem["file"] <= cap_bytes
    assert mem["total"] == mem["anon"] + mem["file"] and mem["usage"] <= cap_bytes


def test_v1_group_removed_and_process_returned_when_the_body_raises():
    real_v1()
    start_line = own_v1_line()
    with pytest.raises(RuntimeError, match="boom"), memcap.capped(256 * MiB) as cap:
        cap.enter()
        raise RuntimeError("boom")
    assert own_v1_line() == start_line
    assert not cap.path.exists()


def test_v1_peak_reset_and_stale_groups_swept():
    h = real_v1()
    stale = h.parent / f"{memcap.PREFIX}999999999-0"  # no such pid: a job killed earlier
    stale.mkdir()
    try:
        with memcap.capped(None) as cap:
            assert not stale.exists()
            cap.enter()
            block = np.ones(32 * MiB, dtype=np.uint8)  # 32 MiB charged inside the group
            high = cap.peak()
            del block
            cap.reset_peak()
            cap.leave()
            assert high >= 32 * MiB > cap.peak()
    finally:
        if stale.exists():
            stale.rmdir()


# --- a fake cgroup tree: v2 and detection, without touching the real controller ---


def mountinfo(*mounts: tuple[str, Path, str, str]) -> str:
    """Lines of /proc/self/mountinfo for (root, mount point, fs type, super options)."""
    return "".join(
        f"{30 + i} 23 0:{40 + i} {root} {point} rw,relatime - {fstype} {fstype} {opts}\n"
        for i, (root, point, fstype, opts) in enumerate(mounts)
    )


def group(path: Path, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name.replace("__", ".")).write_text(text)
    return path


@pytest.fixture
def v2(tmp_path):
    """A v2 tree: the job's group job.slice/job-1.scope has memory from its parent."""
    mnt = tmp_path / "cgroup"
    group(mnt, cgroup__controllers="cpu memory pids\n", cgroup__subtree_control="memory\n")
    group(mnt / "job.slice", cgroup__controllers="memory\n", cgroup__subtree_control="memory\n")
    start = group(mnt / "job.slice" / "job-1.scope", cgroup__controllers="memory pids\n")
    (start / "cgroup.procs").write_text("")
    info = mountinfo(("/", mnt, "cgroup2", "rw,nsdelegate"))
    return {"mnt": mnt, "start": start, "proc": "0::/job.slice/job-1.scope\n", "info": info}


def test_v2_detected_and_group_made_beside_the_start_group(v2):
    h = memcap.detect(v2["proc"], v2["info"])
    assert (h.version, h.start, h.parent, h.is_root) == (2, v2["start"], v2["start"].parent, False)
    with memcap.capped(3 * MiB, v2["proc"], v2["info"]) as cap:
        assert cap.version == 2 and cap.path.parent == v2["mnt"] / "job.slice"
        assert cap.path.name.startswith(f"{memcap.PREFIX}{os.getpid()}-")
        assert (cap.path / "memory.max").read_text() == str(3 * MiB)
        cap.set_limit(None)
        assert (cap.path / "memory.max").read_text() == "max"
        cap.enter()
        assert (cap.path / "cgroup.procs").read_text() == str(os.getpid())
        group(
            cap.path,
            memory__stat="anon 4096\nfile 8192\nkernel 512\nshmem 0\nfile_mapped 4096\n",
            memory__current="12800\n",
            memory__peak="20480\n",
            memory__events="low 0\nhigh 0\nmax 7\noom 0\noom_kill 0\n",
        )
        assert cap.memory() == {"anon": 4096, "file": 8192, "total": 12288, "usage": 12800}
        assert cap.peak() == 20480 and cap.limit_hits() == 7
        (v2["start"] / "cgroup.procs").write_text("")
        cap.leave()
        assert (v2["start"] / "cgroup.procs").read_text() == str(os.getpid())
        for f in cap.path.iterdir():  # a real group's files vanish with it; these do not
            f.unlink()
    assert not cap.path.exists()


def test_v2_at_the_root_enables_memory_for_a_child(tmp_path):
    mnt = group(tmp_path / "cg", cgroup__controllers="cpu memory\n", cgroup__subtree_control="")
    (mnt / "cgroup.procs").write_text("")
    info = mountinfo(("/", mnt, "cgroup2", "rw"))
    with memcap.capped(None, "0::/\n", info) as cap:
        assert cap.path.parent == mnt
        assert (mnt / "cgroup.subtree_control").read_text() == "+memory"
        for f in cap.path.iterdir():
            f.unlink()


def test_v2_inside_a_namespace_mount(tmp_path):
    """A mount whose root is a group deeper in the hierarchy (a cgroup namespace)."""
    mnt = group(tmp_path / "cg", cgroup__controllers="memory\n")
    start = group(mnt / "inner", cgroup__controllers="memory\n")
    h = memcap.detect("0::/outer/inner\n", mountinfo(("/outer", mnt, "cgroup2", "rw")))
    assert (h.version, h.start, h.parent) == (2, start, mnt)


def test_v2_missing_peak_is_one_line(v2):
    with memcap.capped(None, v2["proc"], v2["info"]) as cap:
        with pytest.raises(memcap.CapError, match="5.19") as info:
            cap.peak()
        assert "\n" not in str(info.value)
        for f in cap.path.iterdir():
            f.unlink()


def test_v1_stat_reads_rss_once_and_cache(tmp_path):
    mem = group(tmp_path / "memory", memory__limit_in_bytes="9223372036854771712\n")
    start = group(mem / "process_api" / "abc", cgroup__procs="")
    info = mountinfo(("/", mem, "cgroup", "rw,memory"))
    with memcap.capped(5 * MiB, "4:memory:/process_api/abc\n0::/\n", info) as cap:
        assert cap.version == 1 and cap.path.parent == start
        assert (cap.path / "memory.limit_in_bytes").read_text() == str(5 * MiB)
        group(
            cap.path,
            memory__stat="cache 100\nrss 200\nrss_huge 50\nshmem 0\ntotal_rss 999\n",
            memory__usage_in_bytes="400\n",
        )
        # rss already includes rss_huge (cgroup-v1/memory.rst): not added twice
        assert cap.memory() == {"anon": 200, "file": 100, "total": 300, "usage": 400}
        for f in cap.path.iterdir():
            f.unlink()


def test_cgroup2_with_only_hugetlb_is_no_v2_memory(tmp_path):
    """This machine's layout: cgroup2 at .../unified with only hugetlb, memory on v1."""
    unified = group(tmp_path / "unified", cgroup__controllers="hugetlb\n")
    proc = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
    only_v2 = mountinfo(("/", unified, "cgroup2", "rw"))
    ok, reason = memcap.usable(proc, only_v2)
    assert not ok and "\n" not in reason
    assert "lacks memory" in reason and str(unified) in reason and "page_cache_cap: 0" in reason

    mem = group(tmp_path / "memory")
    start = group(mem / "process_api" / "abc", cgroup__procs="")
    both = only_v2 + mountinfo(("/", mem, "cgroup", "rw,memory"))
    h = memcap.detect(proc, both)
    assert (h.version, h.start, h.parent) == (1, start, start)


def test_no_controller_at_all_is_one_line(tmp_path):
    ok, reason = memcap.usable("0::/\n", mountinfo(("/", tmp_path, "tmpfs", "rw")))
    assert not ok and "no memory cgroup controller" in reason and "\n" not in reason
    with pytest.raises(memcap.CapError, match="no memory cgroup controller"):
        with memcap.capped(None, "0::/\n", ""):
            pass
