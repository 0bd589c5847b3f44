"""Device limits of the file system under a directory: sequential and 4 KiB random reads.

Cold-cache reads are bounded by the device, not by the storage format: a cold shuffled
epoch that needs one 4 KiB read per image cannot beat the device's random-read IOPS, and a
cold sequential scan cannot beat its sequential bandwidth. ``probe`` measures 1 MiB
sequential reads for ``seconds``, then 4 KiB-aligned random reads for ``seconds / 2`` each at
queue depth 1 (one thread, as a simple loader issues them) and at queue depth 32 (32 threads,
each a blocking ``pread``, which releases the GIL; the ceiling of readers with several reads
in flight), so the probe reads for ``2 * seconds`` in all, as before the QD32 phase.

Fields: ``seq_read_mb_s``; ``rand_read_4k_iops`` (queue depth 1, the original name) and the
same value as ``random_4k_iops_qd1``; ``random_4k_iops_qd32``; their ``*_seconds``;
``block_device``, ``read_ahead_kb`` and ``file_system`` under the directory (device None, with
``block_device_reason``, on a file system without one, e.g. tmpfs or overlayfs).

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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imgbench.measure import blockdev

__all__ = ["probe"]

SEQ_BLOCK = 1 << 20
RAND_BLOCK = 4096
QUEUE_DEPTH = 32
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


def _random(fd: int, size: int, seconds: float, odirect: bool, depth: int = 1) -> tuple[int, float]:
    """4 KiB reads at seeded random 4 KiB-aligned offsets for ``seconds``, ``depth`` threads
    each with one read in flight (queue depth ``depth``)."""
    if not odirect:
        _drop_cache(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
    blocks = size // RAND_BLOCK
    stop = threading.Event()

    def worker(seed: int, deadline: float) -> int:
        rng, reads = np.random.default_rng(seed), 0
        with mmap.mmap(-1, RAND_BLOCK) as buf:
            try:
                while not stop.is_set():
                    for offset in (rng.integers(0, blocks, 256) * RAND_BLOCK).tolist():
                        if os.preadv(fd, [buf], offset) != RAND_BLOCK:
                            raise OSError(errno.EIO, f"short read at offset {offset}")
                        reads += 1
                        if time.perf_counter() >= deadline:
                            return reads
            except BaseException:
                stop.set()  # the other threads stop too; the error surfaces below
                raise
        return reads

    start = time.perf_counter()
    if depth == 1:
        reads = worker(_SEED, start + seconds)
    else:
        with ThreadPoolExecutor(depth) as pool:
            futures = [pool.submit(worker, _SEED + i, start + seconds) for i in range(depth)]
            reads = sum(f.result() for f in futures)
    return reads, time.perf_counter() - start


def probe(directory: Path, file_mib: int = 256, seconds: float = 3.0) -> dict:
    """Sequential read MB/s and 4 KiB random-read IOPS at queue depths 1 and 32 of the device
    under ``directory``, its block device and readahead; reads for ``2 * seconds`` in all."""
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
            rand_reads, rand_s = _random(fd, size, seconds / 2, odirect)
            qd32_reads, qd32_s = _random(fd, size, seconds / 2, odirect, QUEUE_DEPTH)
        finally:
            os.close(fd)
    finally:
        os.unlink(path)
    dev = blockdev.describe(directory)
    return {
        "method": "python-odirect",
        "seq_read_mb_s": seq_bytes / seq_s / 1e6,
        "rand_read_4k_iops": rand_reads / rand_s,
        "random_4k_iops_qd1": rand_reads / rand_s,
        "random_4k_iops_qd32": qd32_reads / qd32_s,
        "file_bytes": size,
        "seq_seconds": seq_s,
        "rand_seconds": rand_s,
        "rand_qd32_seconds": qd32_s,
        "odirect": odirect,
        "path": str(Path(directory).resolve()),
        "block_device": dev["block_device"],
        "read_ahead_kb": dev["read_ahead_kb"],
        "file_system": dev["file_system"],
        "block_device_reason": dev["reason"],
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
