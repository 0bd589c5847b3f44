"""PNG, npy and tar read from a real SeaweedFS server: requests per batch as each class says
(one GET per image object or range, consecutive npy images in one), tar's streamed shards the
same as the local stream, and a missing or truncated object failing with one line naming it."""

from __future__ import annotations

import numpy as np
import pytest

from imgbench.core.errors import StoreError
from imgbench.core.names import ReaderKind
from imgbench.experiments import access
from imgbench.stores import get_store
from imgbench.stores.s3 import Proxy, S3Target
from imgbench.stores.tar import stream
from tests.remote_check import N, check_round_trip, remote, upload_tiny

SMALL_SHARDS = {"tar_shard_images": 64}  # 5 shards of 300 images, the last one short


def _target(server, prefix: str, endpoint: str | None = None) -> S3Target:
    return S3Target(endpoint or server.endpoint, server.bucket, prefix, server.creds)


def test_tar_round_trip_over_several_shards(s3_server, tmp_path):
    counts = check_round_trip(s3_server, "tar", tmp_path, SMALL_SHARDS)
    assert counts["requests"] > 0


@pytest.mark.parametrize(
    ("fmt", "indices", "gets"),
    [
        ("png", [5, 6, 7, 100, 3], 5),  # one object per image
        ("tar", [5, 6, 7, 100, 3], 5),  # one range per image (padding between members)
        ("npy", [5, 6, 7, 100, 3], 3),  # 5-7 in one range, 100 and 3 alone
        ("npy", [9, 40, 2, 77], 4),
    ],
)
def test_requests_per_batch(s3_server, tmp_path, fmt, indices, gets):
    prefix, images, labels = upload_tiny(s3_server, fmt, tmp_path)
    with Proxy(s3_server.endpoint) as proxy:
        store = remote(fmt, _target(s3_server, prefix, proxy.endpoint), 1)
        with store.batch_reader() as read:
            before = proxy.stats()["requests"]
            got, got_labels = read(indices)
            done = proxy.stats()["requests"]
    assert done - before == gets
    assert np.array_equal(got, images[indices]) and np.array_equal(got_labels, labels[indices])


def test_npy_full_read_is_large_ranged_gets(s3_server, tmp_path):
    prefix, images, _ = upload_tiny(s3_server, "npy", tmp_path)
    with Proxy(s3_server.endpoint) as proxy:
        store = remote("npy", _target(s3_server, prefix, proxy.endpoint), 4)
        got, _ = store.read_all()
        counts = proxy.stats()
    # LIST, header, labels, and the ~0.9 MB of pixels in one ranged GET
    assert counts["requests"] == 4
    assert np.array_equal(got, images)


def test_tar_stream_matches_local_stream(s3_server, tmp_path):
    prefix, images, labels = upload_tiny(s3_server, "tar", tmp_path, SMALL_SHARDS)
    local = tmp_path / "tar-store"
    for rif in (1, 3):
        store = remote("tar", _target(s3_server, prefix), rif, options=SMALL_SHARDS)
        assert store.shard_sizes("x") == get_store("tar", "tuned", SMALL_SHARDS).shard_sizes(local)
        for shards, buffer in (([4, 0, 2], 50), ([1, 3], 1)):
            want = list(stream(local, buffer, 7, shards))
            got = list(store.stream_shards("x", shards, buffer, 7))
            assert [i for i, _, _ in got] == [i for i, _, _ in want]
            assert all(
                np.array_equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(got, want, strict=True)
            )
            assert all(np.array_equal(im, images[i]) and lb == labels[i] for i, im, lb in got)


def test_tar_streamed_epoch_in_forked_readers(s3_server, tmp_path):
    prefix, images, labels = upload_tiny(s3_server, "tar", tmp_path, SMALL_SHARDS)
    with Proxy(s3_server.endpoint) as proxy:
        store = remote("tar", _target(s3_server, prefix, proxy.endpoint), 2, options=SMALL_SHARDS)
        sizes = store.shard_sizes("x")
        out = access.Epoch(N, images.shape[1:], labels.dtype, -(-N // 32) + 2)
        before = proxy.stats()
        access.run_stream(store, "x", sizes, 2, ReaderKind.PROCESS, out, 100, 3, 0, 32)
        after = proxy.stats()
    assert sorted(out.index.tolist()) == list(range(N))
    assert np.array_equal(out.images, images[out.index]) and np.array_equal(
        out.labels, labels[out.index]
    )
    # each reader: its open (LIST + 3 metadata GETs, once: the stream reuses it), then one
    # GET per shard of its share: 5 shards in all
    assert after["requests"] - before["requests"] == 2 * 4 + len(sizes)
    assert after["bytes_down"] - before["bytes_down"] >= sum(
        f.stat().st_size for f in (tmp_path / "tar-store").glob("*.tar")
    )


def _fails(store, name: str, what: str) -> None:
    with pytest.raises(StoreError) as err:
        with store.batch_reader() as read:
            read(range(N))
    msg = str(err.value)
    assert name in msg and what in msg and "upload" in msg and "\n" not in msg, msg


def test_missing_or_truncated_objects_are_named(s3_server, tmp_path):
    client = s3_server.client()
    for fmt, name in (("png", "7.png"), ("npy", "images.npy"), ("tar", "shard-000000.tar")):
        (tmp_path / fmt).mkdir()
        prefix = upload_tiny(s3_server, fmt, tmp_path / fmt)[0]
        key = f"{prefix}/{name}"
        url = f"s3://{s3_server.bucket}/{key}"
        store = remote(fmt, _target(s3_server, prefix), 2)
        client.put(key, client.get(key)[:-100])
        _fails(store, url, "truncated")
        client.delete(key)
        _fails(store, url, "no such object")
