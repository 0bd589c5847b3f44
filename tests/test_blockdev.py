"""blockdev: the device under a path and its counters, on this machine and on a fake /sys."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from imgbench.measure import blockdev

MiB = 1 << 20


def test_odirect_read_moves_the_counters_of_the_device_under_the_path(tmp_path):
    try:
        dev = blockdev.device_for(tmp_path)
    except blockdev.NoBlockDevice as exc:
        pytest.skip(str(exc))
    path = tmp_path / "data.bin"
    path.write_bytes(np.random.default_rng(0).bytes(8 * MiB))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        pytest.skip(f"{tmp_path}: the file system refuses O_DIRECT")
    try:
        reads0, bytes0 = blockdev.counters(dev)
        done = 0
        with mmap.mmap(-1, MiB) as buf:  # page-aligned, as O_DIRECT needs
            while n := os.preadv(fd, [buf], done):
                done += n
        reads1, bytes1 = blockdev.counters(dev)
    finally:
        os.close(fd)
    assert done == 8 * MiB
    # other processes may read too: at least ours, never less
    assert bytes1 - bytes0 >= done
    largest_io = int(Path(f"/sys/block/{dev}/queue/max_sectors_kb").read_text()) * 1024
    assert reads1 - reads0 >= done // max(largest_io, MiB)


def fake_sys(root: Path) -> Path:
    """/sys with disk sda (8:0) and its partition sda1 (8:1), as the kernel links them."""
    disk = root / "devices" / "pci0000:00" / "ata1" / "block" / "sda"
    (disk / "sda1").mkdir(parents=True)
    (disk / "sda1" / "partition").write_text("1\n")
    (disk / "sda1" / "stat").write_text("5 0 40 0 0 0 0 0 0 0 0\n")
    (disk / "queue").mkdir()
    (disk / "queue" / "read_ahead_kb").write_text("128\n")
    (disk / "stat").write_text("   100    3   2048   50   7   0   56   9   0   60   59\n")
    (root / "dev" / "block").mkdir(parents=True)
    (root / "block").mkdir()
    rel = "../../devices/pci0000:00/ata1/block/sda"
    os.symlink(rel, root / "dev" / "block" / "8:0")
    os.symlink(rel + "/sda1", root / "dev" / "block" / "8:1")
    os.symlink("../devices/pci0000:00/ata1/block/sda", root / "block" / "sda")
    return root


def test_a_partition_maps_to_its_disk_on_a_fake_sys(tmp_path):
    sys_root = fake_sys(tmp_path)
    assert blockdev.from_devno(os.makedev(8, 1), sys_root) == "sda"
    assert blockdev.from_devno(os.makedev(8, 0), sys_root) == "sda"
    assert blockdev.counters("sda", sys_root) == (100, 2048 * 512)  # sectors are 512 bytes
    assert blockdev.read_ahead_kb("sda", sys_root) == 128
    with pytest.raises(blockdev.NoBlockDevice, match="8:2"):
        blockdev.from_devno(os.makedev(8, 2), sys_root)


def test_anonymous_devices_have_no_block_device(tmp_path):
    with pytest.raises(blockdev.NoBlockDevice, match="0:45 is not a block device"):
        blockdev.from_devno(os.makedev(0, 45), fake_sys(tmp_path))


def test_tmpfs_is_named_in_the_reason():
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.major(shm.stat().st_dev) != 0:
        pytest.skip("no tmpfs at /dev/shm")
    info = blockdev.describe(shm)
    assert info["block_device"] is None and info["read_ahead_kb"] is None
    assert "tmpfs" in info["reason"] and "\n" not in info["reason"]
    assert info["file_system"] == "tmpfs"
    with pytest.raises(blockdev.NoBlockDevice, match="tmpfs"):
        blockdev.device_for(shm)
