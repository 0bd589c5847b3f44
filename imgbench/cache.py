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

import numpy as np

__all__ = [
    "ColdCacheError",
    "METHODS",
    "can_drop_caches",
    "drop_caches",
    "ensure_cold",
    "evict",
    "evict_fadvise",
    "resident_fraction",
    "store_files",
]

METHODS = ("auto", "fadvise", "drop_caches")
DROP_CACHES_PATH = Path("/proc/sys/vm/drop_caches")
SNAKEMAKE_MARKER = ".snakemake_timestamp"
AUTO_FALLBACK_LIMIT = 0.05

# mincore is called on windows of this many bytes, so the residency vector
# (one byte per page) stays small even for stores of hundreds of GiB.
_WINDOW_BYTES = 1 << 30

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value


class ColdCacheError(RuntimeError):
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


def evict_fadvise(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop these files' clean pages (no root needed).

    DONTNEED only drops clean, unmapped pages. If anything is still resident
    after one pass (typically dirty pages from a writer that did not fsync),
    ``os.sync()`` is called once and the pass is repeated once.
    """
    paths = list(paths)
    _fadvise_dontneed(paths)
    if resident_fraction(paths) > 0.0:
        os.sync()
        _fadvise_dontneed(paths)


def can_drop_caches() -> bool:
    """True if this process may write ``/proc/sys/vm/drop_caches`` (root)."""
    return os.geteuid() == 0 and os.access(DROP_CACHES_PATH, os.W_OK)


def drop_caches() -> None:
    """Sync, then drop the whole clean page cache (``echo 1``); needs root.

    This is global: it also slows down every other job on the node, which is
    why ``evict(method="auto")`` only uses it as a fallback.
    """
    if not can_drop_caches():
        raise RuntimeError(
            f"cannot drop the page cache: writing {DROP_CACHES_PATH} needs root "
            f"(euid={os.geteuid()}); use cold_cache: fadvise instead"
        )
    os.sync()
    with open(DROP_CACHES_PATH, "w") as fh:
        fh.write("1")


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


def evict(path: Path, method: str = "auto") -> str:
    """Evict a store (file or directory) from the page cache.

    ``auto`` prefers fadvise, which is targeted and has no side effects on
    other jobs, and falls back to ``drop_caches`` only if fadvise leaves more
    than 5 % resident and dropping is permitted. Returns the method used.
    """
    if method not in METHODS:
        raise ValueError(f"unknown eviction method {method!r}; expected one of {METHODS}")
    files = store_files(path)
    if method == "drop_caches":
        drop_caches()
        return "drop_caches"
    evict_fadvise(files)
    if method == "auto" and resident_fraction(files) > AUTO_FALLBACK_LIMIT and can_drop_caches():
        drop_caches()
        return "drop_caches"
    return "fadvise"


def evict_cold(
    path: Path, method: str = "auto", limit: float = 0.05, files: list[Path] | None = None
) -> tuple[str, float]:
    """Evict, then prove it: return (method used, resident fraction) or raise ColdCacheError.

    Same policy as :func:`evict` followed by :func:`ensure_cold`, but lists the files and
    measures residency once per step instead of repeating them (100k-file stores).
    """
    if method not in METHODS:
        raise ValueError(f"unknown eviction method {method!r}; expected one of {METHODS}")
    files = files or store_files(path)
    if method == "drop_caches":
        drop_caches()
    else:
        _fadvise_dontneed(files)
    fraction = resident_fraction(files)
    if fraction > 0.0 and method != "drop_caches":
        os.sync()  # dirty pages cannot be dropped: flush, then one more pass
        _fadvise_dontneed(files)
        fraction = resident_fraction(files)
    if method == "auto" and fraction > AUTO_FALLBACK_LIMIT and can_drop_caches():
        drop_caches()
        method, fraction = "drop_caches", resident_fraction(files)
    if fraction > limit:
        raise ColdCacheError(
            f"store {path} is {fraction:.1%} resident in the page cache "
            f"(limit {limit:.1%}) after eviction; use cold_cache: drop_caches as root, "
            "or run on a file system that honours posix_fadvise"
        )
    return ("fadvise" if method == "auto" else method), fraction


def ensure_cold(path: Path, limit: float = 0.05) -> float:
    """Return the store's resident fraction; raise if it is above ``limit``.

    Called right before a cold read so warm numbers are never reported as
    cold ones.
    """
    fraction = resident_fraction(store_files(path))
    if fraction > limit:
        raise ColdCacheError(
            f"store {path} is {fraction:.1%} resident in the page cache "
            f"(limit {limit:.1%}) after eviction; use cold_cache: drop_caches as root, "
            "or run on a file system that honours posix_fadvise"
        )
    return fraction
