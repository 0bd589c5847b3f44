"""Device limits of the file system under a directory: sequential and 4 KiB random reads.

Cold-cache reads are bounded by the device, not by the storage format: a cold shuffled
epoch that needs one 4 KiB read per image cannot beat the device's random-read IOPS, and a
cold sequential scan cannot beat its sequential bandwidth. ``probe`` measures both (1 MiB
sequential reads; 4 KiB-aligned random reads at queue depth 1 from one thread, as a simple
loader issues them) so cold numbers can be read against them.

Pure Python, no fio: a file of random bytes (not zeros, some devices compress) is written
and fsynced under a temporary name, read with ``O_DIRECT`` into page-aligned buffers so the
page cache is bypassed, and always deleted. If the file system refuses ``O_DIRECT``
(``EINVAL``, e.g. tmpfs before Linux 6.6), it falls back to normal reads after
``posix_fadvise(DONTNEED)`` and reports ``"odirect": False``; those numbers may then include
page-cache hits. On a memory-backed file system (tmpfs) the numbers are memory speed.

``python -m imgbench.measure.device DIR`` prints the result as JSON. MB is 10**6 bytes.
"""

from __future__ import annotations

import argparse
import errno
import json
import mmap
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["probe"]

SEQ_BLOCK = 1 << 20
RAND_BLOCK = 4096
_SEED = 0


def _drop_cache(fd: int) -> None:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _write_random(fd: int, nbytes: int, rng: np.random.Generator) -> None:
    with os.fdopen(fd, "wb", closefd=False) as fh:
        for _ in range(nbytes // SEQ_BLOCK):
            fh.write(rng.bytes(SEQ_BLOCK))
    os.fsync(fd)
    _drop_cache(fd)


def _open_for_reading(path: str) -> tuple[int, bool]:
    """An O_DIRECT descriptor if the file system accepts it, else a cache-evicted plain one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    else:
        try:
            with mmap.mmap(-1, RAND_BLOCK) as buf:
                os.preadv(fd, [buf], 0)  # some file systems accept the flag, then refuse reads
            return fd, True
        except OSError as exc:
            os.close(fd)
            if exc.errno != errno.EINVAL:
                raise
    fd = os.open(path, os.O_RDONLY)
    _drop_cache(fd)
    return fd, False


def _sequential(fd: int, size: int, seconds: float, odirect: bool) -> tuple[int, float]:
    """1 MiB reads for up to ``seconds``; a pass covers the file once, then restarts."""
    done, offset = 0, 0
    with mmap.mmap(-1, SEQ_BLOCK) as buf:
        start = time.perf_counter()
        while True:
            n = os.preadv(fd, [buf], offset)
            if n <= 0:
                raise OSError(errno.EIO, f"short read at offset {offset}")
            done += n
            offset += n
            if time.perf_counter() - start >= seconds:
                break
            if offset >= size:
                offset = 0
                if not odirect:
                    _drop_cache(fd)
        return done, time.perf_counter() - start


def _random(fd: int, size: int, seconds: float, odirect: bool) -> tuple[int, float]:
    """4 KiB reads at seeded random 4 KiB-aligned offsets, queue depth 1, for ``seconds``."""
    rng = np.random.default_rng(_SEED)
    if not odirect:
        _drop_cache(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
    blocks, reads = size // RAND_BLOCK, 0
    with mmap.mmap(-1, RAND_BLOCK) as buf:
        start = time.perf_counter()
        while True:
            for offset in (rng.integers(0, blocks, 1024) * RAND_BLOCK).tolist():
                if os.preadv(fd, [buf], offset) != RAND_BLOCK:
                    raise OSError(errno.EIO, f"short read at offset {offset}")
                reads += 1
                if time.perf_counter() - start >= seconds:
                    return reads, time.perf_counter() - start


def probe(directory: Path, file_mib: int = 256, seconds: float = 3.0) -> dict:
    """Sequential read MB/s and 4 KiB random-read IOPS of the device under ``directory``."""
    if file_mib < 1 or seconds <= 0:
        raise ValueError("file_mib must be >= 1 and seconds > 0")
    size = file_mib * SEQ_BLOCK
    fd, path = tempfile.mkstemp(prefix=".imgbench-device-", dir=directory)
    try:
        try:
            _write_random(fd, size, np.random.default_rng(_SEED))
        finally:
            os.close(fd)
        fd, odirect = _open_for_reading(path)
        try:
            seq_bytes, seq_s = _sequential(fd, size, seconds, odirect)
            rand_reads, rand_s = _random(fd, size, seconds, odirect)
        finally:
            os.close(fd)
    finally:
        os.unlink(path)
    return {
        "method": "python-odirect",
        "seq_read_mb_s": seq_bytes / seq_s / 1e6,
        "rand_read_4k_iops": rand_reads / rand_s,
        "file_bytes": size,
        "seq_seconds": seq_s,
        "rand_seconds": rand_s,
        "odirect": odirect,
        "path": str(Path(directory).resolve()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--file-mib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(probe(args.directory, args.file_mib, args.seconds), indent=2))


if __name__ == "__main__":
    main()


def record(device: Path, directory: Path, file_mib: int = 256, seconds: float = 3.0) -> None:
    """The device rule: probe the file system holding *directory*, write the JSON."""
    from imgbench.core.atomic import write_json

    Path(directory).mkdir(parents=True, exist_ok=True)
    write_json(device, probe(Path(directory), file_mib, seconds))
