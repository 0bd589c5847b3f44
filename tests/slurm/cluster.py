"""Bring up and tear down a real single-node SLURM (plus munge) for tests.

Stdlib only. Needs root and the packages from ``tests/slurm/install.sh`` (Debian: munge slurmctld
slurmd slurm-client). Usage::

    from tests.slurm.cluster import single_node_slurm, slurm_available, completed_jobs

    reason = slurm_available()
    if reason:
        pytest.skip(reason)
    with single_node_slurm(tmp_path / "slurm") as info:
        subprocess.run([... "snakemake", "--executor", "slurm", ...], check=True)
        jobs = completed_jobs(info)

Design choices (see also /work/shared/notes/slurm-single-node.md):

* ``slurm.conf`` must be at ``/etc/slurm/slurm.conf``: the slurm-jobstep plugin strips
  ``SLURM_CONF`` before its inner ``srun``. An existing file there is moved aside and put back on
  exit, byte for byte (a rename, so a symlink stays a symlink).
* ``SlurmUser=root``: the test's workdir usually sits below a root-only (0700) directory such as
  pytest's ``/tmp/pytest-of-root``; a slurmctld running as user ``slurm`` could not reach its
  state and log files there. For a throw-away test cluster root is the simplest correct choice.
* No cgroups (``proctrack/linuxproc``, ``task/none``) and no slurmdbd: the Snakemake profile uses
  ``slurm-status-command: squeue``, which needs ``MinJobAge`` (300 s here) >= 3x the first poll.
* Daemons run in the foreground (``-D`` / ``-F``) as our children, so we know their PIDs and stop
  exactly them (SIGTERM, then SIGKILL after a grace period) - never anything by name. An already
  working munge (e.g. a system munged) is used as is and left alone.
* Job records: there is no accounting DB, so ``sacct`` cannot list finished jobs. We enable
  ``JobCompType=jobcomp/filetxt`` (``JobCompLoc=<workdir>/jobcomp.txt``): slurmctld appends one
  ``Key=Value ...`` line per finished job, with its final state and node. Verified to work on
  Debian 12's slurm-wlm 22.05.8. It is more robust than scraping "sched: Allocate JobId" lines
  out of slurmctld.log (log wording changes between versions and says nothing about the final
  state). The comment Snakemake puts on each job (``rule_<name>...``) is not in that file; while
  slurmctld still holds the job (``MinJobAge``), ``completed_jobs`` adds it from ``scontrol``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
MUNGE_SOCKET = MUNGE_RUN_DIR / "munge.socket.2"

_CLIENT_BINARIES = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
_DAEMON_BINARIES = ("slurmctld", "slurmd", "munged", "munge", "unmunge")

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ClusterInfo:
    """What a running single-node cluster looks like to a test."""

    workdir: Path
    node_name: str  # the only node, also the hostname slurmd registers as
    partition: str  # the only (default) partition
    cpus: int
    real_memory_mb: int
    conf_path: Path  # /etc/slurm/slurm.conf (what SLURM commands read)
    generated_conf: Path  # our copy of it in workdir
    slurmctld_log: Path
    slurmd_log: Path
    munged_log: Path | None  # None when an already running munged was reused
    jobcomp_path: Path  # jobcomp/filetxt output, read by completed_jobs()
    pids: dict[str, int] = field(default_factory=dict)  # daemon name -> PID we started


def _which(name: str) -> str | None:
    """Find a binary on PATH or in the sbin dirs a non-login root PATH may lack."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


def slurm_available() -> str | None:
    """Return why a single-node SLURM cannot be brought up here, or None if it can."""
    if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
        return "single-node SLURM test needs Linux"
    if os.geteuid() != 0:
        return "single-node SLURM test needs root (it starts slurmctld, slurmd and munged)"
    missing = [b for b in _CLIENT_BINARIES + _DAEMON_BINARIES if _which(b) is None]
    if missing:
        return (
            f"SLURM/munge binaries missing: {', '.join(missing)} "
            "(run tests/slurm/install.sh as root)"
        )
    if not MUNGE_KEY.exists() and _which("mungekey") is None:
        return f"{MUNGE_KEY} missing and no mungekey to create it"
    return None


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)


def _node_line() -> tuple[str, str, int, int]:
    """`slurmd -C` -> (node line without UpTime, node name, CPUs, RealMemory)."""
    out = _run(_which("slurmd") or "slurmd", "-C").stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise RuntimeError(f"`slurmd -C` printed no NodeName line:\n{out}")
    fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
    return line.strip(), fields["NodeName"], int(fields["CPUs"]), int(fields["RealMemory"])


def _write_conf(path: Path, workdir: Path, node_line: str, node_name: str, partition: str) -> None:
    hostname = socket.gethostname().split(".")[0]
    conf = f"""\
# Generated by tests/slurm/cluster.py for a throw-away single-node test cluster.
ClusterName=imgbenchtest
SlurmctldHost={hostname}(127.0.0.1)
# root: the workdir may sit below a root-only directory (pytest tmp dirs).
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MailProg=/bin/true

# No cgroups on this machine kind (no systemd); plain process tracking is enough for tests.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none

# Consumable cores and memory, so several 1-CPU jobs share the node (--exclusive still works).
SchedulerType=sched/backfill
# Start a submitted batch job at once (default: up to 3 s later; measured ~2-3 s -> ~1 s).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory

# State and logs in the test's workdir.
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No slurmdbd: finished jobs are recorded by jobcomp/filetxt (see completed_jobs()), and
# Snakemake polls with squeue, which sees finished jobs for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={workdir}/jobcomp.txt
MinJobAge=300

# Fast turnaround for tests: no waits for killed jobs / node return.
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmdTimeout=120
SlurmctldTimeout=120

{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={partition} Nodes={node_name} Default=YES MaxTime=INFINITE State=UP
"""
    path.write_text(conf)


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return f"  ({path}: no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  {ln}" for ln in text) or f"  ({path}: empty)"


def _munge_works() -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    try:
        enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=5, check=False)
        if enc.returncode != 0:
            return False
        dec = subprocess.run(
            ["unmunge"], input=enc.stdout, capture_output=True, timeout=5, check=False
        )
        return dec.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _prepare_munge() -> None:
    MUNGE_RUN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN_DIR, "munge", "munge")
    MUNGE_RUN_DIR.chmod(0o755)
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_KEY.parent, "munge", "munge")
        MUNGE_KEY.parent.chmod(0o700)
        subprocess.run(
            [_which("mungekey") or "mungekey", "--create", "--keyfile", str(MUNGE_KEY)],
            check=True,
            capture_output=True,
        )
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)


def _stop(name: str, proc: subprocess.Popen[bytes]) -> None:
    """Stop one daemon we started, by its PID, and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is *pid* (e.g. slurmstepd processes slurmd has not reaped yet)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name (field 2) may hold spaces; the ppid follows its closing ")"
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(stat.parent.name))
    return kids


def _cancel_leftover_jobs() -> None:
    """Cancel jobs still in our cluster so no job step outlives slurmd."""
    out = _run("squeue", "-h", "-o", "%i").stdout.split()
    if not out:
        return
    _run("scancel", *out)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = _run("squeue", "-h", "-o", "%T").stdout.split()
        if not any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for s in states):
            return
        time.sleep(0.5)


@contextlib.contextmanager
def single_node_slurm(workdir: Path, partition: str = "debug") -> Iterator[ClusterInfo]:
    """Run munged + slurmctld + slurmd on this machine for the duration of the block.

    ``workdir`` holds slurm.conf, state, spool, logs and jobcomp.txt (created if missing).
    Raises RuntimeError (with the daemons' log tails) if the node is not idle in time.
    """
    reason = slurm_available()
    if reason:
        raise RuntimeError(reason)
    workdir = Path(workdir).resolve()
    if any(ch.isspace() for ch in str(workdir)):
        raise ValueError(f"slurm.conf cannot hold paths with whitespace: {workdir}")
    for sub in ("state", "spool"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)

    node_line, node_name, cpus, mem = _node_line()
    generated = workdir / "slurm.conf"
    _write_conf(generated, workdir, node_line, node_name, partition)

    procs: dict[str, subprocess.Popen[bytes]] = {}
    log_files = []
    backup: Path | None = None
    conf_placed = False
    munged_log: Path | None = None

    def start(name: str, cmd: list[str], log: Path, **kw: object) -> None:
        fh = open(log, "ab")  # noqa: SIM115 - closed in finally
        log_files.append(fh)
        procs[name] = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the test does not hit the daemons first
            **kw,  # type: ignore[arg-type]
        )

    try:
        # 1. /etc/slurm/slurm.conf: move any existing one aside, put ours in place.
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.exists() or SLURM_CONF.is_symlink():
            backup = SLURM_CONF.with_name(f"slurm.conf.imgbench-backup.{os.getpid()}")
            SLURM_CONF.rename(backup)
        shutil.copyfile(generated, SLURM_CONF)
        SLURM_CONF.chmod(0o644)
        conf_placed = True

        # 2. munge (reuse a working one; else start ours as user munge, in the foreground).
        if not _munge_works():
            _prepare_munge()
            munged_log = workdir / "munged.log"
            start(
                "munged",
                [_which("munged") or "munged", "-F", "--log-file=/dev/null"],
                munged_log,
                user="munge",
                group="munge",
                extra_groups=[],
            )
            deadline = time.monotonic() + 15
            while not _munge_works():
                if procs["munged"].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"munged did not come up:\n{_tail(munged_log)}")
                time.sleep(0.1)

        # 3. slurmctld, then slurmd, both in the foreground (-D) so we own their PIDs.
        ctld_log, slurmd_log = workdir / "slurmctld.log", workdir / "slurmd.log"
        start(
            "slurmctld",
            [_which("slurmctld") or "slurmctld", "-D", "-i"],
            workdir / "slurmctld.stderr",
        )
        start("slurmd", [_which("slurmd") or "slurmd", "-D"], workdir / "slurmd.stderr")

        info = ClusterInfo(
            workdir=workdir,
            node_name=node_name,
            partition=partition,
            cpus=cpus,
            real_memory_mb=mem,
            conf_path=SLURM_CONF,
            generated_conf=generated,
            slurmctld_log=ctld_log,
            slurmd_log=slurmd_log,
            munged_log=munged_log,
            jobcomp_path=workdir / "jobcomp.txt",
            pids={name: p.pid for name, p in procs.items()},
        )

        # 4. Wait for the node to be idle.
        deadline = time.monotonic() + _START_TIMEOUT_S
        state = ""
        while True:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if not dead:
                res = _run("sinfo", "-h", "-N", "-n", node_name, "-o", "%t", timeout=10)
                state = res.stdout.strip() or res.stderr.strip()
                if res.returncode == 0 and state == "idle":
                    break
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"SLURM node {node_name} not idle "
                    f"({'exited: ' + ', '.join(dead) if dead else 'timeout'}; "
                    f"last sinfo: {state!r})\n"
                    f"slurmctld.log:\n{_tail(ctld_log)}\n"
                    f"slurmd.log:\n{_tail(slurmd_log)}\n"
                    # stderr: config errors printed before the log files are opened
                    f"slurmctld stderr:\n{_tail(workdir / 'slurmctld.stderr', 10)}\n"
                    f"slurmd stderr:\n{_tail(workdir / 'slurmd.stderr', 10)}\n"
                    f"munged log:\n{_tail(munged_log, 10)}"
                )
            time.sleep(0.2)

        yield info
    finally:
        try:
            if "slurmctld" in procs and procs["slurmctld"].poll() is None:
                with contextlib.suppress(Exception):
                    _cancel_leftover_jobs()
            if "slurmd" in procs and procs["slurmd"].poll() is None:
                # let slurmd reap its finished job steps first (only waits, signals nothing)
                deadline = time.monotonic() + 10
                while _children(procs["slurmd"].pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
            for name in ("slurmd", "slurmctld", "munged"):
                if name in procs:
                    _stop(name, procs[name])
        finally:
            for fh in log_files:
                fh.close()
            if conf_placed:
                SLURM_CONF.unlink(missing_ok=True)
            if backup is not None:
                backup.rename(SLURM_CONF)


_KV = re.compile(r"(?:^|\s)([A-Za-z]+)=")


def _parse_kv_line(line: str) -> dict[str, str]:
    """Split ``Key=Value Key2=Value with spaces ...`` into a dict (values may hold spaces)."""
    matches = list(_KV.finditer(line))
    rec: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        rec[m.group(1)] = line[m.end() : end].strip()
    return rec


def _scontrol_comment(job_id: str) -> str | None:
    res = _run("scontrol", "show", "job", "-o", job_id, timeout=10)
    if res.returncode != 0:
        return None
    m = re.search(r"\bComment=(\S*)", res.stdout)
    return m.group(1) if m and m.group(1) != "(null)" else None


def completed_jobs(info: ClusterInfo, with_comment: bool = True) -> list[dict[str, str]]:
    """Finished SLURM jobs of this cluster, oldest first, from jobcomp/filetxt.

    Each dict holds the file's fields as strings, e.g. ``JobId``, ``Name`` (also as ``JobName``),
    ``JobState`` (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...), ``NodeList``, ``ProcCnt``,
    ``WorkDir``, ``StartTime``, ``EndTime``, ``ExitCode``. With ``with_comment`` (default), and
    while slurmctld still remembers the job (``MinJobAge`` = 300 s), ``Comment`` is added from
    ``scontrol show job``: Snakemake sets it to ``rule_<rule>[_wildcards_<...>]``, and ``Rule``
    holds just ``<rule>`` parsed from it. Jobs still pending or running are not listed.
    """
    if not info.jobcomp_path.exists():
        return []
    jobs = []
    for line in info.jobcomp_path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        rec = _parse_kv_line(line)
        if "Name" in rec:
            rec.setdefault("JobName", rec["Name"])
        if with_comment and "JobId" in rec and "Comment" not in rec:
            comment = _scontrol_comment(rec["JobId"])
            if comment is not None:
                rec["Comment"] = comment
        m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", rec.get("Comment", ""))
        if m:
            rec["Rule"] = m.group(1)
        jobs.append(rec)
    return jobs
