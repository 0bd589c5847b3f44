"""Provenance record: what a reviewer needs to trust and rerun the numbers.

Storage benchmarks depend on much more than the code: library builds
(HDF5, LMDB, zlib), kernel, file system and its mount options, CPU and
memory. ``collect`` gathers all of it into one JSON-able dict whose shape is
stable (unknown values are ``None``, never missing keys), so records from
different machines can be diffed and loaded into one table.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from imgbench.atomic import atomic_path
from imgbench.config import config_hash

__all__ = ["PACKAGES", "collect", "config_hash", "write"]

# distribution names as importlib.metadata knows them
PACKAGES = ("numpy", "pillow", "lmdb", "h5py", "pandas", "matplotlib", "snakemake")

_GIT_TIMEOUT_S = 60


def _safe(fn: Callable[[], Any]) -> Any:
    """Run a best-effort probe; an unknown value is None, never a crash."""
    try:
        return fn()
    except Exception:
        return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _packages() -> dict[str, str | None]:
    return {name: _safe(lambda name=name: metadata.version(name)) for name in PACKAGES}


def _hdf5_version() -> str:
    import h5py

    return h5py.version.hdf5_version


def _lmdb_version() -> str:
    import lmdb

    return ".".join(str(part) for part in lmdb.version())


def _pil_feature(name: str) -> str | None:
    from PIL import features

    return features.version(name)


def _libjpeg_version() -> str | None:
    turbo = _safe(lambda: _pil_feature("libjpeg_turbo"))
    if turbo:
        return f"libjpeg-turbo {turbo}"
    jpg = _safe(lambda: _pil_feature("jpg"))
    return f"libjpeg {jpg}" if jpg else None


def _libraries() -> dict[str, str | None]:
    # Pillow's PNG codec is built on zlib (or zlib-ng), not libpng, so
    # "libpng" is None unless some future Pillow reports it.
    return {
        "hdf5": _safe(_hdf5_version),
        "lmdb": _safe(_lmdb_version),
        "zlib": _safe(lambda: _pil_feature("zlib")),
        "zlib_ng": _safe(lambda: _pil_feature("zlib_ng")),
        "libpng": _safe(lambda: _pil_feature("libpng")),
        "libjpeg": _safe(_libjpeg_version),
    }


def _os_release_pretty_name() -> str | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read_text(path)
        if text is None:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "PRETTY_NAME":
                return value.strip().strip("\"'") or None
    return None


def _os_info() -> dict[str, str | None]:
    uname = platform.uname()
    return {
        "system": uname.system or None,
        "kernel_release": uname.release or None,
        "kernel_version": uname.version or None,
        "machine": uname.machine or None,
        "distro": _os_release_pretty_name(),
    }


def _cpu_model() -> str | None:
    text = _read_text("/proc/cpuinfo")
    if text:
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or None


def _cpu_info() -> dict[str, Any]:
    return {
        "model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": _safe(lambda: len(os.sched_getaffinity(0))),
    }


def _memory_info() -> dict[str, int | None]:
    total = None
    text = _read_text("/proc/meminfo")
    if text:
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                parts = line.split()
                total = int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
                break
    return {"total_bytes": total}


def _unescape_mount_field(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _merge_options(*option_strings: str) -> str:
    seen: dict[str, None] = {}
    for options in option_strings:
        for opt in options.split(","):
            if opt:
                seen.setdefault(opt, None)
    return ",".join(seen)


def _find_mount(path: str, mountinfo: str) -> dict[str, str] | None:
    """Mount holding ``path`` (resolved): longest mount-point prefix wins,
    and among mounts stacked on the same point the last listed (the top one)."""
    best, best_len = None, -1
    for line in mountinfo.splitlines():
        fields = line.split()
        # id parent major:minor root mount_point options [optional...] - fstype source super
        if len(fields) < 9 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        mount_point = _unescape_mount_field(fields[4])
        prefix = mount_point.rstrip("/") + "/"
        if not (path == mount_point or path.startswith(prefix)):
            continue
        if len(mount_point) >= best_len:
            best_len = len(mount_point)
            best = {
                "mount_point": mount_point,
                "fstype": fields[sep + 1],
                "source": _unescape_mount_field(fields[sep + 2]),
                "options": _merge_options(
                    fields[5], fields[sep + 3] if len(fields) > sep + 3 else ""
                ),
            }
    return best


def _filesystem_info(results_dir: Path) -> dict[str, str | None]:
    info: dict[str, str | None] = {
        "path": None,
        "mount_point": None,
        "fstype": None,
        "source": None,
        "options": None,
    }
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        resolved = str(results_dir.resolve())
    except OSError:
        return info
    info["path"] = resolved
    mountinfo = _read_text("/proc/self/mountinfo")
    mount = _find_mount(resolved, mountinfo) if mountinfo else None
    if mount:
        info.update(mount)
    return info


def _git(repo_dir: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo_dir), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _git_info(repo_dir: Path) -> dict[str, Any]:
    head = _git(repo_dir, "rev-parse", "--verify", "HEAD")
    status = _git(repo_dir, "status", "--porcelain")
    return {
        "commit": (head.strip() or None) if head is not None else None,
        "dirty": bool(status.strip()) if status is not None else None,
    }


def collect(config: Mapping, results_dir: Path, repo_dir: Path) -> dict:
    """Gather the environment a benchmark ran in; every key always present.

    ``results_dir`` is created if missing so its file system can be recorded
    before any store is written there.
    """
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable or None,
        },
        "packages": _packages(),
        "libraries": _libraries(),
        "os": _os_info(),
        "cpu": _cpu_info(),
        "memory": _memory_info(),
        "filesystem": _filesystem_info(Path(results_dir)),
        "git": _git_info(Path(repo_dir)),
        "hostname": _safe(socket.gethostname),
        "config": config,
        "config_hash": config_hash(config),
    }


def _json_default(obj: object) -> object:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def write(path: Path, data: dict) -> None:
    """Write JSON atomically, so a crashed job never leaves a half-written record."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
