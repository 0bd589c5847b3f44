"""Parquet, Feather and Lance from object storage, beyond the generic round trip: a missing
or truncated object fails in one line naming it; a shuffled image costs ranged GETs of its
row group (Parquet) or record batch (Feather), counted by the proxy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.stores.s3 import Proxy, S3Target
from tests.remote_check import N, remote, upload_tiny

FILES = [("parquet", "store.parquet"), ("feather", "store.arrow")]


def _target(server, prefix: str) -> S3Target:
    return S3Target(server.endpoint, server.bucket, prefix, server.creds)


def _read_one(fmt: str, target: S3Target, options=None) -> None:
    with remote(fmt, target, 1, options=options).batch_reader() as read:
        read([3])


@pytest.mark.parametrize(
    ("fmt", "file"), [("parquet", "store.parquet"), ("feather", "store.arrow")]
)
def test_missing_object_is_named(s3_server, tmp_path: Path, fmt: str, file: str) -> None:
    prefix, _, _ = upload_tiny(s3_server, fmt, tmp_path)
    s3_server.client().delete(f"{prefix}/{file}")
    target = _target(s3_server, prefix)
    with pytest.raises(StoreError, match="upload the store again") as err:
        _read_one(fmt, target)
    assert str(err.value).startswith(target.url(file) + ":")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("fmt", "file"), [("parquet", "store.parquet"), ("feather", "store.arrow")]
)
@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_object_is_named(
    s3_server, tmp_path: Path, fmt: str, file: str, keep: float
) -> None:
    prefix, _, _ = upload_tiny(s3_server, fmt, tmp_path)
    client, key = s3_server.client(), f"{prefix}/{file}"
    data = client.get(key)
    client.put(key, data[: int(len(data) * keep)])
    target = _target(s3_server, prefix)
    with pytest.raises(StoreError, match="upload the store again") as err:
        remote(fmt, target, 2).read_all()
    assert str(err.value).startswith(target.url(file) + ":")


def _lance_data_key(server, prefix: str) -> str:
    (key,) = [k for k in server.client().list(prefix) if "/data/" in k]
    return key


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_lance_damaged_data_file_is_named(s3_server, tmp_path: Path, damage: str) -> None:
    prefix, _, _ = upload_tiny(s3_server, "lance", tmp_path)
    client = s3_server.client()
    key = _lance_data_key(s3_server, prefix)
    if damage == "missing":
        client.delete(key)
    else:
        client.put(key, client.get(key)[:1000])
    with pytest.raises(StoreError, match="upload the store again") as err:
        _read_one("lance", _target(s3_server, prefix))
    assert str(err.value).startswith(f"s3://{s3_server.bucket}/{key}:"), err.value


def test_lance_missing_dataset_is_named(s3_server, tmp_path: Path) -> None:
    target = _target(s3_server, "test/lance/nothing-here")
    with pytest.raises(StoreError, match="upload the store again") as err:
        remote("lance", target, 1).read_all()
    assert str(err.value).startswith(target.url("store.lance") + ":")


def _one_image_cost(server, tmp_path: Path, fmt: str, options: dict) -> tuple[int, int, int]:
    """(requests, bytes down) of reading one image with an open reader, and the store's size."""
    prefix, images, _ = upload_tiny(server, fmt, tmp_path, options)
    size = sum(server.client().list(prefix).values())
    with Proxy(server.endpoint) as proxy:
        target = S3Target(proxy.endpoint, server.bucket, prefix, server.creds)
        with remote(fmt, target, 1, options=options).batch_reader() as read:
            read([0])  # the first read may fetch metadata too
            c0 = proxy.stats()
            got, _ = read([N // 2])
            c1 = proxy.stats()
    assert np.array_equal(got[0], images[N // 2])
    return c1["requests"] - c0["requests"], c1["bytes_down"] - c0["bytes_down"], size


IMAGE = 32 * 32 * 3


def test_parquet_reads_one_row_group_per_image(s3_server, tmp_path: Path) -> None:
    rows = 16
    requests, down, _ = _one_image_cost(
        s3_server, tmp_path, "parquet", {"parquet_row_group_images": rows}
    )
    assert requests == 1  # image and label chunks of the group coalesced into one GET
    assert rows * IMAGE <= down < 2 * rows * IMAGE


@pytest.mark.parametrize("rows", [16, 65536])
def test_feather_reads_one_record_batch_per_image(s3_server, tmp_path: Path, rows: int) -> None:
    requests, down, size = _one_image_cost(
        s3_server, tmp_path, "feather", {"feather_batch_images": rows}
    )
    assert requests == 1  # the batch's metadata and body in one ranged GET
    batch = min(rows, N) * IMAGE
    assert batch <= down < batch + 64 * 1024
    if rows >= N:  # the default's batch is the whole store here
        assert down > 0.9 * size


def test_feather_full_read_is_ranged_gets_of_the_object(s3_server, tmp_path: Path) -> None:
    options = {"feather_batch_images": 16}  # 19 record batches: one GET each would be 19+
    prefix, images, labels = upload_tiny(s3_server, "feather", tmp_path, options)
    with Proxy(s3_server.endpoint) as proxy:
        target = S3Target(proxy.endpoint, s3_server.bucket, prefix, s3_server.creds)
        c0 = proxy.stats()
        got_images, got_labels = remote("feather", target, 1, options=options).read_all()
        c1 = proxy.stats()
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    assert c1["requests"] - c0["requests"] <= 5  # HEAD, footer, the object in one range
