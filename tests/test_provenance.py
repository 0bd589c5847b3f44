import json
import os
import re
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import h5py
import lmdb
import numpy as np
import psutil
import pytest

from imgbench import stores
from imgbench.report import provenance

TOP_KEYS = {
    "created",
    "python",
    "packages",
    "libraries",
    "os",
    "cpu",
    "memory",
    "filesystem",
    "device",
    "memory_cgroup",
    "git",
    "hostname",
    "config",
    "config_hash",
}
SUB_KEYS = {
    "python": {"version", "implementation", "executable"},
    "packages": set(provenance.packages()),
    "libraries": {"hdf5", "lmdb", "zlib", "zlib_ng", "libpng", "libjpeg"},
    "os": {"system", "kernel_release", "kernel_version", "machine", "distro"},
    "cpu": {"model", "logical_cores", "affinity_cores"},
    "memory": {"total_bytes"},
    "filesystem": {"path", "mount_point", "fstype", "source", "options"},
    "git": {"commit", "dirty"},
    "memory_cgroup": {"version", "group", "usable", "reason"},
}
CONFIG = {"formats": ["png", "lmdb"], "n_images": 1000, "cold_cache": "fadvise"}


@pytest.fixture
def no_repo(tmp_path, monkeypatch):
    """A directory that is certainly not inside a git work tree."""
    d = tmp_path / "not-a-repo"
    d.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    return d


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    cmd += ["-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def git_repo(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git not on PATH")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("hi\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def test_config_hash_stable_across_key_order():
    a = {"b": 1, "a": {"y": [1, 2], "x": "s"}}
    b = {"a": {"x": "s", "y": [1, 2]}, "b": 1}
    assert provenance.config_hash(a) == provenance.config_hash(b)
    assert re.fullmatch(r"[0-9a-f]{16}", provenance.config_hash(a))


def test_config_hash_changes_with_value():
    base = provenance.config_hash({"a": {"x": 1}})
    assert provenance.config_hash({"a": {"x": 2}}) != base
    assert provenance.config_hash({"a": {"x": "1"}}) != base
    # non-JSON values are hashed via str() rather than crashing
    assert provenance.config_hash({"p": Path("/x")}) == provenance.config_hash({"p": "/x"})


def test_collect_has_stable_shape(tmp_path, no_repo):
    data = provenance.collect(CONFIG, tmp_path / "results", no_repo)

    assert set(data) == TOP_KEYS
    for key, sub in SUB_KEYS.items():
        assert set(data[key]) == sub, key
    assert data["config"] == CONFIG
    assert data["config_hash"] == provenance.config_hash(CONFIG)
    assert data["created"].endswith("+00:00")
    assert data["cpu"]["logical_cores"] == psutil.cpu_count() == os.cpu_count()
    assert data["cpu"]["affinity_cores"] == len(os.sched_getaffinity(0))
    assert data["memory"]["total_bytes"] == psutil.virtual_memory().total > 0
    assert data["device"] is None
    # the record must be JSON-serialisable as is
    json.dumps(data)


def test_collect_versions_match_imported_modules(tmp_path, no_repo):
    data = provenance.collect({}, tmp_path / "results", no_repo)

    assert data["packages"]["numpy"] == np.__version__
    assert data["packages"]["h5py"] == h5py.__version__
    assert data["packages"]["lmdb"] == lmdb.__version__
    assert data["libraries"]["hdf5"] == h5py.version.hdf5_version
    assert data["libraries"]["lmdb"] == ".".join(map(str, lmdb.version()))


def test_packages_are_the_core_ones_every_formats_and_the_engine():
    expected = {"numpy", "pillow", "pandas", "matplotlib", "psutil", "pooch", "pyyaml"}
    expected |= {"lmdb", "h5py", "pyarrow", "pylance", "zarr", "tiledb", "plyvel"}
    assert expected | {"simplejpeg", "snakemake"} <= set(provenance.packages())
    for spec in stores.FORMATS.values():
        assert set(spec.packages) <= set(provenance.packages())


def test_core_packages_from_the_installed_metadata_without_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "_PYPROJECT", tmp_path / "pyproject.toml")
    monkeypatch.setattr(
        provenance.metadata, "requires", lambda name: ["numpy>=2", "x; extra == 't'"]
    )
    assert provenance.core_packages() == ["numpy"]


def test_collect_missing_package_is_none(tmp_path, no_repo, monkeypatch):
    monkeypatch.setattr(provenance, "packages", lambda: ["numpy", "surely-not-installed-pkg"])
    data = provenance.collect({}, tmp_path / "results", no_repo)
    assert data["packages"] == {"numpy": np.__version__, "surely-not-installed-pkg": None}


def test_collect_filesystem_creates_results_dir(tmp_path, no_repo):
    results = tmp_path / "a" / "b" / "results"
    data = provenance.collect({}, results, no_repo)

    fs = data["filesystem"]
    assert results.is_dir()
    assert fs["path"] == str(results.resolve())
    assert fs["fstype"]
    assert fs["source"]
    assert fs["mount_point"] and fs["path"].startswith(fs["mount_point"])
    assert "rw" in fs["options"].split(",") or "ro" in fs["options"].split(",")


Part = namedtuple("Part", "device mountpoint fstype opts")

FAKE_PARTITIONS = [
    Part("/dev/vda", "/", "ext4", "rw,relatime,discard"),
    Part("/dev/sdb1", "/data", "xfs", "rw,noatime,attr2"),
    Part("srv:/export", "/data/my dir", "nfs4", "rw,vers=4.2"),  # psutil unescapes \040
    Part("tmpfs", "/database", "tmpfs", "rw,size=1k"),
    Part("/dev/sdc", "/data", "btrfs", "rw,nosuid,ssd"),  # stacked on /data after xfs
]


@pytest.fixture
def fake_partitions(monkeypatch):
    calls = []

    def disk_partitions(all=False):
        calls.append(all)
        return list(FAKE_PARTITIONS)

    monkeypatch.setattr(psutil, "disk_partitions", disk_partitions)
    return calls


def test_find_mount_longest_prefix_and_stacking(fake_partitions):
    find = provenance._find_mount

    assert find("/data/x/y") == {
        "mount_point": "/data",
        "fstype": "btrfs",  # the last mount stacked on /data is the visible one
        "source": "/dev/sdc",
        "options": "rw,nosuid,ssd",
    }
    assert find("/data")["fstype"] == "btrfs"
    assert find("/data/my dir/f")["mount_point"] == "/data/my dir"
    assert find("/data/my dir/f")["fstype"] == "nfs4"
    assert find("/data/my dirt")["fstype"] == "btrfs"  # a prefix only counts at a "/"
    assert find("/databases")["mount_point"] == "/"
    assert find("/database")["fstype"] == "tmpfs"
    assert find("/")["options"] == "rw,relatime,discard"
    # all=True: pseudo and network file systems (tmpfs, nfs) must not be filtered out
    assert fake_partitions and all(fake_partitions)


def test_filesystem_info_uses_psutil_and_survives_failures(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(
        psutil, "disk_partitions", lambda all=False: [Part("src", "/", "fakefs", "ro")]
    )
    fs = provenance._filesystem_info(results)
    assert fs == {
        "path": str(results.resolve()),
        "mount_point": "/",
        "fstype": "fakefs",
        "source": "src",
        "options": "ro",
    }

    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [])
    assert provenance._filesystem_info(results)["fstype"] is None

    def boom(all=False):
        raise OSError("no /proc")

    monkeypatch.setattr(psutil, "disk_partitions", boom)
    fs = provenance._filesystem_info(results)
    assert fs["path"] == str(results.resolve())
    assert fs["mount_point"] is fs["fstype"] is fs["source"] is fs["options"] is None


def test_filesystem_of_tmp_path_on_this_machine(tmp_path):
    fs = provenance._filesystem_info(tmp_path)
    assert fs["fstype"]
    assert fs["path"] == str(tmp_path.resolve())
    # the mount point found is the file system tmp_path is really on
    assert os.path.ismount(fs["mount_point"])
    assert os.stat(fs["mount_point"]).st_dev == os.stat(tmp_path).st_dev


def test_collect_stores_device_measurement(tmp_path, no_repo):
    device = {"method": "python-odirect", "seq_read_mb_s": 512.5, "odirect": True}
    data = provenance.collect(CONFIG, tmp_path / "results", no_repo, device=device)
    assert data["device"] == device
    assert set(data) == TOP_KEYS
    json.dumps(data)


def test_git_commit_and_dirty_for_repo(tmp_path, git_repo):
    head = git(git_repo, "rev-parse", "HEAD").strip()

    clean = provenance.collect({}, tmp_path / "results", git_repo)["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"])
    assert clean == {"commit": head, "dirty": False}

    (git_repo / "README").write_text("changed\n")
    dirty = provenance.collect({}, tmp_path / "results", git_repo)["git"]
    assert dirty == {"commit": head, "dirty": True}


def test_git_none_for_non_repo(tmp_path, no_repo):
    if shutil.which("git") is None:
        pytest.skip("git not on PATH")
    assert provenance.collect({}, tmp_path / "results", no_repo)["git"] == {
        "commit": None,
        "dirty": None,
    }


def test_git_none_when_git_missing(tmp_path, git_repo, monkeypatch):
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    data = provenance.collect({}, tmp_path / "results", git_repo)
    assert data["git"] == {"commit": None, "dirty": None}
    assert set(data) == TOP_KEYS


def test_write_round_trips_and_is_atomic(tmp_path, no_repo):
    data = provenance.collect(CONFIG, tmp_path / "results", no_repo)
    out = tmp_path / "out" / "provenance.json"
    out.parent.mkdir()
    out.write_text("old")

    provenance.write(out, data)

    with open(out) as fh:
        assert json.load(fh) == data
    text = out.read_text()
    assert text.startswith('{\n  "config"')  # indent 2, sorted keys
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind


def test_write_serialises_paths_and_is_readable(tmp_path):
    out = tmp_path / "p.json"
    provenance.write(out, {"where": Path("/x/y"), "nested": {"s": {2, 1}}})
    assert json.loads(out.read_text()) == {"nested": {"s": [1, 2]}, "where": "/x/y"}
    assert out.stat().st_mode & 0o777 == 0o644


def test_write_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "p.json"
    provenance.write(out, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(provenance.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        provenance.write(out, {"v": 2})

    assert json.loads(out.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [out]


def test_the_memory_cgroup_is_recorded_or_says_why_not(monkeypatch):
    rec = provenance._cgroup_info()
    assert rec["usable"] == (rec["version"] in (1, 2)) and (rec["reason"] is None) == rec["usable"]
    monkeypatch.setattr(provenance.memcap, "usable", lambda: (False, "not root: run as root"))
    assert provenance._cgroup_info() == {
        "version": None,
        "group": None,
        "usable": False,
        "reason": "not root: run as root",
    }
