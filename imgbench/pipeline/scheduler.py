"""What the workflow asks of Snakemake's scheduler: timing isolation and a quiet scheduler.

Kept apart from the rule files so the one patch of a private Snakemake internal lives in one
place, with the version it was checked against and a test (tests/test_plan.py) that fails
loudly when that internal changes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from imgbench.core.atomic import sweep_deferred
from imgbench.core.errors import BenchError

#: the Snakemake release the rate-limiter patch was checked against (requirements.txt pins it)
CHECKED_SNAKEMAKE = "9.27.1"
#: the private attribute, set in ``snakemake.scheduling.job_scheduler.JobScheduler.__init__``
RATE_LIMITER = "job_rate_limiter"


def timing_slots(cap: Any, main_process: bool = True) -> int:
    """The timing_slots cap every timed rule claims whole, so a timed job never runs beside
    any other job. A cap that is missing (a command-line --resources replaces the profile's,
    --workflow-profile none drops it) would switch isolation off silently: stop instead.
    Only the main process schedules: a job run by an executor (e.g. inside a SLURM job) is
    not scheduled there, so it is not checked."""
    value = getattr(cap, "value", cap)
    if not main_process:
        return value if isinstance(value, int) else 1
    if not isinstance(value, int) or value < 2:
        raise BenchError(
            f"timing isolation is off: the timing_slots cap is {value!r} (a command-line "
            "--resources replaces the profile's, and --workflow-profile none drops it); add "
            "timing_slots=100 to your --resources, or use the profile: --workflow-profile "
            "profiles/default"
        )
    return value


def quiet_local_scheduler(scheduler: Any, local: bool) -> bool:
    """Switch off Snakemake's job rate limiter in a local run; True if it was switched off.

    The limiter (100 jobs per 1 s by default) arms a 1-s timer on every scheduling pass, so
    each finished job adds a timer chain that wakes the scheduler once a second for the rest
    of the run: after 60 jobs of the full sweep the snakemake process took 30-42 % of a core
    beside the timed job, and 2-reader epochs got 1.33 of the 2 cores (1.9 with the same job
    alone). A long span in the profile stops the wake-ups, but its timers (non-daemon
    threads) then hold the finished run open. A local run submits nowhere, so it needs no
    limiter; a cluster keeps it (it paces submissions; the timed jobs run on other nodes).
    """
    if not local:
        return False
    if not hasattr(scheduler, RATE_LIMITER):
        raise BenchError(
            f"this Snakemake's JobScheduler has no {RATE_LIMITER} (the patch was checked "
            f"against Snakemake {CHECKED_SNAKEMAKE}): check that its scheduler no longer wakes "
            "during jobs, then update imgbench/pipeline/scheduler.py"
        )
    setattr(scheduler, RATE_LIMITER, None)
    return True


def sweep_deferred_builds(results: Path = Path("results")) -> None:
    """Delete the many-file builds store jobs left for the end of the run (onsuccess and
    onerror): deleting them sooner slows the next timed builds for minutes on a file system
    like ext4 without a journal (imgbench.core.atomic.holds_many_files)."""
    count, seconds = sweep_deferred(results)
    if count:
        print(f"deleted {count} deferred builds in {seconds:.1f} s", file=sys.stderr)
