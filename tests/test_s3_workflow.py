"""The S3 experiments end to end on tiny generated data (issue 24): a real SeaweedFS server,
the workflow's S3 rules through the proxy at 10 ms, a per-image, a sharded, a columnar and a
staged format; every row verified and beside its limit; the keys written nowhere; nothing
left running; the S3 command starts and stops its own server."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import psutil
import pytest

from imgbench.data.synthetic import make_archive
from imgbench.stores.s3 import SeaweedServer, port_open
from tests.conftest import REPO, weed_runs
from tests.test_workflow import TINY

pytestmark = pytest.mark.workflow

FORMATS = ["png", "tar", "parquet", "lmdb"]
S3_CONFIG = [
    f"s3_formats=[{','.join(FORMATS)}]",
    "s3_images=100",
    "s3_latency_ms=[10]",
    "s3_bandwidth_mbps=[1000]",
    "s3_requests_in_flight=[1,4]",
    "s3_warmup_s=0.2",
    "s3_seconds=1.5",
    "s3_windows=2",
    "s3_probe_seconds=0.3",
    "tar_shard_images=25",
]


def _proxies(port: int) -> list[psutil.Process]:
    """Proxies in front of the server on *port* (another run's are not this test's)."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "imgbench.stores.s3proxy" in " ".join(p.info["cmdline"] or [])
        and f"127.0.0.1:{port}" in " ".join(p.info["cmdline"] or [])
    ]


@pytest.fixture(scope="module")
def s3_run(tmp_path_factory):
    """One tiny S3 run against a server named by s3_endpoint, keys in the environment."""
    reason = weed_runs()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("s3run")
    make_archive(work / "cifar.tar.gz", per_batch=40)
    with SeaweedServer(work / "server") as server:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": server.creds.access_key,
               "AWS_SECRET_ACCESS_KEY": server.creds.secret_key}  # fmt: skip
        args = ["s3", "--cores", "2", "--configfile", str(TINY), "--config",
                f"cifar_url={work / 'cifar.tar.gz'}", f"s3_endpoint={server.endpoint}",
                *S3_CONFIG, "-d", str(work)]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # Rerun only what changed: the same config has nothing to do (the S3 command's
        # endpoint, whose port changes per run, comes from the environment, not a param).
        again = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", *args],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        yield work, server.creds, again.stdout + again.stderr, server.ports["s3"]


def test_every_s3_row_is_verified_and_beside_its_limit(s3_run):
    work, *_ = s3_run
    df = pd.read_csv(work / "results" / "s3" / "s3.csv")
    assert set(df["format"]) == set(FORMATS)
    assert df["verified"].all()
    assert set(df["storage"]) == {"s3"} and set(df["latency_ms"]) == {10}
    ops = df.groupby("format")["operation"].apply(set)
    for fmt in FORMATS:
        assert ops[fmt] == {"write_many", "read_many", "read_epoch", "train"}, fmt
    reads = df[df["operation"] != "write_many"]
    assert (reads["images_per_s"] > 0).all()
    ranged = reads[reads["access"].isin(["object", "range"]) & (reads["operation"] != "train")]
    assert len(ranged) and (ranged["limit_fraction"] > 0).all()
    assert (ranged["requests_per_image"] > 0).all()
    epochs = df[(df["operation"] == "read_epoch") & (df["pattern"] == "shuffled")]
    assert sorted(set(epochs["requests_in_flight"])) == [1, 4]
    assert sorted(set(epochs["readers"])) == [1, 2]
    stream = df[df["access"] == "stream"]
    assert set(stream["format"]) == {"tar"} and (stream["limit_fraction"] > 0).all()
    # the client's CPU: user + kernel seconds (the total is exact; Linux splits it by 10 ms
    # tick samples) and the cores they kept busy, never more than the job had. Whole passes
    # always have it; a time box has it unless a reader finished no batch before its window
    # (this tiny store's epochs end within a fraction of a second)
    cpu = reads["cpu_user_s"] + reads["cpu_sys_s"]
    passes = reads[reads["operation"] != "read_epoch"].index
    assert (cpu[passes] > 0).all() and cpu.notna().sum() > len(passes), reads.to_string()
    busy = reads["cpu_cores"].dropna()
    assert ((busy > 0) & (busy <= reads.loc[busy.index, "cores"] * 1.05)).all(), reads.to_string()


def test_staging_counts_its_download(s3_run):
    work, *_ = s3_run
    df = pd.read_csv(work / "results" / "s3" / "s3.csv")
    staged = df[df["access"] == "staged"]
    assert set(staged["format"]) == {"lmdb"}
    assert (staged["stage_s"] > 0).all()
    up = df[(df["format"] == "lmdb") & (df["operation"] == "write_many")]["store_bytes"].iloc[0]
    assert up > 0 and (staged["stage_bytes"] == up).all()  # every byte of the store, once
    epoch = staged[staged["operation"] == "read_epoch"]
    assert (epoch["images_per_s_with_stage"] < epoch["images_per_s"]).all()


def test_probe_and_provenance_record_the_network_not_the_keys(s3_run):
    work, creds, *_ = s3_run
    limits = pd.read_csv(work / "results" / "s3" / "limits.csv")
    assert {"proxy", "direct"} <= set(limits["path"])
    prov = (work / "results" / "provenance.json").read_text()
    assert '"one_get_ms"' in prov and "durability" in prov
    # the secret key is written nowhere: results, logs, Snakemake's own records
    leaked = [
        p
        for p in work.rglob("*")
        if p.is_file() and "server" not in p.parts and creds.secret_key.encode() in p.read_bytes()
    ]
    assert not leaked, leaked


def test_nothing_left_running_and_nothing_to_rerun(s3_run):
    _, _, again, port = s3_run
    assert "Nothing to be done" in again, again[-2000:]
    assert not _proxies(port), "an s3 proxy outlived its job"


def test_s3_command_starts_and_stops_its_server(tmp_path):
    reason = weed_runs()
    if reason:
        pytest.skip(reason)
    probe = "import os; print(os.environ['IMGBENCH_S3_ENDPOINT']); raise SystemExit(3)"
    proc = subprocess.run(
        [sys.executable, "-m", "imgbench.pipeline.s3run", "--data", str(tmp_path / "s"),
         sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # the command's status passes through
    port = int(proc.stdout.strip().rsplit(":", 1)[1])
    assert not port_open(port), "the S3 server still listens after the command"
    weeds = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path / "s") in " ".join(p.info["cmdline"] or [])
    ]
    assert not weeds, weeds
    assert not (tmp_path / "s" / "s3.json").exists(), "the run's key file outlived it"


def test_s3_jobs_without_a_server_fail_in_one_line(tmp_path):
    make_archive(tmp_path / "cifar.tar.gz", per_batch=10)
    env = {k: v for k, v in os.environ.items() if k != "IMGBENCH_S3_ENDPOINT"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
         "results/timings/s3_probe/10ms_1000mbps.json", "--cores", "1", "--configfile",
         str(TINY), "--config", f"cifar_url={tmp_path / 'cifar.tar.gz'}", *S3_CONFIG,
         "-d", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "imgbench.pipeline.s3run" in proc.stdout + proc.stderr
    assert not (tmp_path / "results" / "timings" / "s3_probe" / "10ms_1000mbps.json").exists()
