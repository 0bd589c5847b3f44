"""Read the CIFAR-10 python archive safely and repeat it to the requested size.

The archive is untrusted input: members are read into memory (never extracted by name),
only regular files under ``cifar-10-batches-py/`` are considered, sizes are bounded, and
the pickles go through :mod:`imgbench.core.safepickle`.
"""

from __future__ import annotations

import gzip
import logging
import tarfile
import zlib
from pathlib import Path

import numpy as np

from imgbench.core.atomic import atomic_path
from imgbench.core.errors import DataError, StoreError
from imgbench.core.safepickle import UnsafePickleError, loads

log = logging.getLogger(__name__)

PREFIX = "cifar-10-batches-py/"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
IMAGES_PER_BATCH = 10_000
SHAPE = (32, 32, 3)
#: A real batch pickle is ~31 MB; anything far above is not a CIFAR batch.
MAX_MEMBER_BYTES = 64 * 1024 * 1024

_FIX = "delete the file and rerun, or point cifar_url at a genuine cifar-10-python.tar.gz"


def _fail(archive: Path, problem: str, fix: str = _FIX) -> DataError:
    return DataError(f"{archive}: {problem}; {fix}")


def _sniff(archive: Path) -> None:
    """Give a useful message for the common non-archive downloads (error pages, empty files)."""
    with open(archive, "rb") as f:
        head = f.read(512)
    if not head:
        raise _fail(archive, "file is empty")
    if head.lstrip()[:1] == b"<":
        raise _fail(archive, "is an HTML/XML page, not a gzip archive (a proxy or error page?)")
    if head[:2] != b"\x1f\x8b":
        raise _fail(archive, "is not a gzip file")


def _decode_batch(archive: Path, name: str, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    what = f"{archive}:{name}"
    try:
        obj = loads(payload, what)
    except UnsafePickleError:
        raise
    except Exception as exc:  # garbage bytes: unpickling can fail with almost any error
        raise _fail(
            archive, f"member {name} is not a readable pickle ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise _fail(archive, f"member {name} is not a CIFAR batch dict with b'data' and b'labels'")
    data, labels = obj[b"data"], obj[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = getattr(data, "dtype", type(data).__name__)
        raise _fail(archive, f"member {name} data has dtype {got}, expected uint8")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise _fail(archive, f"member {name} data has shape {data.shape}, expected (N, 3072)")
    if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
        raise _fail(archive, f"member {name} labels are not a list of integers")
    if len(labels) != data.shape[0]:
        raise _fail(archive, f"member {name} has {data.shape[0]} images but {len(labels)} labels")
    lab = np.asarray(labels, dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise _fail(archive, f"member {name} has labels outside 0..9")
    # planes R, G, B of 32x32 each -> (N, 32, 32, 3)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), lab.astype(np.uint8)


def read_cifar_archive(archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (N,32,32,3) uint8, labels (N,) uint8) from the five training batches.

    Batches are concatenated in sorted member order (1..5), not in glob order, so every
    machine gets the same image order.
    """
    archive = Path(archive)
    _sniff(archive)
    payloads: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tf:
            for member in tf:
                if not member.name.startswith(PREFIX):
                    log.warning("%s: ignoring member outside %s: %s", archive, PREFIX, member.name)
                    continue
                base = member.name[len(PREFIX) :]
                if base not in BATCHES:
                    continue
                if not member.isreg():
                    raise _fail(archive, f"member {member.name} is a link or device, not a file")
                if member.size > MAX_MEMBER_BYTES:
                    raise _fail(
                        archive,
                        f"member {member.name} is {member.size} bytes, over the "
                        f"{MAX_MEMBER_BYTES}-byte limit for a CIFAR batch",
                    )
                f = tf.extractfile(member)
                assert f is not None  # regular file
                payloads[base] = f.read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise _fail(archive, f"is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    missing = [b for b in BATCHES if b not in payloads]
    if missing:
        raise _fail(archive, f"missing batch members {', '.join(PREFIX + m for m in missing)}")
    parts = [_decode_batch(archive, name, payloads.pop(name)) for name in BATCHES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    log.info("%s: %d images, %d labels", archive, len(images), len(labels))
    return images, labels


def save_arrays(images: np.ndarray, labels: np.ndarray, images_out: Path, labels_out: Path) -> None:
    """Write both arrays as .npy atomically (tmp name, then rename)."""
    for arr, out in ((images, images_out), (labels, labels_out)):
        with atomic_path(Path(out)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)


def repeat_to(images_in: Path, labels_in: Path, n_images: int, images: Path, labels: Path) -> None:
    """Repeat the source arrays until they hold *n* images (the article doubles 50k to 100k).

    Streams from a memory map into a memory-mapped output, so peak memory stays near one
    chunk instead of several full copies.
    """
    n, images_out, labels_out = int(n_images), Path(images), Path(labels)
    src = np.load(images_in, mmap_mode="r")
    lab = np.load(labels_in)
    if len(src) == 0:
        raise DataError(f"{images_in}: no images to repeat; rerun the unpickle step")
    if len(src) != len(lab):
        raise DataError(f"{images_in}: {len(src)} images but {len(lab)} labels; rerun unpickle")
    idx = np.arange(n) % len(src)
    with atomic_path(Path(images_out)) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *src.shape[1:]))
        step = 10_000
        for start in range(0, n, step):
            out[start : start + step] = src[idx[start : start + step]]
        out.flush()
        del out
    with atomic_path(Path(labels_out)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, lab[idx])


def load_source(images: Path, labels: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map the repeated data set and return its first *n* images and labels."""
    imgs = np.load(images, mmap_mode="r")
    labs = np.load(labels, mmap_mode="r")
    if n > len(imgs) or len(imgs) != len(labs):
        raise StoreError(
            f"{images}: holds {len(imgs)} images and {len(labs)} labels, need {n}; "
            "rerun the double step (is the cutoff above n_images?)"
        )
    return imgs[:n], labs[:n]


def unpickle(archive: Path, images: Path, labels: Path) -> None:
    """Safely read the five training batches into two .npy files (the unpickle rule)."""
    imgs, labs = read_cifar_archive(Path(archive))
    save_arrays(imgs, labs, Path(images), Path(labels))
