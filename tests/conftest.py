"""Shared fixtures: tiny random data sets and a generated archive in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgbench.core.job import Job

REPO = Path(__file__).resolve().parents[1]


def run_threads(work, n: int) -> None:
    """Run ``work(r)`` for r in range(n) in n threads and wait for all (shared-reader tests)."""
    import threading

    threads = [threading.Thread(target=work, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def random_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    return images, labels


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 1,200-image source data set saved as .npy, like the double step writes it."""
    images, labels = random_data(1200)
    ip, lp = tmp_path / "images.npy", tmp_path / "labels.npy"
    np.save(ip, images)
    np.save(lp, labels)
    return ip, lp, images, labels


def make_job(tmp_path: Path, src: tuple, fmt: str, mode: str, n: int, **kw) -> Job:
    """A Job for the experiments on a test source (images.npy, labels.npy)."""
    defaults = {
        "store": tmp_path / "store",
        "result": tmp_path / f"{kw.get('cache', 'none')}.json",
        "repeats": 1,
        "warmup": 0,
        "config_hash": "h",
    }
    return Job(fmt=fmt, mode=mode, n=n, images=src[0], labels=src[1], **{**defaults, **kw})


def summary_row(fmt: str, op: str, n: int, median: float, mode: str = "article", **kw) -> dict:
    """One summary.csv row for table tests; reads default to warm, writes to no cache."""
    cache = kw.pop("cache", None) or ("warm" if op.startswith("read") else "none")
    return {
        "data": "cifar32",
        "format": fmt,
        "mode": mode,
        "operation": op,
        "cache": cache,
        "n_images": n,
        "median_s": median,
        **kw,
    }


def weed_runs() -> str | None:
    """Why SeaweedFS's weed binary cannot run here, or None."""
    import subprocess

    from imgbench.core.errors import StoreError
    from imgbench.stores.s3 import weed_binary

    try:
        subprocess.run([weed_binary(), "version"], capture_output=True, check=True, timeout=60)
    except (StoreError, OSError, subprocess.SubprocessError) as e:
        return f"SeaweedFS cannot run here: {e}"
    return None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real SeaweedFS S3 server for the session's object-storage tests (stopped after)."""
    from imgbench.stores.s3 import SeaweedServer

    reason = weed_runs()
    if reason:
        pytest.skip(reason)
    with SeaweedServer(tmp_path_factory.mktemp("seaweed-session")) as srv:
        yield srv
