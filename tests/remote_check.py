"""Shared checks of a format's object-storage reader against a real server (tests/test_remote.py
and the per-format tests use them): build a tiny tuned store, upload it file by file, read it
back through the proxy in every way the experiments do, compare byte for byte."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.experiments import access
from imgbench.stores import get_store, remote_class
from imgbench.stores.s3 import Credentials, Proxy, S3Target, SeaweedServer
from tests.conftest import random_data

N = 300


def upload_tiny(
    server: SeaweedServer, fmt: str, tmp: Path, options: dict[str, Any] | None = None
) -> tuple[str, np.ndarray, np.ndarray]:
    """A tiny tuned store of ``fmt`` uploaded under a fresh prefix; (prefix, images, labels)."""
    images, labels = random_data(N)
    store = tmp / f"{fmt}-store"
    store.mkdir()
    get_store(fmt, "tuned", options).write_many(store, images, labels)
    prefix = f"test/{fmt}/{uuid.uuid4().hex[:8]}"
    server.client().upload_tree(store, prefix)
    return prefix, images, labels


def remote(
    fmt: str,
    target: S3Target,
    rif: int,
    stage: Path | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    return remote_class(fmt)(
        target, get_store(fmt, "tuned", options), N, (32, 32, 3), rif, stage_dir=stage
    )


def _forked_epoch(args: dict[str, Any]) -> None:
    """In a fresh interpreter (spawn): no library runtime was started before the fork."""
    creds = Credentials(args["key"], args["secret"])
    target = S3Target(args["endpoint"], args["bucket"], args["prefix"], creds)
    images, labels = random_data(N)
    store = remote(args["fmt"], target, args["rif"], args["stage"], args["options"])
    store.stage()
    order = np.random.default_rng(1).permutation(N)
    parts = access.batches(order, "shuffled", 32)
    out = access.Epoch(N, images.shape[1:], labels.dtype, len(parts))
    access.run_epoch(store, target.url(), parts, 2, "process", out)
    assert np.array_equal(out.images, images[order]), "forked epoch: wrong pixels"
    assert np.array_equal(out.labels, labels[order]), "forked epoch: wrong labels"


def check_round_trip(
    server: SeaweedServer, fmt: str, tmp: Path, options: dict[str, Any] | None = None
) -> dict[str, int]:
    """Upload, then read everything back (full read, shuffled batches at 1 and 4 requests in
    flight, a two-process epoch); returns the proxy's counts."""
    prefix, images, labels = upload_tiny(server, fmt, tmp, options)
    with Proxy(server.endpoint) as proxy:
        target = S3Target(proxy.endpoint, server.bucket, prefix, server.creds)
        args = {
            **{"endpoint": proxy.endpoint, "bucket": server.bucket, "prefix": prefix},
            **{"key": server.creds.access_key, "secret": server.creds.secret_key},
            **{"fmt": fmt, "rif": 4, "stage": tmp / "stage-forked", "options": options},
        }
        p = multiprocessing.get_context("spawn").Process(target=_forked_epoch, args=(args,))
        p.start()
        p.join(120)
        if p.is_alive():  # hung: never leave it behind
            p.kill()
            p.join()
        assert p.exitcode == 0, f"{fmt}: the forked two-reader epoch failed ({p.exitcode})"
        for rif in (1, 4):
            store = remote(fmt, target, rif, tmp / f"stage{rif}", options)
            store.stage()
            got_images, got_labels = store.read_all()
            assert np.array_equal(got_images, images), f"{fmt}: full read, wrong pixels"
            assert np.array_equal(got_labels, labels), f"{fmt}: full read, wrong labels"
            idx = np.random.default_rng(rif).permutation(N)[:50]
            with store.batch_reader(target.url()) as read:
                bi, bl = read(idx)
                assert np.array_equal(bi, images[idx]), f"{fmt}: batch, wrong pixels"
                assert np.array_equal(bl, labels[idx]), f"{fmt}: batch, wrong labels"
        return proxy.stats()
