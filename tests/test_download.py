"""Fetching: local paths, file:// URLs, HTTP with retries on loopback, checksum, atomicity."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pooch
import pytest

from imgbench.core.errors import DownloadError
from imgbench.data.download import fetch, md5sum

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
    with pytest.raises(DownloadError, match="local archive not found; set cifar_url"):
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
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """pooch waits 1 s, 2 s, ... between attempts: record the waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(pooch.core, "time", SimpleNamespace(sleep=waits.append))
    return waits


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/cifar.tar.gz"


def test_http_retries_then_succeeds(tmp_path: Path, server, sleeps, caplog) -> None:
    _Flaky.failures_left, _Flaky.requests = 2, 0
    stale = tmp_path / ".out.tmp-999999.abc123"  # pooch scratch dir of a killed run
    (stale / "sub").mkdir(parents=True)
    plog_handlers = pooch.get_logger().handlers[:]
    with caplog.at_level(logging.INFO, logger="imgbench"):
        fetch(_url(server), tmp_path / "out", md5sum_of_payload())
    assert _Flaky.requests == 3
    assert sleeps == [1, 2]
    assert (tmp_path / "out").read_bytes() == PAYLOAD
    assert list(tmp_path.iterdir()) == [tmp_path / "out"], "a scratch dir was left behind"
    # pooch's own log lines land in ours (the rule's log file), and its logger is restored
    assert any("pooch: Downloading file" in r.getMessage() for r in caplog.records)
    assert any("md5 ok" in r.getMessage() for r in caplog.records)
    assert pooch.get_logger().handlers == plog_handlers


def test_http_gives_up_after_retries(tmp_path: Path, server, sleeps) -> None:
    _Flaky.failures_left, _Flaky.requests = 10, 0
    url = _url(server)
    with pytest.raises(DownloadError, match="failed after 3 attempts") as info:
        fetch(url, tmp_path / "out", None, retries=3)
    msg = str(info.value)
    assert "\n" not in msg and url in msg and "503" in msg
    assert "check the network or set cifar_url to a local copy" in msg
    assert _Flaky.requests == 3
    assert list(tmp_path.iterdir()) == []


def test_http_md5_mismatch_leaves_nothing(tmp_path: Path, server, sleeps) -> None:
    _Flaky.failures_left, _Flaky.requests = 0, 0
    url = _url(server)
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "out", "0" * 32, retries=2)
    msg = str(info.value)
    assert "\n" not in msg and url in msg and md5sum_of_payload() in msg
    assert "fix cifar_url, or set cifar_md5 to the right value (null skips the check)" in msg
    assert _Flaky.requests == 1  # a mismatch is not retried: the same bytes would come back
    assert list(tmp_path.iterdir()) == []


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unsupported URL scheme 'gopher'.*set cifar_url"):
        fetch("gopher://example.invalid/cifar.tar.gz", tmp_path / "out", None)
    assert list(tmp_path.iterdir()) == []


def md5sum_of_payload() -> str:
    import hashlib

    return hashlib.md5(PAYLOAD).hexdigest()  # noqa: S324
