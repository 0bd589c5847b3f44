"""Provenance record: what a reviewer needs to trust and rerun the numbers.

Storage benchmarks depend on much more than the code: library builds
(HDF5, LMDB, zlib), kernel, file system and its mount options, CPU and
memory. ``collect`` gathers all of it into one JSON-able dict whose shape is
stable (unknown values are ``None``, never missing keys), so records from
different machines can be diffed and loaded into one table.

Mounts, memory and CPU counts come from psutil rather than hand-parsed
``/proc`` files: it is well kept, portable, and already handles the corner
cases (octal escapes such as ``\\040`` in mount points, kB units, affinity
masks) that a hand-written parser has to get right on its own.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from imgbench import stores
from imgbench.core.atomic import atomic_path
from imgbench.core.config import config_hash
from imgbench.measure import memcap

__all__ = ["collect", "config_hash", "core_packages", "packages", "write"]

#: the workflow engine that ran the jobs (not a dependency of the package itself)
ENGINE = "snakemake"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

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


def core_packages() -> list[str]:
    """imgbench's own dependencies as pyproject.toml declares them: from the checkout when
    there is one (an editable install's metadata keeps the list it was installed with), else
    from the installed package's metadata."""
    if _PYPROJECT.is_file():
        project = tomllib.loads(_PYPROJECT.read_text())["project"]
        requires = project["dependencies"] if project.get("name") == "imgbench" else []
    else:
        requires = [r for r in metadata.requires("imgbench") or [] if "extra ==" not in r]
    return [re.match(r"[A-Za-z0-9._-]+", r.strip()).group() for r in requires]


def packages() -> list[str]:
    """Every distribution whose version the record holds: the core dependencies, every
    registered format's packages (:func:`imgbench.stores.packages`) and the engine."""
    return list(dict.fromkeys([*core_packages(), *stores.packages(), ENGINE]))


def _packages() -> dict[str, str | None]:
    return {name: _safe(lambda name=name: metadata.version(name)) for name in packages()}


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
    # psutil does not report the model name
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or None


def _affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return len(psutil.Process().cpu_affinity())


def _cpu_info() -> dict[str, Any]:
    return {
        "model": _safe(_cpu_model),
        "logical_cores": _safe(psutil.cpu_count),
        "affinity_cores": _safe(_affinity_cores),
    }


def _memory_info() -> dict[str, int | None]:
    return {"total_bytes": _safe(lambda: psutil.virtual_memory().total)}


def _find_mount(path: str) -> dict[str, str] | None:
    """Mount holding ``path`` (resolved): longest mount-point prefix wins, and
    among mounts stacked on the same point the last listed (the visible one)."""
    best, best_len = None, -1
    for part in psutil.disk_partitions(all=True):
        mount_point = part.mountpoint
        if path != mount_point and not path.startswith(mount_point.rstrip("/") + "/"):
            continue
        if len(mount_point) >= best_len:
            best, best_len = part, len(mount_point)
    if best is None:
        return None
    return {
        "mount_point": best.mountpoint,
        "fstype": best.fstype,
        "source": best.device,
        "options": best.opts,
    }


def _filesystem_info(results_dir: Path) -> dict[str, str | None]:
    info: dict[str, str | None] = dict.fromkeys(
        ("path", "mount_point", "fstype", "source", "options")
    )
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        resolved = str(results_dir.resolve())
    except OSError:
        return info
    info["path"] = resolved
    mount = _safe(lambda: _find_mount(resolved))
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


def collect(
    config: Mapping, results_dir: Path, repo_dir: Path, device: Mapping | None = None
) -> dict:
    """Gather the environment a benchmark ran in; every key always present.

    ``results_dir`` is created if missing so its file system can be recorded
    before any store is written there. ``device`` is an optional measurement
    of that file system's limits (``imgbench.measure.device.probe``), stored as given
    under ``"device"`` (``None`` when not measured).
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
        "device": dict(device) if device is not None else None,
        "memory_cgroup": _cgroup_info(),
        "git": _git_info(Path(repo_dir)),
        "hostname": _safe(socket.gethostname),
        # an endpoint URL may carry user:password@: never recorded (the hash is of the
        # config as given, so a publication still matches its run)
        "config": {
            k: re.sub(r"//[^/@]*@", "//", v) if k == "s3_endpoint" and v else v
            for k, v in config.items()
        },  # fmt: skip
        "config_hash": config_hash(config),
    }


def _cgroup_info() -> dict[str, Any]:
    """The memory cgroup capped epochs use here: version and group, or why there is none."""
    usable, why = memcap.usable()
    if not usable:
        return {"version": None, "group": None, "usable": False, "reason": why}
    h = memcap.detect()
    return {"version": h.version, "group": str(h.start), "usable": True, "reason": None}


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


def record(
    provenance: Path,
    config: Mapping,
    results_dir: Path,
    repo_dir: Path,
    device: Path,
    scan: Path | None = None,
    s3_probes: list[Path] = (),
) -> None:
    """The provenance rule: the environment, plus the device limits the probe measured and,
    for your own images, the folder's checksum, counts, policy cases and skipped files; with
    S3 experiments, the object store measured (server, durability, one small GET's round
    trip per network setting, the proxy against going direct), never its address or keys."""
    probe = json.loads(Path(device).read_text())
    out = collect(config, results_dir, repo_dir, device=probe)
    out["data"] = {"source": "cifar-10", "cifar_md5": config.get("cifar_md5")}
    if scan:
        rec = json.loads(Path(scan).read_text())
        out["data"] = {
            "source": "images_dir",
            **{k: v for k, v in rec.items() if k != "good"},
            "skipped_count": len(rec["skipped"]),
        }
    if s3_probes:
        probes = [json.loads(Path(p).read_text())["extra"] for p in s3_probes]
        out["s3"] = {
            "server": probes[0]["server"],
            "durability": probes[0]["durability"],
            "networks": [
                {k: x[k] for k in ("latency_ms", "bandwidth_mbps", "one_get_ms",
                                   "small_get_per_s", "large_get_mb_s")}
                for x in probes
            ],
            "proxy_overhead": probes[0].get("proxy_overhead"),
        }  # fmt: skip
    write(provenance, out)
