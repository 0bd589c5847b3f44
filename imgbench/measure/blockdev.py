"""The block device under a path and its own counters: what a timed window cost the device.

Why: images/s says how fast a reader was, not what it asked of the device. The kernel counts
every completed read and its sectors per disk (/sys/block/<dev>/stat, Documentation/
ABI/stable/sysfs-block), so two reads of the counters around a window give the IOs and bytes
the window really cost, readahead included, which is what capped epochs compare with the
device's limits.

API::

    dev = device_for(path)        # "vda", "sda", "nvme0n1"; raises NoBlockDevice (one line)
    reads, nbytes = counters(dev) # reads completed, bytes read since boot
    read_ahead_kb(dev)            # the disk's queue/read_ahead_kb
    fs_type(path)                 # "ext4", "tmpfs", ... (longest mount point in mountinfo)
    describe(path)                # {"block_device", "read_ahead_kb", "file_system", "reason"}

Mapping: the path's st_dev major:minor is /sys/dev/block/M:m; a partition (it has a
``partition`` file) maps to its parent disk, which owns queue/read_ahead_kb and whose stat
counts the partition's reads too. A file system without a block device of its own (tmpfs,
overlayfs, NFS, btrfs's anonymous device numbers: major 0) has no such counters: NoBlockDevice
names the file system. Sectors in stat are 512 bytes whatever the device's sector size.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgbench.core.errors import BenchError

__all__ = [
    "NoBlockDevice",
    "counters",
    "counters_for",
    "describe",
    "device_for",
    "fs_type",
    "read_ahead_kb",
]

SYS = Path("/sys")
SECTOR = 512  # the unit of /sys/block/<dev>/stat, fixed by the kernel's ABI


class NoBlockDevice(BenchError):
    """The path's file system has no block device whose counters can be read."""


def fs_type(path: Path | str) -> str:
    """The file system type of the longest mount point holding *path*."""
    best, fstype = "", "unknown"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return fstype
    target = str(Path(path).resolve())
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) < 5 or not tail:
            continue
        point = fields[4]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, tail.split()[0]
    return fstype


def from_devno(st_dev: int, sys_root: Path = SYS) -> str:
    """The disk (not partition) name for device number *st_dev*, from *sys_root*/dev/block."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    node = sys_root / "dev" / "block" / f"{major}:{minor}"
    if major == 0 or not node.exists():
        raise NoBlockDevice(f"device {major}:{minor} is not a block device")
    real = node.resolve()
    disk = real.parent if (real / "partition").exists() else real
    if not (sys_root / "block" / disk.name / "stat").exists():
        raise NoBlockDevice(f"device {major}:{minor} ({disk.name}) has no {sys_root}/block entry")
    return disk.name


def device_for(path: Path | str, sys_root: Path = SYS) -> str:
    """The block device (whole disk) holding *path*; NoBlockDevice in one line if none."""
    path = Path(path)
    try:
        return from_devno(os.stat(path).st_dev, sys_root)
    except NoBlockDevice as exc:
        raise NoBlockDevice(
            f"{path}: on a {fs_type(path)} file system, {exc}: no device counters there; "
            "put results/ on a disk-backed file system to measure device IOs"
        ) from exc


def counters(dev: str, sys_root: Path = SYS) -> tuple[int, int]:
    """Reads completed and bytes read by *dev* since boot (fields 1 and 3 of its stat)."""
    fields = (sys_root / "block" / dev / "stat").read_text().split()
    return int(fields[0]), int(fields[2]) * SECTOR


def counters_for(path: Path | str, sys_root: Path = SYS) -> tuple[int, int]:
    """Reads completed and bytes read by the block device *path* is on, partition included:
    its own stat (/sys/dev/block/M:m/stat), so reads of other partitions of the same disk
    are not counted."""
    st_dev = os.stat(path).st_dev
    node = sys_root / "dev" / "block" / f"{os.major(st_dev)}:{os.minor(st_dev)}" / "stat"
    fields = node.read_text().split()
    return int(fields[0]), int(fields[2]) * SECTOR


def read_ahead_kb(dev: str, sys_root: Path = SYS) -> int:
    """The disk's readahead window in KiB (queue/read_ahead_kb)."""
    return int((sys_root / "block" / dev / "queue" / "read_ahead_kb").read_text())


def describe(path: Path | str, sys_root: Path = SYS) -> dict[str, str | int | None]:
    """Device name, readahead, file system and, where there is no device, the reason: for
    records (device.json, provenance)."""
    info: dict[str, str | int | None] = {"file_system": fs_type(path)}
    try:
        dev = device_for(path, sys_root)
    except NoBlockDevice as exc:
        return {"block_device": None, "read_ahead_kb": None, **info, "reason": str(exc)}
    return {
        "block_device": dev,
        "read_ahead_kb": read_ahead_kb(dev, sys_root),
        **info,
        "reason": None,
    }
