"""Cap the page cache a job's readers may fill: a memory cgroup (v1 or v2) around them.

Why: a store larger than memory sends every epoch to the device. A memory cgroup whose limit
is below the store's size makes the kernel reclaim the store's pages *inside the group*, so
a job reads a store of any size as it would read one larger than the node's memory (MLPerf
Storage's rule: the data set at least 5x the memory, or the page cache is measured).

API (the capped epochs are built on exactly this)::

    ok, reason = usable()                  # False + one line: not root, no memory controller
    with capped(limit_bytes) as cap:       # None = no limit yet; group removed on exit
        cap.version                        # 1 or 2
        cap.path                           # the group's folder
        cap.start                          # the group this process started in
        cap.enter(pid=None)                # default this process; forked children inherit
        cap.leave()                        # entered processes back to cap.start (never root)
        cap.set_limit(n)                   # bytes, None = no limit
        cap.memory()                       # {"anon", "file", "total", "usage"} in bytes
        cap.peak(); cap.reset_peak()       # high-water mark of usage
        cap.limit_hits()                   # times the limit was hit since the group was made

Version per controller: v2 if the cgroup2 group this process is in lists ``memory`` in its
``cgroup.controllers`` (a cgroup2 mount alone is not enough: here cgroup2 is mounted at
/sys/fs/cgroup/unified with only ``hugetlb``); else v1 if the memory controller is mounted.
The process's own group comes from /proc/self/cgroup, resolved through /proc/self/mountinfo.

Where groups are made: v1, as children of the start group (a non-root group here:
/process_api/<id>). v2 forbids processes in a group that gives controllers to children
("no internal processes"), and the start group holds this process, so the group is made as a
*sibling* under the start group's parent, whose subtree_control already gives ``memory`` (that
is what puts ``memory`` in the start group's cgroup.controllers). Only at the hierarchy's root
(exempt from the rule) is the group a child, after enabling ``+memory`` there; a namespace
root holding processes cannot, and that is reported as one line.

Counters. ``memory()``: v1 ``rss`` / ``cache`` of memory.stat (``rss`` already includes
``rss_huge``, cgroup-v1/memory.rst 5.2, so it is not added twice); v2 ``anon`` / ``file``;
``total`` = anon + file; ``usage`` = memory.usage_in_bytes / memory.current. ``peak()``: v1
memory.max_usage_in_bytes (``reset_peak`` writes 0); v2 memory.peak (Linux 5.19+), which can be
reset only from Linux 6.12, and then per open file: ``reset_peak`` keeps that file open and
``peak`` reads through it. ``limit_hits()``: v1 memory.failcnt; v2 the ``max`` line of
memory.events.

How v1 charges pages decides the recipe (cgroup-v1/memory.rst 2.3): a page is charged to the
group of the process that first brought it in and stays there when the process moves. So a
caller evicts the store first (no page of it charged outside the group), faults in its own
buffers before entering, and sets the limit to the cap plus the readers' own memory (no swap
here: a limit below what the readers need makes the kernel kill them, not the cache).

Groups of a job killed before cleanup (SIGKILL skips it) are swept when the next group is made
in the same place: ``imgbench-<pid>-<n>`` whose pid is gone and which holds no process.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imgbench.core.errors import BenchError

log = logging.getLogger(__name__)
ROOT = Path("/sys/fs/cgroup/memory")  # v1's usual mount point (kept for older callers)
PREFIX = "imgbench-"
_SEQ = itertools.count()
_FIX = "run as root on a host with a memory controller, or set page_cache_cap: 0"


class CapError(BenchError):
    """The page-cache cap cannot be set up here (no usable memory controller, not root)."""


@dataclass(frozen=True)
class Hierarchy:
    """Where this process's memory cgroup lives: version, the group it started in, and the
    folder new groups are made in."""

    version: int
    start: Path
    parent: Path
    is_root: bool  # start is the hierarchy's mount root


def _read(path: Path | str) -> str:
    return Path(path).read_text()


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(mountinfo: str) -> list[tuple[str, Path, str, set[str]]]:
    """(root inside the hierarchy, mount point, fs type, super options) per mount."""
    out = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        out.append(
            (_unescape(fields[3]), Path(_unescape(fields[4])), rest[0], set(rest[2].split(",")))
        )
    return out


def _own_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """This process's v1 memory group and v2 group, as /proc/self/cgroup names them."""
    v1 = v2 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        path = path.removesuffix(" (deleted)")
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _inside(mount: Path, mount_root: str, path: str) -> Path | None:
    """The folder of group *path* under a mount of its hierarchy rooted at *mount_root*."""
    rel = os.path.relpath(path, mount_root)
    if rel == ".":
        return mount
    if rel.startswith(".."):
        return None
    return mount / rel


def detect(proc_cgroup: str | None = None, mountinfo: str | None = None) -> Hierarchy:
    """The memory cgroup hierarchy of this process (v2 preferred where it has ``memory``);
    *proc_cgroup* and *mountinfo* default to /proc/self/cgroup and /proc/self/mountinfo."""
    proc_cgroup = _read("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup
    mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    v1_path, v2_path = _own_paths(proc_cgroup)
    mounts = _mounts(mountinfo)
    seen_v2 = []
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or v2_path is None:
            continue
        start = _inside(point, root, v2_path)
        if start is None or not (start / "cgroup.controllers").exists():
            continue
        if "memory" not in _read(start / "cgroup.controllers").split():
            seen_v2.append(str(start))
            continue
        is_root = start == point
        return Hierarchy(2, start, start if is_root else start.parent, is_root)
    for root, point, fstype, opts in mounts:
        if fstype != "cgroup" or "memory" not in opts or v1_path is None:
            continue
        start = _inside(point, root, v1_path)
        if start is not None and start.is_dir():
            return Hierarchy(1, start, start, start == point)
    v2_note = f" (cgroup2 at {', '.join(seen_v2)} lacks memory)" if seen_v2 else ""
    raise CapError(
        f"no memory cgroup controller: none in v2 and no v1 memory mount{v2_note}; {_FIX}"
    )


def usable(proc_cgroup: str | None = None, mountinfo: str | None = None) -> tuple[bool, str]:
    """Whether a capped group can be made here, and one line saying which or why not."""
    try:
        h = detect(proc_cgroup, mountinfo)
    except (CapError, OSError) as exc:
        return False, str(exc)
    if not os.access(h.parent, os.W_OK):
        return False, f"not root: cannot make memory cgroups in {h.parent}; {_FIX}"
    return True, f"cgroup v{h.version} memory controller, groups made in {h.parent}"


def available(root: Path = ROOT) -> bool:
    """True if a capped group can be made here (older name of ``usable()[0]``)."""
    return usable()[0]


def _sweep_stale(parent: Path) -> None:
    """Remove groups a killed job left behind: its pid is gone and it holds no process."""
    for group in parent.glob(f"{PREFIX}*"):
        pid = group.name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                if not _read(group / "cgroup.procs").split():
                    group.rmdir()


def _move(pid: int, group: Path) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended meanwhile: nothing to move
        (group / "cgroup.procs").write_text(str(pid))


class Cap:
    """One memory cgroup made for this job; processes enter and leave it (children forked
    inside inherit it). Made by :func:`capped`, which also removes it."""

    def __init__(self, hierarchy: Hierarchy, limit_bytes: int | None = None) -> None:
        self.version, self.start = hierarchy.version, hierarchy.start
        parent = hierarchy.parent
        _sweep_stale(parent)
        if self.version == 2 and hierarchy.is_root:
            self._enable_memory(parent)
        self.path = parent / f"{PREFIX}{os.getpid()}-{next(_SEQ)}"
        try:
            self.path.mkdir()
        except OSError as exc:
            raise CapError(
                f"cannot make memory cgroup {self.path}: {exc.strerror}; {_FIX}"
            ) from exc
        self._entered: list[int] = []
        self._soft = False  # v2: limit through memory.high (hold_at_limit)
        self._peak_fd: int | None = None
        self.set_limit(limit_bytes)
        self.failcnt_start = 0  # a new group has hit nothing; kept for older callers

    @staticmethod
    def _enable_memory(group: Path) -> None:
        control = group / "cgroup.subtree_control"
        if "memory" in _read(control).split():
            return
        try:
            control.write_text("+memory")
        except OSError as exc:
            raise CapError(
                f"{group}: cannot give child groups the memory controller ({exc.strerror}): "
                "cgroup v2 allows no processes in a group that does; start the job in a leaf "
                "group whose parent enables memory, or set page_cache_cap: 0"
            ) from exc

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v1 if self.version == 1 else v2)

    def _int(self, v1: str, v2: str) -> int:
        return int(_read(self._file(v1, v2)).split()[0])

    def set_limit(self, limit_bytes: int | None) -> None:
        """Set the group's memory limit in bytes (None, or -1 as v1 spells it: no limit)."""
        if limit_bytes is not None and limit_bytes < 0:
            limit_bytes = None
        if self.version == 1:
            value = "-1" if limit_bytes is None else str(int(limit_bytes))
        else:
            value = "max" if limit_bytes is None else str(int(limit_bytes))
        v2_file = "memory.high" if self._soft else "memory.max"
        try:
            self._file("memory.limit_in_bytes", v2_file).write_text(value)
        except OSError as exc:
            raise CapError(
                f"{self.path}: cannot set the memory limit to {value} ({exc.strerror}); the "
                "group may already use more than that and hold it: raise the cap"
            ) from exc

    def hold_at_limit(self) -> None:
        """At the limit, make the group's processes wait for memory instead of being killed:
        v1 pauses them (memory.oom_control = 1) until the limit is raised; v2 limits through
        memory.high (reclaim and throttling, never the OOM killer) and leaves memory.max
        unlimited. Whoever raises the limit must run outside the group."""
        if self.version == 1:
            (self.path / "memory.oom_control").write_text("1")
        else:
            self._soft = True
            (self.path / "memory.max").write_text("max")

    def stat(self, name: str) -> int:
        """One integer file of the group by name (older callers; prefer the methods)."""
        return int(_read(self.path / name).split()[0])

    def memory(self) -> dict[str, int]:
        """The group's own memory now, in bytes: anon, file (page cache), their total, and
        the controller's usage (which also counts kernel memory)."""
        stat = {}
        for line in _read(self.path / "memory.stat").splitlines():
            key, _, value = line.partition(" ")
            stat[key] = int(value)
        anon, file = (
            (stat["rss"], stat["cache"]) if self.version == 1 else (stat["anon"], stat["file"])
        )
        usage = self._int("memory.usage_in_bytes", "memory.current")
        return {"anon": anon, "file": file, "total": anon + file, "usage": usage}

    def cache_bytes(self) -> int:
        """Page cache charged to the group now (older name of ``memory()["file"]``)."""
        return self.memory()["file"]

    def peak(self) -> int:
        """Highest usage since the group was made or ``reset_peak``, in bytes."""
        if self._peak_fd is not None:
            return int(os.pread(self._peak_fd, 64, 0).split()[0])
        try:
            return self._int("memory.max_usage_in_bytes", "memory.peak")
        except FileNotFoundError as exc:
            raise CapError(
                f"{self.path}: no memory.peak (cgroup v2 has it from Linux 5.19)"
            ) from exc

    def reset_peak(self) -> None:
        """Start the high-water mark again from the current usage."""
        if self.version == 1:
            (self.path / "memory.max_usage_in_bytes").write_text("0")
            return
        self._close_peak()
        try:  # the reset holds for reads through this same open file (Linux 6.12+)
            fd = os.open(self.path / "memory.peak", os.O_RDWR)
        except OSError as exc:
            raise CapError(
                f"{self.path}/memory.peak cannot be reset here ({exc.strerror}): cgroup v2 "
                "allows it from Linux 6.12; use a new group per window instead"
            ) from exc
        try:
            os.write(fd, b"reset")
        except OSError:
            os.close(fd)
            raise
        self._peak_fd = fd

    def _close_peak(self) -> None:
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None

    def limit_hits(self) -> int:
        """Times usage hit the limit since the group was made (v1 failcnt, v2 events max)."""
        if self.version == 1:
            return self.stat("memory.failcnt")
        for line in _read(self.path / "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max":
                return int(value)
        return 0

    def enter(self, pid: int | None = None) -> None:
        """Move a process (default: this one, all its threads) into the group; children it
        forks afterwards start inside."""
        pid = os.getpid() if pid is None else pid
        (self.path / "cgroup.procs").write_text(str(pid))
        if pid not in self._entered:
            self._entered.append(pid)

    def leave(self) -> None:
        """Move every process entered back to the group this job started in."""
        for pid in self._entered:
            _move(pid, self.start)
        self._entered.clear()

    def remove(self) -> None:
        """Leave, move out what was forked inside, then delete the group (v1 moves its
        remaining charges to the parent; v2 keeps them on the parent's counters)."""
        self._close_peak()
        self.leave()
        with contextlib.suppress(OSError):
            for pid in _read(self.path / "cgroup.procs").split():
                _move(int(pid), self.start)
        if self.version == 1:
            with contextlib.suppress(OSError):
                (self.path / "memory.force_empty").write_text("0")
        try:
            self.path.rmdir()
        except OSError as exc:  # a process still inside: report, do not hide it
            if exc.errno != errno.ENOENT:
                log.warning("could not remove cgroup %s: %s", self.path, exc)


@contextlib.contextmanager
def capped(
    limit_bytes: int | None,
    proc_cgroup: str | None = None,
    mountinfo: str | None = None,
) -> Iterator[Cap]:
    """A new memory cgroup for the duration of the block (limit None = none yet); its
    processes go back to the start group and it is removed afterwards, even on error."""
    ok, reason = usable(proc_cgroup, mountinfo)
    if not ok:
        raise CapError(reason)
    cap = Cap(detect(proc_cgroup, mountinfo), limit_bytes)
    try:
        yield cap
    finally:
        cap.remove()
