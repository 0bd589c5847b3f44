"""Write-then-rename, so a crash never leaves a half-written file or store under its final name."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def remove(path: Path) -> None:
    """Remove a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def tmp_name(final: Path) -> Path:
    """A sibling temporary name: same file system, so the final rename is atomic."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


_LIBC = ctypes.CDLL(None, use_errno=True)


def fsync_tree(path: Path) -> None:
    """Flush everything under *path* to disk (dirty pages cannot be evicted for cold reads).

    One ``syncfs(2)`` of the file system holding *path* instead of an fsync per file: for
    100,000 PNG files that is under a second instead of ~13 s of untimed overhead.
    """
    fd = os.open(path if path.is_dir() else path.parent, os.O_RDONLY)
    try:
        if getattr(_LIBC, "syncfs", None) is None or _LIBC.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to *final*, on any failure delete it.

    Stale temporaries from a killed run (any pid) are swept first so they never pile up.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        remove(stale)
    tmp = tmp_name(final)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            remove(final)  # a directory cannot be replaced in one step; a file can (below)
        os.replace(tmp, final)
    except BaseException:
        remove(tmp)
        raise
