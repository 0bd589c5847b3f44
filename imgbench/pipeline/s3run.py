"""The S3 command: start the run's own S3 server, run a command against it, stop the server.

``python -m imgbench.pipeline.s3run snakemake --cores all --workflow-profile profiles/s3``
starts SeaweedFS (:class:`imgbench.stores.s3.SeaweedServer`) on loopback with its data in
``results/s3/seaweed`` (kept between runs, so a rerun finds the uploads Snakemake kept), waits
until a test object round-trips, runs the command with ``IMGBENCH_S3_ENDPOINT`` and a key pair
made for this run (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) in its environment, and
stops the server when the command ends, is interrupted or fails: no process and no port stay
behind. Its exit status is the command's. The endpoint's port changes from run to run and is
not a rule param, so it reruns nothing. Two runs cannot share the data directory (a lock).

Tests and CI start the same server class in a fixture (tests/conftest.py ``s3_server``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

from imgbench.core.errors import BenchError
from imgbench.stores.s3 import ENV_ENDPOINT, SeaweedServer

DEFAULT_DIR = Path("results/s3/seaweed")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the server, run the command, stop the server; return the command's status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="the server's data")
    ap.add_argument("--bucket", default="imgbench")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="e.g. snakemake --cores all ...")
    args = ap.parse_args(argv)
    if not args.command:
        ap.error(
            "give the command to run, e.g. snakemake --cores all --workflow-profile profiles/s3"
        )
    args.data.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupted)  # stop the server on a scheduler's kill too
    with open(args.data / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"s3run: {args.data} is in use by another S3 run; wait for it", file=sys.stderr)
            return 1
        server = SeaweedServer(args.data, bucket=args.bucket)
        try:
            server.start()
        except BenchError as exc:
            print(f"s3run: {exc}", file=sys.stderr)
            return 1
        try:
            print(f"s3run: SeaweedFS S3 ready at {server.endpoint} (data in {args.data})",
                  file=sys.stderr)  # fmt: skip
            env = {**os.environ, ENV_ENDPOINT: server.endpoint,
                   "AWS_ACCESS_KEY_ID": server.creds.access_key,
                   "AWS_SECRET_ACCESS_KEY": server.creds.secret_key,
                   "AWS_REGION": server.creds.region}  # fmt: skip
            env.pop("AWS_SESSION_TOKEN", None)
            proc = subprocess.Popen(args.command, env=env)
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Snakemake got the same SIGINT: let it finish its exit
                # further signals must not cut this wait short: the server outlives the
                # command until it has exited
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                proc.send_signal(signal.SIGINT)
                return proc.wait()
            finally:
                print("s3run: stopping the server", file=sys.stderr)
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
