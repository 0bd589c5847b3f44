"""One PNG file per image (Pillow), labels beside them.

article: serial ``Image.fromarray(img).save`` / ``np.array(Image.open(p))``, labels in a
space-delimited CSV, as in the article.
tuned: the same files, encoded in memory and written with one ``os.write``, decoded by the
PNG plugin straight into one output buffer, both spread over a fork process pool sized by
the job's threads; labels as a raw ``.npy``.

Encoded payload (tuned, issue 13): one file per image again, the original file's bytes
unchanged, named ``<i>.<ext>`` with *ext* sniffed from its magic bytes (``jpg``, ``png``,
``webp``, else ``bin``); ``files.npy`` records each file's extension and length, so a read
opens every file by name in index order (no directory listing, no stat beyond the open
file's) and reads it straight into one buffer; both directions use the fork pool as the
pixel build does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from imgbench.core.errors import StoreError
from imgbench.stores.base import (
    PARALLEL_MIN_IMAGES,
    Store,
    article_labels,
    blob_ext,
    fork_map,
    in_runs,
    ranges,
    shared_array,
)

log = logging.getLogger(__name__)
PROGRESS_EVERY = 10_000


def _progress(path: Path, i: int, n: int) -> None:
    if i % PROGRESS_EVERY == 0 and i:  # ~10 log lines per 100k: movement, no cost
        log.info("%s: %d of %d PNG files written", path.name, i, n)


def _file(path: Path, i: int) -> Path:
    return path / f"{i}.png"


def _damaged(file: Path | str, exc: Exception) -> StoreError:
    """A PNG that cannot be decoded, as one line naming the file (Pillow's own message,
    e.g. "Truncated File Read", names none)."""
    return StoreError(
        f"{file}: cannot decode this PNG ({type(exc).__name__}: {exc}); the store is damaged "
        "or incomplete: delete the store directory and rerun the build"
    )


def _article_read(file: Path) -> np.ndarray:
    """The article's read of one file, ``np.array(Image.open(p))``."""
    try:
        return np.array(Image.open(file))
    except (OSError, ValueError, SyntaxError) as exc:
        raise _damaged(file, exc) from None


class ArticlePng(Store):
    format = "png"
    mode = "article"
    random_advice_why_not = io_depth_why_not = "article mode runs the article's read code unchanged"

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        for i in range(len(images)):
            Image.fromarray(images[i]).save(_file(path, i))
            _progress(path, i, len(images))
        with open(path / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f, delimiter=" ", quotechar="|", quoting=csv.QUOTE_MINIMAL)
            for label in labels:
                writer.writerow([int(label)])

    @staticmethod
    def _labels(path: Path) -> np.ndarray:
        with open(path / "labels.csv", newline="") as f:
            reader = csv.reader(f, delimiter=" ", quotechar="|")
            return article_labels([int(row[0]) for row in reader])

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        labels = self._labels(path)
        images = [_article_read(_file(path, i)) for i in range(len(labels))]
        return np.array(images), labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        labels = self._labels(path)  # the CSV once per reader, then one file per image

        def read(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
            images = [_article_read(_file(path, i)) for i in indices]
            return np.array(images), labels[list(indices)]

        yield read


# --- tuned: process pool over index ranges -------------------------------------------------
# Fork workers inherit these module globals, so nothing large is pickled through pipes.
_SHARED: dict = {}


def _decode_into(path: str, i: int, out: np.ndarray, row: int) -> None:
    # The PNG plugin directly (no format sniffing) and raw bytes into the output buffer:
    # ~115 us per CIFAR image here against ~175-240 us for np.array(Image.open(p)).
    try:
        with PngImagePlugin.PngImageFile(f"{path}/{i}.png") as im:
            im.load()
            out[row] = np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(out.shape[1:])
    except (OSError, ValueError, SyntaxError) as exc:
        raise _damaged(f"{path}/{i}.png", exc) from None


def _decode_range(bounds: tuple[int, int]) -> None:
    path, out = str(_SHARED["path"]), _SHARED["out"]
    for i in range(*bounds):
        _decode_into(path, i, out, i)


def _encode_range(bounds: tuple[int, int]) -> None:
    images, path, level = _SHARED["images"], _SHARED["path"], _SHARED["level"]
    # Encode in memory, then one open/write/close: skips Pillow's file handling.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    for i in range(*bounds):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="PNG", compress_level=level)
        fd = os.open(_file(path, i), flags, 0o644)
        try:
            view = buf.getbuffer()
            while view:  # a short write (disk nearly full) must not truncate silently
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        _progress(path, i, len(images))


# --- payload: encoded (issue 13) ------------------------------------------------------------
FILES = "files.npy"  # (N, 2) int64: extension code (index into EXTS), length in bytes
EXTS = ("jpg", "png", "webp", "bin")


def _blob_file(path: Path | str, i: int, code: int) -> str:
    return f"{path}/{i}.{EXTS[code]}"


def _gone(file: str, what: str) -> StoreError:
    return StoreError(
        f"{file}: {what}; the store is damaged or incomplete: delete the store directory and "
        "rerun the build"
    )


def _write_blob_range(bounds: tuple[int, int]) -> None:
    blobs, path, codes = _SHARED["blobs"], _SHARED["path"], _SHARED["codes"]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    for i in range(*bounds):
        fd = os.open(_blob_file(path, i, codes[i]), flags, 0o644)
        try:
            view = memoryview(blobs[i]).cast("B")
            while view:  # a short write (disk nearly full) must not truncate silently
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        if i % PROGRESS_EVERY == 0 and i:
            log.info("%s: %d of %d image files written", path.name, i, len(blobs))


def _read_blob_range(bounds: tuple[int, int]) -> None:
    # One open, fstat and read per file, into its place in the shared output buffer.
    path, codes, out = _SHARED["path"], _SHARED["codes"], _SHARED["out"]
    offsets = _SHARED["offsets"]  # n + 1 byte offsets into out
    for i in range(*bounds):
        file, start, stop = _blob_file(path, i, codes[i]), offsets[i], offsets[i + 1]
        try:
            fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _gone(file, "missing") from None
        try:
            if os.fstat(fd).st_size != stop - start:
                raise _gone(file, f"{os.fstat(fd).st_size} bytes, {stop - start} were written")
            view = out[start:stop]
            while view:
                got = os.readv(fd, [view])
                if not got:
                    raise _gone(file, "shorter than written")
                view = view[got:]
        finally:
            os.close(fd)


class TunedPng(Store):
    format = "png"
    mode = "tuned"
    random_advice_why_not = (
        "each image is its own small file, read whole by one read: readahead cannot reach past "
        "the file's end, so there is no readahead to turn off"
    )
    io_depth_how = (
        "a batch's files in io_depth runs, each opened, read and decoded on its own thread "
        "(the reads release the GIL)"
    )

    def _parallel(self, n: int) -> bool:
        return self.workers > 1 and n >= PARALLEL_MIN_IMAGES

    def _map(self, fn: Callable[[tuple[int, int]], None], n: int, **shared: object) -> None:
        """Run *fn* over [0, n) in ranges: in a fork pool from PARALLEL_MIN_IMAGES up."""
        _SHARED.update(shared)
        try:
            if self._parallel(n):
                fork_map(fn, ranges(n, self.workers * 4), self.workers)
            else:
                fn((0, n))
        finally:
            _SHARED.clear()

    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        level = int(self.options["png_compress_level"])
        self._map(_encode_range, len(images), images=images, path=path, level=level)
        np.save(path / "labels.npy", np.asarray(labels))

    def write_encoded(self, path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> None:
        # The fork pool from PARALLEL_MIN_IMAGES up, as write_many (file creation is most of
        # the cost here, and it runs in parallel on the file system); serially below it.
        labels = np.asarray(labels)
        if len(labels) != len(blobs):
            raise ValueError(f"{len(blobs)} blobs but {len(labels)} labels")
        codes = [EXTS.index(blob_ext(b)) for b in blobs]
        files = np.empty((len(blobs), 2), dtype=np.int64)
        files[:, 0] = codes
        files[:, 1] = [len(b) for b in blobs]
        self._map(_write_blob_range, len(blobs), blobs=blobs, path=path, codes=codes)
        np.save(path / FILES, files)
        np.save(path / "labels.npy", labels)

    def read_encoded(self, path: Path) -> tuple[list[memoryview], np.ndarray]:
        try:
            files, labels = np.load(path / FILES), np.load(path / "labels.npy")
        except (OSError, ValueError, EOFError) as exc:
            raise _gone(f"{path}/{FILES}", f"unreadable ({exc})") from None
        n = len(labels)
        if files.shape != (n, 2) or (
            n and (files[:, 0].min() < 0 or files[:, 0].max() >= len(EXTS) or files[:, 1].min() < 0)
        ):
            raise _gone(f"{path}/{FILES}", f"does not describe the {n} labelled images")
        offsets = np.concatenate([[0], np.cumsum(files[:, 1])]).tolist()
        # Shared when forked readers fill it (no copy back); memory of its own either way.
        out = (shared_array if self._parallel(n) else np.empty)((offsets[-1],), np.uint8)
        view = memoryview(out)
        codes = files[:, 0].tolist()
        self._map(_read_blob_range, n, path=path, codes=codes, offsets=offsets, out=view)
        return [view[offsets[i] : offsets[i + 1]] for i in range(n)], labels

    def _shape(self, path: Path, n: int) -> tuple[int, ...]:
        with Image.open(_file(path, 0)) as im:
            return (n, im.height, im.width, len(im.getbands()))

    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        labels = np.load(path / "labels.npy")
        shape = self._shape(path, len(labels))
        out = shared_array(shape, np.uint8)  # written by the forked workers, no copy back
        self._map(_decode_range, len(labels), path=path, out=out)
        return out, labels

    @contextlib.contextmanager
    def batch_reader(self, path: Path) -> Iterator[Callable]:
        labels = np.load(path / "labels.npy")
        image_shape = self._shape(path, 1)[1:]

        with self.read_pool() as pool:
            depth = self.io_depth

            def read(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
                idx = [int(i) for i in indices]
                out = np.empty((len(idx), *image_shape), dtype=np.uint8)

                def run(rows: Sequence[int]) -> None:
                    for row in rows:
                        _decode_into(str(path), idx[row], out, row)

                in_runs(run, range(len(idx)), pool, depth)
                return out, labels[idx]

            yield read
