"""Fetch the CIFAR-10 archive from a URL, a ``file://`` URL or a local path, checksum-verified."""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from imgbench.atomic import atomic_path
from imgbench.errors import DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()  # noqa: S324 - the published checksum is md5; not used for security
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _local_source(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return Path(url)
    return None


def _copy_with_progress(src, dst, total: int | None, label: str) -> None:  # noqa: ANN001
    done, last = 0, 0.0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last >= 2.0:
            pct = f" ({100 * done / total:.0f} %)" if total else ""
            log.info("%s: %.1f MB%s", label, done / 1e6, pct)
            last = now
    log.info("%s: %.1f MB done", label, done / 1e6)


def fetch(url: str, dest: Path, md5: str | None, retries: int = 3, backoff: float = 2.0) -> None:
    """Download *url* to *dest* atomically, verifying *md5* (None skips the check).

    Network errors are retried with exponential backoff; a checksum mismatch is not (the
    same bytes would come back). Nothing is ever left under *dest* unless it verified.
    """
    dest = Path(dest)
    local = _local_source(url)
    with atomic_path(dest) as tmp:
        if local is not None:
            if not local.is_file():
                raise DownloadError(
                    f"{url}: local archive not found; set cifar_url to an existing file or URL"
                )
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                _copy_with_progress(src, dst, local.stat().st_size, f"copy {local}")
        else:
            for attempt in range(1, retries + 1):
                try:
                    with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as dst:  # noqa: S310
                        total = int(resp.headers.get("Content-Length") or 0) or None
                        _copy_with_progress(resp, dst, total, f"download {url}")
                    break
                except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                    if attempt == retries:
                        raise DownloadError(
                            f"{url}: download failed after {retries} attempts ({exc}); check the "
                            "network or set cifar_url to a local copy of cifar-10-python.tar.gz"
                        ) from None
                    wait = backoff**attempt
                    log.warning(
                        "%s: attempt %d failed (%s); retrying in %.0f s", url, attempt, exc, wait
                    )
                    time.sleep(wait)
        if md5 is not None:
            got = md5sum(tmp)
            if got != md5.lower():
                raise DownloadError(
                    f"{url}: md5 {got} does not match cifar_md5 {md5}; the download is corrupt "
                    "or a different file: fix cifar_url, or set cifar_md5 to the right value "
                    "(null skips the check)"
                )
            log.info("md5 ok: %s", got)
        else:
            log.warning("cifar_md5 is null: checksum not verified")
