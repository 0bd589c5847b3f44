"""TileDB (tuned): the tile option shapes the array, one fragment per array, labels keep
their dtype, shuffled batches read only their tiles, and a damaged store raises instead of
returning the dense array's fill values."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiledb

from imgbench.core.errors import StoreError
from imgbench.stores import get_store
from imgbench.stores import tiledb_store as T
from tests.conftest import REPO, random_data, run_threads


def _store(tmp_path: Path, n: int = 100, **options):
    images, labels = random_data(n, seed=n)
    store = get_store("tiledb", "tuned", options)
    store.write_many(tmp_path, images, labels)
    return store, images, labels


def _one(path: Path, pattern: str) -> Path:
    (found,) = path.glob(pattern)
    return found


def test_tile_option_and_one_fragment_per_array(tmp_path: Path) -> None:
    store, images, _ = _store(tmp_path, 10, tiledb_tile_images=4)
    ctx = T._ctx(1)
    schema = tiledb.ArraySchema.load(str(tmp_path / "images"), ctx=ctx)
    assert not schema.sparse
    assert [d.tile for d in schema.domain] == [4, 3072]
    assert schema.attr("image").dtype == np.uint8 and len(schema.attr("image").filters) == 0
    for name in ("images", "labels"):
        assert len(tiledb.FragmentInfoList(str(tmp_path / name), ctx=ctx)) == 1
    # dense tiles are written whole: 10 images in 4-image tiles store 12 image slots
    data = _one(tmp_path, "images/__fragments/*/a0.tdb").stat().st_size
    assert 12 * images[0].nbytes <= data < 12 * images[0].nbytes + 4096
    got, _ = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)


def test_tile_is_clipped_to_a_small_store(tmp_path: Path) -> None:
    store = get_store("tiledb", "tuned", {"tiledb_tile_images": 256})
    images, labels = random_data(1)
    store.write_one(tmp_path, images[0], int(labels[0]))
    schema = tiledb.ArraySchema.load(str(tmp_path / "images"), ctx=T._ctx(1))
    assert schema.domain.dim(0).tile == 1
    image, label = store.read_one(tmp_path)
    np.testing.assert_array_equal(image, images[0])
    assert label == int(labels[0])


def test_compression_option(tmp_path: Path) -> None:
    images = np.zeros((40, 32, 32, 3), dtype=np.uint8)
    images[:, ::4] = 200
    labels = np.arange(40, dtype=np.uint8)
    store = get_store("tiledb", "tuned", {"tiledb_compression": "zstd"})
    store.write_many(tmp_path, images, labels)
    schema = tiledb.ArraySchema.load(str(tmp_path / "images"), ctx=T._ctx(1))
    assert isinstance(schema.attr("image").filters[0], tiledb.ZstdFilter)
    assert _one(tmp_path, "images/__fragments/*/a0.tdb").stat().st_size < images.nbytes / 10
    got, got_labels = store.read_many(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)
    with pytest.raises(ValueError, match="tiledb_compression"):
        get_store("tiledb", "tuned", {"tiledb_compression": "brotli"}).write_many(
            tmp_path / "x", images, labels
        )


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i8", "|i1"])
def test_labels_keep_their_dtype(tmp_path: Path, dtype: str) -> None:
    images, _ = random_data(30)
    labels = (np.arange(-5, 25) if dtype[1] == "i" else np.arange(970, 1000)).astype(dtype)
    store = get_store("tiledb", "tuned")
    store.write_many(tmp_path, images, labels)
    for got in (store.read_many(tmp_path)[1], store.read_batch(tmp_path, [29, 0, 29])[1]):
        assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(store.read_many(tmp_path)[1], labels)
    np.testing.assert_array_equal(store.read_batch(tmp_path, [29, 0, 29])[1], labels[[29, 0, 29]])


def test_batch_order_repeats_and_empty(tmp_path: Path) -> None:
    store, images, labels = _store(tmp_path, 64, tiledb_tile_images=4)
    idx = [63, 5, 6, 7, 5, 0, 62, 8]  # a run of consecutive rows, repeats, both ends
    with store.batch_reader(tmp_path) as read:
        got, got_labels = read(idx)
        np.testing.assert_array_equal(got, images[idx])
        np.testing.assert_array_equal(got_labels, labels[idx])
        empty, empty_labels = read([])
        assert empty.shape == (0, 32, 32, 3) and len(empty_labels) == 0
        with pytest.raises(IndexError):
            read([64])


def test_a_shuffled_batch_reads_only_its_tiles(tmp_path: Path) -> None:
    # TileDB's default VFS settings merge reads < 500 KB apart into 20 MB requests: a
    # random batch would read most of the file. The store turns that off.
    store, images, _ = _store(tmp_path, 2000, tiledb_tile_images=1)
    idx = np.random.default_rng(0).choice(2000, 16, replace=False)
    with store.batch_reader(tmp_path) as read:
        tiledb.stats_enable()
        tiledb.stats_reset()
        try:
            got, _ = read(idx)
            stats = json.loads(tiledb.stats_dump(print_out=False, json=True))
        finally:
            tiledb.stats_disable()
    stats = stats[0] if isinstance(stats, list) else stats
    np.testing.assert_array_equal(got, images[idx])
    read_bytes = stats["counters"]["Context.VFS.read_byte_num"]
    assert read_bytes < 4 * 16 * images[0].nbytes  # the file is 2000 images (6 MB)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: _one(p, "images/__fragments/*/a0.tdb").unlink(), "fragment file missing"),
        (
            lambda p: (lambda f: f.write_bytes(f.read_bytes()[:-100]))(
                _one(p, "images/__fragments/*/a0.tdb")
            ),
            "truncated",
        ),
        (lambda p: _one(p, "images/__fragments/*/a0.tdb").write_bytes(b""), "truncated"),
        (lambda p: _one(p, "images/__commits/*.wrt").unlink(), "fragment file missing"),
        (lambda p: shutil.rmtree(_one(p, "images/__fragments/*")), "images"),
        (lambda p: _one(p, "labels/__fragments/*/a0.tdb").write_bytes(b"x"), "truncated"),
        (lambda p: shutil.rmtree(p / "images" / "__meta"), "metadata"),
        (lambda p: shutil.rmtree(p / "labels" / "__schema"), "cannot open"),
    ],
    ids=[
        "data-deleted",
        "data-truncated",
        "data-emptied",
        "commit-deleted",
        "fragment-deleted",
        "labels-truncated",
        "metadata-deleted",
        "labels-schema-deleted",
    ],
)
def test_damaged_store_raises_never_fill_values(tmp_path: Path, damage, match: str) -> None:
    store, _, _ = _store(tmp_path, 100, tiledb_tile_images=4)
    damage(tmp_path)
    with pytest.raises(StoreError, match=match):
        store.read_many(tmp_path)
    with pytest.raises(StoreError, match=match):
        store.read_batch(tmp_path, [0])  # the first tile: untouched by a cut at the end


def test_rows_no_fragment_covers_are_an_error(tmp_path: Path) -> None:
    # Two fragments with a gap: rows 4-7 would read as fill values (zeros).
    ctx = T._ctx(1)
    dim = tiledb.Dim("row", domain=(0, 9), tile=2, dtype=np.uint64, ctx=ctx)
    schema = tiledb.ArraySchema(
        domain=tiledb.Domain(dim, ctx=ctx),
        attrs=[tiledb.Attr("label", dtype=np.uint8, ctx=ctx)],
        ctx=ctx,
    )
    uri = tmp_path / "gappy"
    tiledb.Array.create(str(uri), schema, ctx=ctx)
    with tiledb.open(str(uri), "w", ctx=ctx) as arr:
        arr[0:4] = {"label": np.ones(4, dtype=np.uint8)}
    with tiledb.open(str(uri), "w", ctx=ctx) as arr:
        arr[8:10] = {"label": np.ones(2, dtype=np.uint8)}
    with pytest.raises(StoreError, match=r"cover rows \[0, 4\) of 10"):
        T._covered(uri, 10, ctx)
    T._covered(uri, 4, ctx)  # the first four rows are there


@pytest.mark.filterwarnings("ignore:TileDB is a multithreading library")  # pytest resets filters
def test_forked_reader_after_the_parent_used_tiledb(tmp_path: Path) -> None:
    store, images, labels = _store(tmp_path, 200, tiledb_tile_images=4)
    store.read_many(tmp_path)
    store.read_batch(tmp_path, [5, 1])
    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    idx = [199, 3, 3, 120, 64]

    def child() -> None:
        with store.batch_reader(tmp_path) as read:
            got, got_labels = read(idx)
        ok = np.array_equal(got, images[idx]) and np.array_equal(got_labels, labels[idx])
        results.put(bool(ok))

    procs = [ctx.Process(target=child) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a forked TileDB reader hung"
    assert [p.exitcode for p in procs] == [0, 0]
    assert [results.get(), results.get()] == [True, True]


def test_store_never_touches_the_default_context(tmp_path: Path) -> None:
    # TileDB-Py's global default context would be shared by forked readers: never create it.
    code = (
        "import sys, numpy as np, tiledb.ctx as c\n"
        "from pathlib import Path\n"
        "from imgbench.stores import get_store\n"
        "s = get_store('tiledb', 'tuned')\n"
        "p = Path(sys.argv[1])\n"
        "s.write_many(p, np.zeros((9, 4, 4, 3), np.uint8), np.arange(9))\n"
        "s.read_many(p); s.read_batch(p, [8, 0, 4]); s.read_one(p)\n"
        "print(c._ctx_var.get(None) is None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert out.stdout.strip() == "True"


def test_threads_share_one_reader(tmp_path: Path) -> None:
    store, images, _ = _store(tmp_path, 300, tiledb_tile_images=4)
    perm = np.random.default_rng(0).permutation(300)
    parts = [perm[s : s + 32] for s in range(0, 300, 32)]
    out: dict[int, np.ndarray] = {}
    with store.batch_reader(tmp_path) as read:

        def work(r: int) -> None:
            for b in range(r, len(parts), 2):
                out[b] = read(parts[b])[0]

        run_threads(work, 2)
    for b, part in enumerate(parts):
        np.testing.assert_array_equal(out[b], images[part])
