"""Fetching: local paths, file:// URLs, HTTP with retries on loopback, checksum, atomicity."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from imgbench import download
from imgbench.download import fetch, md5sum
from imgbench.errors import DownloadError

PAYLOAD = b"not really a tarball but bytes are bytes\n" * 1000


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "src.tar.gz"
    p.write_bytes(PAYLOAD)
    return p


def test_local_path_and_file_url(tmp_path: Path, src: Path) -> None:
    md5 = md5sum(src)
    fetch(str(src), tmp_path / "out1", md5)
    fetch(src.as_uri(), tmp_path / "out2", md5)
    assert (tmp_path / "out1").read_bytes() == PAYLOAD == (tmp_path / "out2").read_bytes()


def test_md5_none_skips_check(tmp_path: Path, src: Path) -> None:
    fetch(str(src), tmp_path / "out", None)
    assert (tmp_path / "out").read_bytes() == PAYLOAD


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="local archive not found"):
        fetch(str(tmp_path / "nope.tar.gz"), tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


class _Flaky(http.server.BaseHTTPRequestHandler):
    failures_left = 0
    requests = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_error(503, "try later")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_retries_then_succeeds(tmp_path: Path, server, monkeypatch) -> None:
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    _Flaky.failures_left, _Flaky.requests = 2, 0
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar.tar.gz"
    fetch(url, tmp_path / "out", md5sum_of_payload())
    assert _Flaky.requests == 3
    assert (tmp_path / "out").read_bytes() == PAYLOAD


def test_http_gives_up_after_retries(tmp_path: Path, server, monkeypatch) -> None:
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    _Flaky.failures_left, _Flaky.requests = 10, 0
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar.tar.gz"
    with pytest.raises(DownloadError, match="failed after 3 attempts"):
        fetch(url, tmp_path / "out", None, retries=3)
    assert _Flaky.requests == 3
    assert list(tmp_path.iterdir()) == []


def md5sum_of_payload() -> str:
    import hashlib

    return hashlib.md5(PAYLOAD).hexdigest()  # noqa: S324
