"""Disk use of a store: allocated KiB as ``du -sk`` reports, apparent bytes, file count."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from imgbench.measure.cache import SNAKEMAKE_MARKER, store_files


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
    """Measure one store, not counting Snakemake's marker files.

    Allocated KiB as ``du -sk`` reports them (blocks, directories included); apparent
    bytes as the sum of the store's file sizes (``du -b`` would add each directory's own
    size: 258 KB for a 10,000-file folder, 15 % of the per-image figure at 10 images).
    """
    path = Path(path)
    files = store_files(path)
    return {
        "kib_allocated": _du(path, "-k"),
        "apparent_bytes": sum(f.stat().st_size for f in files),
        "files": len(files),
    }


def record(store: Path, result: Path, fmt: str, mode: str, n: str, data: str = "cifar32") -> None:
    """The du rule: disk use of one store as a JSON result."""
    from imgbench.core.atomic import write_json

    start = time.time()
    use = disk_use(Path(store))
    if fmt == "lmdb":  # LMDB's own page accounting beside du: overflow pages show big values
        use["lmdb_stat"] = lmdb_pages(Path(store))
    write_json(
        result,
        {
            "format": fmt,
            "mode": mode,
            "n_images": int(n),
            "data": data,
            **use,
            "start": start,
            "end": time.time(),
        },
    )


def lmdb_pages(store: Path) -> dict[str, int]:
    """``env.stat()`` of an LMDB store (page size, branch, leaf and overflow pages, entries):
    a value larger than about half a page goes to overflow pages of its own, whole pages each,
    which is what the article blames for LMDB's disk use at 256 x 256 x 3."""
    import lmdb

    env = lmdb.open(str(store), readonly=True, lock=False)
    try:
        return {k: int(v) for k, v in env.stat().items()}
    finally:
        env.close()
