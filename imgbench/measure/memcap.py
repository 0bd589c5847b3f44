"""Cap the page cache a job's readers may fill: a cgroup v1 memory controller around them.

Why: MLPerf Storage's concern is that later epochs are silently served from the page cache
when the data set fits in RAM, as 100,000 CIFAR images (~300 MB) do on any machine. A memory
cgroup whose limit is below the store's size makes the kernel reclaim the store's pages
inside the group, so every epoch after the first reads part of the store from the device
again, as it would with a data set larger than RAM.

How cgroup v1 charges pages decides the recipe (kernel docs, cgroup-v1/memory.rst, section
2.3 "Shared Page Accounting"): a page is charged to the group of the process that first
brought it in, and stays there when the process moves. So the caller (1) evicts the store
first, so none of its pages stay charged to the root group; (2) faults in its own output
buffers *before* entering the group, so they are not charged to the cap; (3) sets the limit to
the cap plus the readers' own memory (there is no swap here: a limit below what the readers
themselves need makes the kernel kill them, not the cache).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from imgbench.core.errors import BenchError

log = logging.getLogger(__name__)
ROOT = Path("/sys/fs/cgroup/memory")


class CapError(BenchError):
    """The page-cache cap cannot be set up here (no cgroup v1 memory controller, not root)."""


def available(root: Path = ROOT) -> bool:
    """True if a memory cgroup can be created here (cgroup v1 memory controller, root)."""
    return (root / "memory.limit_in_bytes").exists() and os.access(root, os.W_OK)


def _sweep_stale(root: Path) -> None:
    """Remove groups a killed job left behind (SIGKILL skips every cleanup): those whose
    owner is gone and that hold no process."""
    for group in root.glob("imgbench-*"):
        pid = group.name.removeprefix("imgbench-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if not (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    group.rmdir()


class Cap:
    """One memory cgroup with a fixed limit; processes enter and leave it (children forked
    inside inherit it)."""

    def __init__(self, limit_bytes: int, root: Path = ROOT) -> None:
        if not available(root):
            raise CapError(
                f"{root}: no writable cgroup v1 memory controller; the page-cache cap "
                "(config page_cache_cap) needs root on a host with cgroup v1 memory: run as "
                "root there, or set page_cache_cap: 0"
            )
        self.root, self.limit = root, int(limit_bytes)
        _sweep_stale(root)
        self.path = root / f"imgbench-{os.getpid()}"
        self.path.mkdir(exist_ok=True)
        (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
        self.failcnt_start = self.stat("memory.failcnt")

    def stat(self, name: str) -> int:
        """One integer counter of the group (usage, max usage, failcnt)."""
        return int((self.path / name).read_text().split()[0])

    def cache_bytes(self) -> int:
        """Page cache charged to the group now (memory.stat "cache")."""
        for line in (self.path / "memory.stat").read_text().splitlines():
            key, value = line.split()
            if key == "cache":
                return int(value)
        return 0

    def enter(self) -> None:
        """Move this process (all its threads) into the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def leave(self) -> None:
        """Move this process back to the root group."""
        (self.root / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Leave, then delete the group (its remaining charges move to the parent)."""
        self.leave()
        with contextlib.suppress(OSError):
            (self.path / "memory.force_empty").write_text("0")
        try:
            self.path.rmdir()
        except OSError as exc:  # a forked reader still inside: report, do not hide it
            log.warning("could not remove cgroup %s: %s", self.path, exc)


@contextlib.contextmanager
def capped(limit_bytes: int, root: Path = ROOT) -> Iterator[Cap]:
    """A memory cgroup for the duration of the block; always removed afterwards."""
    cap = Cap(limit_bytes, root)
    try:
        yield cap
    finally:
        cap.remove()
