"""Hostile and broken input: refuse clearly, run no foreign code, lose nothing.

Every test here fails if the protection it names is removed:

* malicious pickles prove the payload did NOT run (a marker file it would create stays
  absent) and that a plain ``pickle.loads`` WOULD run it (control test);
* archive, download and store errors must be one line naming the file and a fix;
* interrupted or failed writes must leave nothing under the final name nor a temporary.

Kept small on purpose (a long benchmark may run on the same machine): tiny arrays, no
Snakemake, one short subprocess for the kill test.
"""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest
from PIL import Image

import imgbench
from imgbench import experiments
from imgbench.core.atomic import tmp_name
from imgbench.core.errors import DataError, DownloadError, StoreError, VerificationError
from imgbench.core.job import Job
from imgbench.core.safepickle import UnsafePickleError, loads
from imgbench.data import cifar as data
from imgbench.data import download, synthetic
from imgbench.stores import FORMATS, get_store, hdf5, lmdb_store, modes, png
from imgbench.stores.lmdb_store import CIFARImage

REPO = Path(imgbench.__file__).resolve().parent.parent
FIX_WORDS = ("delete", "rerun", "cifar_md5", "cifar_url")


# --- helpers -------------------------------------------------------------------------------


class _Payload:
    """Pickles as a call to *func(*args)*: what a hostile batch or LMDB value would carry."""

    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


def _payloads(marker: Path) -> dict[str, _Payload]:
    """Three classic code-execution gadgets, each of which would create *marker*."""
    return {
        "os.system": _Payload(os.system, (f"touch {shlex.quote(str(marker))}",)),
        "builtins.exec": _Payload(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.call": _Payload(subprocess.call, (["touch", str(marker)],)),
    }


GADGETS = ["os.system", "builtins.exec", "subprocess.call"]


def _evil_pickle(marker: Path, gadget: str, nested: bool = False) -> bytes:
    payload = _payloads(marker)[gadget]
    if nested:  # hidden inside an otherwise genuine-looking batch dict
        obj: object = {b"data": payload, b"labels": [0]}
    else:
        obj = payload
    return pickle.dumps(obj, protocol=2)


def assert_clear(msg: str, path: Path, fix_words: tuple[str, ...] = FIX_WORDS) -> None:
    """One line, names the file, tells the user what to do."""
    assert "\n" not in msg, f"message spans several lines: {msg!r}"
    assert str(path) in msg, f"message does not name {path}: {msg!r}"
    assert any(w in msg for w in fix_words), f"message gives no fix ({fix_words}): {msg!r}"


def leftovers(final: Path) -> list[Path]:
    """Anything under the final name or a temporary sibling of it."""
    found = list(final.parent.glob(f".{final.name}.tmp-*")) if final.parent.exists() else []
    if final.exists() or final.is_symlink():
        found.append(final)
    return found


def batch_bytes(n: int, seed: int, name: str) -> bytes:
    return pickle.dumps(synthetic.batch_dict(n, np.random.default_rng(seed), name), protocol=2)


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A gzip tar from explicit members (links, absolute names, missing batches ...)."""
    with tarfile.open(path, "w:gz") as tf:
        for info, payload in entries:
            if payload is None:
                tf.addfile(info)
            else:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    return path


def reg(name: str, payload: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), payload


def make_source(tmp_path: Path, n: int, seed: int = 0, name: str = "") -> tuple[Path, Path]:
    """images.npy / labels.npy as the double step writes them."""
    rng = np.random.default_rng(seed)
    images = tmp_path / f"images{name}.npy"
    labels = tmp_path / f"labels{name}.npy"
    np.save(images, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    np.save(labels, rng.integers(0, 10, n, dtype=np.uint8))
    return images, labels


def _job(fmt: str, mode: str, src: tuple[Path, Path], n: int, store: Path, **kw: object) -> Job:
    result = store.parent / ("read.json" if kw.get("cache") else "build.json")
    return Job(fmt, mode, n, src[0], src[1], store, result, repeats=1, warmup=0, **kw)


def build(fmt: str, mode: str, src: tuple[Path, Path], n: int, store: Path, **options: object):
    return experiments.build_store(_job(fmt, mode, src, n, store, options=options))


def read(fmt: str, mode: str, src: tuple[Path, Path], n: int, store: Path, **options: object):
    job = _job(fmt, mode, src, n, store, options=options, cache="warm")
    return experiments.read_many(job)


# --- 1. untrusted pickles ------------------------------------------------------------------


@pytest.mark.parametrize("gadget", GADGETS)
def test_control_gadget_really_runs_under_plain_pickle(tmp_path, gadget):
    """Control: the payloads used below are live; only the restricted unpickler stops them."""
    marker = tmp_path / "MARKER"
    pickle.loads(_evil_pickle(marker, gadget))  # noqa: S301 - deliberate, proves the gadget
    assert marker.exists()


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-dict"])
@pytest.mark.parametrize("gadget", GADGETS)
def test_malicious_batch_pickle_refused_and_not_run(tmp_path, monkeypatch, gadget, nested):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    archive = synthetic.make_archive(
        tmp_path / "cifar.tar.gz",
        per_batch=4,
        members={"data_batch_3": _evil_pickle(marker, gadget, nested)},
    )
    with pytest.raises((UnsafePickleError, DataError)) as info:
        data.read_cifar_archive(archive)
    msg = str(info.value)
    assert "data_batch_3" in msg
    assert str(archive) in msg
    assert "\n" not in msg
    assert not marker.exists(), "the pickled payload ran"


@pytest.mark.parametrize("gadget", GADGETS)
def test_malicious_article_lmdb_value_refused_and_not_run(tmp_path, monkeypatch, gadget):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    n = 8
    src = make_source(tmp_path, n)
    store = tmp_path / "store"
    store.mkdir()
    get_store("lmdb", "article").write_many(store, np.load(src[0]), np.load(src[1]))
    env = lmdb.open(str(store))
    try:
        with env.begin(write=True) as txn:
            assert txn.get(lmdb_store.key(3)) is not None
            txn.put(lmdb_store.key(3), _evil_pickle(marker, gadget))
    finally:
        env.close()
    with pytest.raises((UnsafePickleError, StoreError)) as info:
        read("lmdb", "article", src, n, store)
    assert f"{store}:00000003" in str(info.value)
    assert not marker.exists(), "the pickled payload ran"
    assert not (tmp_path / "read.json").exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_safepickle_accepts_genuine_numpy_arrays(protocol):
    rng = np.random.default_rng(1)
    for arr in (
        rng.integers(0, 256, (5, 3072), dtype=np.uint8),
        rng.standard_normal((2, 3)).astype(np.float32),
        np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2],  # non-contiguous
    ):
        batch = {b"data": arr, b"labels": [1, 2], b"batch_label": b"x"}
        got = loads(pickle.dumps(batch, protocol=protocol), "test")
        assert isinstance(got, dict)
        np.testing.assert_array_equal(got[b"data"], arr)
        assert got[b"data"].dtype == arr.dtype
        assert got[b"labels"] == [1, 2] and got[b"batch_label"] == b"x"


@pytest.mark.parametrize("protocol", [2, 4, pickle.DEFAULT_PROTOCOL])
def test_safepickle_accepts_cifar_image_record(protocol):
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    got = loads(pickle.dumps(CIFARImage(image, 7), protocol=protocol), "test")
    assert isinstance(got, CIFARImage)
    assert got.label == 7
    np.testing.assert_array_equal(got.get_image(), image)


def test_genuine_archive_reads(tmp_path):
    """Positive control for every archive test below: the synthetic layout is accepted."""
    archive = synthetic.make_archive(tmp_path / "cifar.tar.gz", per_batch=4, seed=3)
    images, labels = data.read_cifar_archive(archive)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (20,) and labels.dtype == np.uint8


# --- 2. tar archives -----------------------------------------------------------------------


def _snapshot(*dirs: Path) -> dict[Path, set[str]]:
    return {d: set(os.listdir(d)) for d in dirs}


def test_members_outside_prefix_ignored_and_nothing_written(tmp_path, monkeypatch):
    dl, cwd = tmp_path / "dl", tmp_path / "cwd"
    dl.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    marker = tmp_path / "MARKER"
    outside = tmp_path / "outside"
    evil = _evil_pickle(marker, "os.system")
    # Same basename as real batches, placed after them, so a reader that matched on
    # basename or extracted by name would pick them up (and run or write them).
    hostile = {
        "../cifar-10-batches-py/data_batch_1": evil,
        # Exactly len(PREFIX) characters before the batch name: caught only by the prefix check.
        "../cifar-10-batches/data_batch_1": evil,
        "/cifar-10-batches-p/data_batch_4": evil,
        f"{outside}/cifar-10-batches-py/data_batch_2": evil,
        f"{tmp_path}/abs-evil": b"x",
        "../evil": b"x",
        "../../evil": b"x",
        "cifar-10-batches-py/../../escape": b"x",
    }
    archive = synthetic.make_archive(dl / "cifar.tar.gz", per_batch=4, seed=5, members=hostile)
    with tarfile.open(archive) as tf:  # the hostile names really are in the archive
        assert set(hostile) <= set(tf.getnames())
    clean = synthetic.make_archive(tmp_path / "clean.tar.gz", per_batch=4, seed=5)
    before = _snapshot(tmp_path.parent, tmp_path, dl, cwd)

    images, labels = data.read_cifar_archive(archive)

    want_images, want_labels = data.read_cifar_archive(clean)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert not marker.exists()
    assert not outside.exists()
    assert not (tmp_path / "abs-evil").exists()
    assert not Path("/cifar-10-batches-p").exists()
    assert _snapshot(tmp_path.parent, tmp_path, dl, cwd) == before


@pytest.mark.parametrize(
    "kind,linkname",
    [
        (tarfile.SYMTYPE, "data_batch_2"),
        (tarfile.SYMTYPE, "/etc/passwd"),
        (tarfile.LNKTYPE, "cifar-10-batches-py/data_batch_2"),
    ],
    ids=["symlink-inside", "symlink-abs", "hardlink"],
)
def test_link_named_like_a_batch_refused(tmp_path, kind, linkname):
    entries = [reg(data.PREFIX + b, batch_bytes(4, i, b)) for i, b in enumerate(data.BATCHES)]
    entries = [e for e in entries if not e[0].name.endswith("data_batch_1")]
    link = tarfile.TarInfo(data.PREFIX + "data_batch_1")
    link.type, link.linkname = kind, linkname
    archive = write_tar(tmp_path / "cifar.tar.gz", [*entries, (link, None)])
    with pytest.raises(DataError) as info:
        data.read_cifar_archive(archive)
    msg = str(info.value)
    assert "link" in msg and "data_batch_1" in msg
    assert_clear(msg, archive)


def test_oversized_member_refused(tmp_path, monkeypatch):
    small = len(batch_bytes(4, 0, "x"))
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", 2 * small)
    big = synthetic.batch_dict(40, np.random.default_rng(9), "big")  # ~10x a small batch
    archive = synthetic.make_archive(
        tmp_path / "cifar.tar.gz", per_batch=4, members={"data_batch_2": big}
    )
    with pytest.raises(DataError) as info:
        data.read_cifar_archive(archive)
    msg = str(info.value)
    assert "data_batch_2" in msg and "limit" in msg and str(2 * small) in msg
    assert_clear(msg, archive)


# --- 3. broken downloads and archives ------------------------------------------------------


def _src_dir(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return tmp_path / "src"


def test_fetch_local_copy_verifies_and_sweeps_stale_temps(tmp_path):
    """Positive control for the md5 test: the right checksum passes (path and file:// URL)."""
    src = synthetic.make_archive(_src_dir(tmp_path) / "cifar.tar.gz", per_batch=4)
    for url in (str(src), src.as_uri()):
        dest = tmp_path / "data" / "cifar-10-python.tar.gz"
        dest.parent.mkdir(exist_ok=True)
        stale = dest.with_name(f".{dest.name}.tmp-999999")
        stale.write_bytes(b"half a download from a killed job")
        download.fetch(url, dest, download.md5sum(src).upper())
        assert dest.read_bytes() == src.read_bytes()
        assert leftovers(dest) == [dest]
        dest.unlink()


def test_fetch_wrong_md5_leaves_nothing(tmp_path):
    src = synthetic.make_archive(_src_dir(tmp_path) / "cifar.tar.gz", per_batch=4)
    dest = tmp_path / "data" / "cifar-10-python.tar.gz"
    with pytest.raises(DownloadError) as info:
        download.fetch(str(src), dest, "0" * 32)
    msg = str(info.value)
    assert "cifar_md5" in msg and download.md5sum(src) in msg
    assert_clear(msg, src)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == [], "a temporary or partial file was left behind"


def test_fetch_interrupted_mid_copy_leaves_nothing(tmp_path, monkeypatch):
    src = synthetic.make_archive(_src_dir(tmp_path) / "cifar.tar.gz", per_batch=40)
    dest = tmp_path / "data" / "cifar-10-python.tar.gz"
    copied: list[int] = []

    def interrupted(src_f, dst_f, total, label):
        chunk = src_f.read(total // 2)
        dst_f.write(chunk)
        dst_f.flush()
        copied.append(len(chunk))
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_copy_with_progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(str(src), dest, download.md5sum(src))
    assert copied and copied[0] > 0  # the interruption really came mid-copy
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == [], "a partial download was left behind"


def _bad_batch(**fields: object) -> dict:
    batch = synthetic.batch_dict(4, np.random.default_rng(7), "bad")
    batch.update({k.encode(): v for k, v in fields.items()})
    return batch


def _truncated(d: Path) -> Path:
    whole = synthetic.make_archive(d / "whole.tar.gz", per_batch=40).read_bytes()
    out = d / "cifar.tar.gz"
    out.write_bytes(whole[: len(whole) // 2])
    return out


def _html(d: Path) -> Path:
    out = d / "cifar.tar.gz"
    out.write_text(
        "\n  <!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
        "<body>Access denied by proxy</body></html>\n"
    )
    return out


def _empty(d: Path) -> Path:
    out = d / "cifar.tar.gz"
    out.write_bytes(b"")
    return out


def _not_gzip(d: Path) -> Path:  # e.g. someone gunzipped it and kept the name
    out = d / "cifar.tar.gz"
    with tarfile.open(out, "w") as tf:
        info = tarfile.TarInfo(data.PREFIX + "data_batch_1")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    return out


def _four_batches(d: Path) -> Path:
    entries = [reg(data.PREFIX + b, batch_bytes(4, i, b)) for i, b in enumerate(data.BATCHES[:4])]
    return write_tar(d / "cifar.tar.gz", entries)


def _with(name: str, obj: object):
    def make(d: Path) -> Path:
        return synthetic.make_archive(d / "cifar.tar.gz", per_batch=4, members={name: obj})

    return make


BROKEN = {
    "truncated": (_truncated, ["truncated or corrupt"]),
    "html": (_html, ["is an HTML"]),
    "empty": (_empty, ["file is empty"]),
    "not-gzip": (_not_gzip, ["is not a gzip file"]),
    "missing-batch": (_four_batches, ["missing", "data_batch_5"]),
    "shape": (
        _with("data_batch_2", _bad_batch(data=np.zeros((4, 100), np.uint8))),
        ["data_batch_2", "shape", "(4, 100)"],
    ),
    "dtype": (
        _with("data_batch_2", _bad_batch(data=np.zeros((4, 3072), np.float32))),
        ["data_batch_2", "dtype", "float32"],
    ),
    "label-count": (
        _with("data_batch_4", _bad_batch(labels=[1, 2, 3])),
        ["data_batch_4", "4 images", "3 labels"],
    ),
    "label-range": (_with("data_batch_1", _bad_batch(labels=[1, 2, 3, 10])), ["0..9"]),
    "not-a-dict": (_with("data_batch_5", [1, 2, 3]), ["data_batch_5", "dict"]),
    "not-a-pickle": (_with("data_batch_3", b"hello, this is not a pickle"), ["data_batch_3"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_archive_refused_in_one_clear_line(tmp_path, case):
    make, expected = BROKEN[case]
    archive = make(tmp_path)
    with pytest.raises(DataError) as info:
        data.read_cifar_archive(archive)
    msg = str(info.value)
    for word in expected:
        assert word in msg, f"{word!r} not in {msg!r}"
    assert_clear(msg, archive)


def test_unpickle_step_writes_nothing_for_broken_archive(tmp_path):
    archive = _four_batches(tmp_path)
    images, labels = tmp_path / "out" / "images.npy", tmp_path / "out" / "labels.npy"
    with pytest.raises(DataError):
        data.unpickle(archive, images, labels)
    assert leftovers(images) == [] and leftovers(labels) == []


# --- 5. interruption -----------------------------------------------------------------------


def test_killed_build_leaves_no_store_and_rerun_recovers(tmp_path):
    n_big, n_small = 3000, 20
    src = make_source(tmp_path, n_big)
    store = tmp_path / "stores" / "png-article"
    store.parent.mkdir()
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from imgbench import experiments
        from imgbench.core.job import Job
        a = sys.argv[1:]
        job = Job("png", "article", int(a[2]), a[0], a[1], a[3], a[4], repeats=1, warmup=0)
        experiments.build_store(job)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    args = [*map(str, src), str(n_big), str(store), str(tmp_path / "killed.json")]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tmp = store.with_name(f".{store.name}.tmp-{proc.pid}")
    assert tmp.name == tmp_name(store).name.replace(f"-{os.getpid()}", f"-{proc.pid}")
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if tmp.is_dir() and sum(1 for _ in os.scandir(tmp)) >= 20:
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (
        f"build ended on its own (rc={proc.returncode}) before it could be killed: "
        f"{err.decode(errors='replace')[-2000:]}"
    )
    assert tmp.is_dir() and any(tmp.iterdir()), "kill did not land mid-build"
    assert not store.exists(), "a half-built store was left under the final name"
    assert not (tmp_path / "killed.json").exists()

    out = build("png", "article", src, n_small, store)
    assert out["n_images"] == n_small
    assert not tmp.exists(), "the stale temporary of the killed build was not swept"
    assert leftovers(store) == [store]
    assert len(list(store.glob("*.png"))) == n_small
    assert read("png", "article", src, n_small, store)["verified"] is True


# --- 6. resource exhaustion ----------------------------------------------------------------


def test_enospc_injected_gives_store_error_and_leaves_nothing(tmp_path, monkeypatch):
    n = 10
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / "png-article"
    wrote: list[Path] = []

    def full_disk(self, path, images, labels):
        (path / "0.png").write_bytes(b"\x89PNG partial")
        wrote.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(png.ArticlePng, "write_many", full_disk)
    with pytest.raises(StoreError) as info:
        build("png", "article", src, n, store)
    msg = str(info.value)
    assert wrote, "the injected failure never ran"
    assert "no space left" in msg
    assert_clear(msg, store, ("free space", "rerun"))
    assert leftovers(store) == []
    assert not (store.parent / "build.json").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted under tmp_path (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount not available")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


#: every registered format once, in its article mode where it has one (issue 12: the safety
#: tests cover every format, not just the article's three)
EVERY_FORMAT = [(f, modes(f)[0]) for f in FORMATS]


@pytest.mark.parametrize(("fmt", "mode"), EVERY_FORMAT)
def test_enospc_on_real_small_filesystem(tmp_path, small_tmpfs, fmt, mode):
    n = 1000  # ~3 MB of pixels into a 2 MiB file system
    src = make_source(tmp_path, n)
    store = small_tmpfs / f"{fmt}-{mode}"
    result = tmp_path / "build.json"
    with pytest.raises(StoreError) as info:
        experiments.build_store(Job(fmt, mode, n, *src, store, result, repeats=1, warmup=0))
    msg = str(info.value)
    assert "no space left" in msg
    assert_clear(msg, store, ("free space", "rerun"))
    assert leftovers(store) == []
    assert os.listdir(small_tmpfs) == [], "the partial store was not cleaned up"
    assert not result.exists()


def _tiny_lmdb_open(monkeypatch, map_size: int) -> None:
    real_open = lmdb.open

    def tiny(path, **kwargs):
        if "map_size" in kwargs:
            kwargs["map_size"] = map_size
        return real_open(path, **kwargs)

    monkeypatch.setattr(lmdb_store.lmdb, "open", tiny)


def test_article_lmdb_map_full_is_a_clear_store_error(tmp_path, monkeypatch):
    n = 50
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / "lmdb-article"
    _tiny_lmdb_open(monkeypatch, 64 * 1024)
    with pytest.raises(StoreError) as info:
        build("lmdb", "article", src, n, store)
    msg = str(info.value)
    assert "map full" in msg and "tuned" in msg
    assert "\n" not in msg
    assert leftovers(store) == []
    assert not (store.parent / "build.json").exists()


def test_tuned_lmdb_grows_map_and_round_trips(tmp_path, caplog):
    n = 400  # 400 overflow-page values: more than the 1 MiB floor of the initial map
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / "lmdb-tuned"
    with caplog.at_level(logging.INFO, logger=lmdb_store.__name__):
        build("lmdb", "tuned", src, n, store, lmdb_map_headroom=0.001)
    assert "growing map" in caplog.text, "the map never filled: test does not exercise growth"
    assert read("lmdb", "tuned", src, n, store, lmdb_map_headroom=0.001)["verified"] is True


# --- 7. a store that does not match the data -----------------------------------------------


@pytest.mark.parametrize(
    "fmt,mode",
    [
        ("npy", "tuned"),
        ("hdf5", "article"),
        ("lmdb", "tuned"),
        ("lmdb", "article"),
        ("png", "tuned"),
    ],
)
def test_store_built_for_other_n_is_refused(tmp_path, fmt, mode):
    src = make_source(tmp_path, 60)
    store = tmp_path / "stores" / f"{fmt}-{mode}"
    build(fmt, mode, src, 50, store)
    with pytest.raises(VerificationError) as info:
        read(fmt, mode, src, 60, store)
    msg = str(info.value)
    assert "n_images" in msg or "built for other data" in msg
    assert_clear(msg, store)
    assert not (store.parent / "read.json").exists()


def test_store_verified_against_other_images_is_refused(tmp_path):
    n = 30
    src_a = make_source(tmp_path, n, seed=1, name="-a")
    src_b = (make_source(tmp_path, n, seed=2, name="-b")[0], src_a[1])  # same labels
    store = tmp_path / "stores" / "npy-tuned"
    build("npy", "tuned", src_a, n, store)
    assert read("npy", "tuned", src_a, n, store)["verified"] is True  # control
    with pytest.raises(VerificationError) as info:
        read("npy", "tuned", src_b, n, store)
    assert "differ" in str(info.value) and "index 0" in str(info.value)
    assert_clear(str(info.value), store)


@pytest.mark.parametrize("mode", ["article", "tuned"])
def test_altered_png_file_is_caught(tmp_path, mode):
    n = 20
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / f"png-{mode}"
    build("png", mode, src, n, store)
    image = np.load(src[0])[7].copy()
    image[3, 4, 1] ^= 0x01  # one pixel byte, one bit
    Image.fromarray(image).save(store / "7.png")
    with pytest.raises(VerificationError) as info:
        read("png", mode, src, n, store)
    msg = str(info.value)
    assert "1 images differ" in msg and "index 7" in msg
    assert_clear(msg, store)


@pytest.mark.parametrize("mode", ["article", "tuned"])
def test_altered_hdf5_pixel_is_caught(tmp_path, mode):
    n = 20
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / f"hdf5-{mode}"
    build("hdf5", mode, src, n, store)
    with h5py.File(store / hdf5.FILE, "r+") as f:
        f["images"][13, 5, 5, 0] = f["images"][13, 5, 5, 0] ^ 0xFF
    with pytest.raises(VerificationError) as info:
        read("hdf5", mode, src, n, store)
    msg = str(info.value)
    assert "index 13" in msg
    assert_clear(msg, store)


def test_altered_label_is_caught(tmp_path):
    n = 20
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / "lmdb-tuned"
    build("lmdb", "tuned", src, n, store)
    labels = np.load(src[1])
    labels[4] = (labels[4] + 1) % 10
    env = lmdb.open(str(store))
    try:
        with env.begin(write=True) as txn:
            txn.put(lmdb_store.LABELS, labels.tobytes())
    finally:
        env.close()
    with pytest.raises(VerificationError) as info:
        read("lmdb", "tuned", src, n, store)
    assert "labels differ" in str(info.value) and "index 4" in str(info.value)
    assert_clear(str(info.value), store)


# --- 8. every format: a killed build, a damaged store ----------------------------------------


@pytest.mark.parametrize(("fmt", "mode"), EVERY_FORMAT)
def test_build_killed_before_its_rename_leaves_no_store_in_any_format(tmp_path, fmt, mode):
    """SIGKILL right after the format wrote everything, before the rename: the worst moment,
    as every file is there. Nothing may sit under the final name; a rerun builds it again."""
    n = 50
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / f"{fmt}-{mode}"
    store.parent.mkdir()
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from imgbench import experiments
        from imgbench.core.job import Job
        from imgbench.stores import store_class
        cls = store_class({fmt!r}, {mode!r})
        real = cls.write_many
        def write_then_die(self, path, images, labels):
            real(self, path, images, labels)
            os.kill(os.getpid(), signal.SIGKILL)
        cls.write_many = write_then_die
        a = sys.argv[1:]
        job = Job({fmt!r}, {mode!r}, {n}, a[0], a[1], a[2], a[3], repeats=1, warmup=0)
        experiments.build_store(job)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, src), str(store), str(tmp_path / "killed.json")],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")[-2000:]
    tmp = list(store.parent.glob(f".{store.name}.tmp-*"))
    assert tmp and any(tmp[0].iterdir()), "the kill did not land after the write"
    assert not store.exists(), "a store was left under the final name"
    assert not (tmp_path / "killed.json").exists()
    build(fmt, mode, src, n, store)  # the rerun: sweeps the leftover, builds, reads back
    assert read(fmt, mode, src, n, store)["verified"] is True
    assert not list(store.parent.glob(f".{store.name}.tmp-*")), "the killed build's temp stayed"


def _largest_file(store: Path) -> Path:
    files = [p for p in store.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(files, key=lambda p: (p.stat().st_size, str(p)))


@pytest.mark.parametrize(("fmt", "mode"), [(f, m) for f in FORMATS for m in modes(f)])
def test_truncated_store_file_is_one_line_in_every_format(tmp_path, fmt, mode):
    """Half of the store's largest file gone (a copy cut short, a full disk at copy time):
    reading gives one line naming the store and the fix, never short or wrong data."""
    n = 60
    src = make_source(tmp_path, n)
    store = tmp_path / "stores" / f"{fmt}-{mode}"
    build(fmt, mode, src, n, store)
    victim = _largest_file(store)
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises((StoreError, VerificationError)) as info:
        read(fmt, mode, src, n, store)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(store) in msg, msg
    assert any(w in msg for w in ("delete", "rebuild", "rerun")), msg
    assert not (store.parent / "read.json").exists()
