"""Fetch the CIFAR-10 archive from a URL, a ``file://`` URL or a local path, checksum-verified.

http(s) goes through pooch (retries, temp-file-then-move). What stays ours:

* local paths and ``file://`` URLs: pooch has no file downloader, so they are copied here;
* atomicity: pooch's cache is a directory, so it downloads into a throwaway one next to
  *dest* (named like an :func:`~imgbench.core.atomic.atomic_path` temporary, so a killed run's
  leftover is swept by the next run) and the verified file is renamed to *dest*;
* progress: pooch's progress bar is tqdm on stderr, so a tqdm-like object logs it instead.

* the md5 check, for both paths: pooch would retry a checksum mismatch like a network
  error (a wrong ``cifar_md5`` would cost *retries* full downloads before the error).

pooch's waits between attempts are fixed (1 s, 2 s, ...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pooch
import requests

from imgbench.core.atomic import atomic_path
from imgbench.core.errors import DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Hex md5 of a file (the published CIFAR-10 checksum is md5; not used for security)."""
    return pooch.file_hash(str(path), alg="md5")


def _local_source(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return Path(url)
    return None


class _Progress:
    """tqdm-like sink for pooch's downloader and our copy: logs MB every 2 s, not a bar."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label, self.total, self.last = label, total, 0.0

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total, self.done = value, 0  # pooch sets it at the start of every attempt

    def update(self, n: int) -> None:
        self.done += n
        if (now := time.monotonic()) - self.last >= 2.0:
            pct = f" ({100 * min(self.done, self.total) / self.total:.0f} %)" if self.total else ""
            log.info("%s: %.1f MB%s", self.label, self.done / 1e6, pct)
            self.last = now

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _copy_with_progress(src: BinaryIO, dst: BinaryIO, total: int | None, label: str) -> None:
    progress = _Progress(label, total)
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        progress.update(len(chunk))


class _ToOurLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "pooch: %s", record.getMessage())


@contextlib.contextmanager
def _pooch_logs_to_ours() -> Iterator[None]:
    """pooch logs to stderr on its own unregistered logger; the rule's log file is ours."""
    plog = pooch.get_logger()
    saved = plog.handlers[:]
    plog.handlers[:] = [_ToOurLog()]
    try:
        yield
    finally:
        plog.handlers[:] = saved


def _download(url: str, tmp: Path, retries: int) -> None:
    """pooch download of *url* into a scratch directory, then moved to *tmp*."""
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=f"{tmp.name}.") as cache:
        fname = tmp.name
        store = pooch.create(
            path=cache,
            base_url="",
            registry={fname: None},
            urls={fname: url},
            retry_if_failed=max(retries, 1) - 1,
        )
        downloader = pooch.HTTPDownloader(
            progressbar=_Progress(f"download {url}"), chunk_size=CHUNK, timeout=60
        )
        try:
            with _pooch_logs_to_ours():
                got = store.fetch(fname, downloader=downloader)
        except requests.RequestException as exc:
            raise DownloadError(
                f"{url}: download failed after {max(retries, 1)} attempts "
                f"({' '.join(str(exc).split())}); check the network or set cifar_url to a "
                "local copy of cifar-10-python.tar.gz"
            ) from None
        os.replace(got, tmp)


def _mismatch(url: str, got: str, md5: str) -> DownloadError:
    return DownloadError(
        f"{url}: md5 {got} does not match cifar_md5 {md5}; the download is corrupt "
        "or a different file: fix cifar_url, or set cifar_md5 to the right value "
        "(null skips the check)"
    )


def fetch(url: str, dest: Path, md5: str | None, retries: int = 3) -> None:
    """Download or copy *url* to *dest*, verifying *md5* (None skips the check).

    *retries* is the total number of http(s) attempts. Nothing is ever left under *dest*
    unless it is complete and verified, so a rerun never trusts a partial archive.
    """
    dest = Path(dest)
    local = _local_source(url)
    if local is not None and not local.is_file():
        raise DownloadError(
            f"{url}: local archive not found; set cifar_url to an existing file or URL"
        )
    scheme = urllib.parse.urlparse(url).scheme
    if local is None and scheme not in ("http", "https"):
        raise DownloadError(
            f"{url}: unsupported URL scheme {scheme!r}; set cifar_url to an http(s) URL, "
            "a file:// URL or a local path"
        )
    with atomic_path(dest) as tmp:
        if local is not None:
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                _copy_with_progress(src, dst, local.stat().st_size, f"copy {local}")
        else:
            _download(url, tmp, retries)
        if md5 is not None and (got := md5sum(tmp)) != md5.lower():
            raise _mismatch(url, got, md5)
        log.info("%s: %.1f MB done", url, tmp.stat().st_size / 1e6)
        if md5 is not None:
            log.info("md5 ok: %s", md5.lower())
        else:
            log.warning("cifar_md5 is null: checksum not verified")


def download(url: str, md5: str | None, archive: Path) -> None:
    """The download rule: fetch the CIFAR archive to *archive*."""
    fetch(url, Path(archive), md5)
