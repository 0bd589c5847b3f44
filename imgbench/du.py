"""Disk use of a store: allocated KiB as ``du -sk`` reports, apparent bytes, file count."""

from __future__ import annotations

import subprocess
from pathlib import Path

from imgbench.cache import SNAKEMAKE_MARKER, store_files


def parse_du(output: str) -> int:
    """The size field of ``du -s`` output (``"1234\\tpath"``); the first line wins."""
    line = output.strip().splitlines()[0] if output.strip() else ""
    field = line.split(maxsplit=1)[0] if line else ""
    if not field.isdigit():
        raise ValueError(f"unexpected du output: {output!r}")
    return int(field)


def _du(path: Path, *flags: str) -> int:
    out = subprocess.run(
        ["du", "-s", *flags, f"--exclude={SNAKEMAKE_MARKER}", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_du(out)


def disk_use(path: Path) -> dict[str, int]:
    """Measure one store, not counting Snakemake's marker files."""
    path = Path(path)
    return {
        "kib_allocated": _du(path, "-k"),
        "apparent_bytes": _du(path, "-b"),
        "files": len(store_files(path)),
    }
