"""Page-cache control for cold-cache reads (Linux).

A "cold" read benchmark is only meaningful if the store's pages are really
out of the page cache when timing starts. This module evicts a store's pages
(targeted ``posix_fadvise(DONTNEED)`` or the global ``drop_caches``) and
*measures* residency with ``mincore(2)``, so a run can refuse to report warm
numbers as cold ones instead of silently doing so.

Writers must ``fsync`` their files and close every handle before eviction:
the kernel does not drop dirty pages, nor pages still mapped by a process
(e.g. an open LMDB environment).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imgbench.core.errors import BenchError
from imgbench.core.names import CacheScope

__all__ = [
    "COLD_LIMIT",
    "ColdCacheError",
    "can_drop_caches",
    "drop_caches",
    "evict",
    "make_resident",
    "resident_fraction",
    "store_files",
]

DROP_CACHES_PATH = Path("/proc/sys/vm/drop_caches")
SNAKEMAKE_MARKER = ".snakemake_timestamp"
#: A cold repeat with more of the store resident than this fails the job, and ``auto``
#: falls back from fadvise to drop_caches above it.
COLD_LIMIT = 0.05
#: A warm repeat needs at least this much of the store resident (else it is read in first,
#: and labelled ``partial`` if it still does not fit in memory).
WARM_LIMIT = 1.0 - COLD_LIMIT

# mincore is called on windows of this many bytes, so the residency vector
# (one byte per page) stays small even for stores of hundreds of GiB.
_WINDOW_BYTES = 1 << 30

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value


PAGES, INODES = "1", "2"  # values written to drop_caches


class Eviction(NamedTuple):
    """What a cold read had evicted: how, what stayed resident, and the scope."""

    method: str  # fadvise | drop_caches
    fraction: float  # resident fraction of the store's pages, measured after eviction
    scope: CacheScope  # DATA or FULL


class ColdCacheError(BenchError):
    """A store is still (partly) in the page cache when it must be cold."""


def store_files(path: Path) -> list[Path]:
    """Return the regular files that make up a store, sorted.

    Snakemake ``directory()`` outputs contain a ``.snakemake_timestamp``
    marker; it is not part of the store, so it is skipped. Symlinked
    directories are not followed (each file is counted once).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"store not found: {path}")
    files: list[str] = []
    stack = [str(path)]
    while stack:  # scandir's d_type avoids a stat per file: 100k PNG files in ~0.2 s
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and entry.name != SNAKEMAKE_MARKER:
                    files.append(entry.path)
    return [Path(f) for f in sorted(files)]  # sort strings: Path comparisons are slow


def _fadvise_dontneed(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def can_drop_caches() -> bool:
    """True if this process may write ``/proc/sys/vm/drop_caches`` (root)."""
    return os.geteuid() == 0 and os.access(DROP_CACHES_PATH, os.W_OK)


def drop_caches(what: str = PAGES) -> None:
    """Sync, then drop clean caches system-wide; needs root.

    *what* is :data:`PAGES` (``1``: the page cache) or :data:`INODES` (``2``: reclaimable
    inodes and dentries, whose pages go with them). Global: it also slows every other job
    on the node, which is why ``auto`` drops pages only as a fallback.
    """
    if not can_drop_caches():
        raise ColdCacheError(
            f"cannot drop the page cache: writing {DROP_CACHES_PATH} needs root "
            f"(euid={os.geteuid()}); use cold_cache: fadvise instead"
        )
    os.sync()
    with open(DROP_CACHES_PATH, "w") as fh:
        fh.write(what)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,  # off_t of the plain (non-LFS) mmap symbol
    ]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.restype = ctypes.c_int
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


def _check_measurable(path: Path, st: os.stat_result) -> None:
    # Since Linux 5.2 mincore reports every page as resident for files the
    # caller neither owns nor could open for writing (side-channel fix), which
    # would make a cold store look warm. Fail loudly instead.
    euid = os.geteuid()
    if euid == 0 or st.st_uid == euid or os.access(path, os.W_OK):
        return
    raise PermissionError(
        f"cannot measure page-cache residency of {path}: mincore(2) only reports it "
        "for files the caller owns or may write"
    )


def _resident_pages(libc: ctypes.CDLL, fd: int, size: int, page: int) -> int:
    resident = 0
    for offset in range(0, size, _WINDOW_BYTES):
        length = min(_WINDOW_BYTES, size - offset)
        addr = libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, offset)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap failed: {os.strerror(err)}")
        try:
            vec = (ctypes.c_ubyte * ((length + page - 1) // page))()
            if libc.mincore(addr, length, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore failed: {os.strerror(err)}")
            resident += int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1))
        finally:
            libc.munmap(addr, length)
    return resident


def resident_fraction(paths: Iterable[Path]) -> float:
    """Fraction of the files' pages now in the page cache (weighted by pages).

    Measured with mincore(2) on a read-only shared mapping created through
    libc directly, so no page is touched (and hence none is read in) by the
    measurement itself. Empty files have no pages; no pages at all gives 0.0.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    total = resident = 0
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                continue
            _check_measurable(Path(p), st)
            total += (st.st_size + page - 1) // page
            resident += _resident_pages(_libc(), fd, st.st_size, page)
        finally:
            os.close(fd)
    return resident / total if total else 0.0


def make_resident(files: list[Path]) -> float:
    """Make a store warm for a warm repeat: read in whatever is not resident, then return
    the resident fraction (below :data:`WARM_LIMIT` only if it does not fit in memory)."""
    fraction = resident_fraction(files)
    if fraction < WARM_LIMIT:
        buf = bytearray(1 << 20)
        for p in files:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        fraction = resident_fraction(files)
    return fraction


def evict(path: Path, method: str = "auto", files: list[Path] | None = None) -> Eviction:
    """Evict a store (file or directory) from the caches, prove it, and say how far.

    Data first: ``fadvise`` drops the files' clean pages (no root, no effect on other
    jobs); pages that stay (dirty ones) get one ``sync`` and a second pass; ``drop_caches``
    drops the whole page cache; ``auto`` uses fadvise and falls back to dropping pages
    when more than :data:`COLD_LIMIT` stays resident. Residency is then measured with
    mincore (which opens every file) and more than :data:`COLD_LIMIT` raises
    :class:`ColdCacheError`. Last, with root (``auto``, ``drop_caches``), the inode and
    dentry caches are dropped too, so the timed read also pays for lookups and inode
    reads: scope ``full``. Nothing of the store may be opened after this call returns
    and before the timed read. Without root the scope is ``data``.
    *files* (the store's files, listed once by the caller) saves relisting 100k files.
    """
    if method not in ("auto", "fadvise", "drop_caches"):
        raise ValueError(f"unknown eviction method {method!r}; use auto, fadvise or drop_caches")
    files = files if files is not None else store_files(path)
    if method == "drop_caches":
        drop_caches(PAGES)
    else:
        _fadvise_dontneed(files)
    fraction = resident_fraction(files)
    if fraction > 0.0 and method != "drop_caches":
        os.sync()  # dirty pages cannot be dropped: flush, then one more pass
        _fadvise_dontneed(files)
        fraction = resident_fraction(files)
    used = "fadvise" if method == "auto" else method
    if method == "auto" and fraction > COLD_LIMIT and can_drop_caches():
        drop_caches(PAGES)
        used, fraction = "drop_caches", resident_fraction(files)
    if fraction > COLD_LIMIT:
        raise ColdCacheError(
            f"store {path} is {fraction:.1%} resident in the page cache after eviction "
            f"(limit {COLD_LIMIT:.0%}); set cold_cache: drop_caches and run as root, or put "
            "results/ on a file system that honours posix_fadvise (not tmpfs)"
        )
    if method != "fadvise" and can_drop_caches():
        drop_caches(INODES)  # last: the residency proof above opened every file
        return Eviction(used, fraction, CacheScope.FULL)
    return Eviction(used, fraction, CacheScope.DATA)
