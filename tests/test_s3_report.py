"""s3.csv puts every S3 row beside the probe's matching limit (small GETs at the same readers x
requests in flight; large-object bandwidth for streamed, whole-store and staged reads), and the
answer gets one object-storage row per round trip, a staged format judged with its download."""

from __future__ import annotations

import pandas as pd
import pytest

from imgbench.report import answer
from imgbench.report.s3 import probe_table, s3_md, s3_table

N = 10_000
STORE_BYTES = 40e6  # 4,000 B per image


def _row(fmt: str, op: str, lat: float = 10.0, **extra) -> dict:
    ips = extra.get("images_per_s")
    return {
        "data": "cifar32", "format": fmt, "mode": "tuned", "operation": op, "n_images": N,
        "samples": [N / ips] * 2 if ips else [], "verified": True, "commit": "c", "dirty": False,
        "cpu_user_s": [], "cpu_sys_s": [],
        "extra": {"storage": "s3", "latency_ms": lat, "bandwidth_mbps": 1000.0,
                  "requests_in_flight": extra.pop("rif", 1), **extra},
    }  # fmt: skip


def _probe(lat: float = 10.0) -> dict:
    return {"extra": {"latency_ms": lat, "bandwidth_mbps": 1000.0, "one_get_ms": lat + 3,
                      "small_get_per_s": {"r1_q1": 100.0, "r2_q4": 400.0, "r1_q4": 250.0,
                                          "r2_q1": 450.0, "r2_q16": 900.0},
                      "large_get_mb_s": 100.0,
                      "proxy_overhead": [{"path": "direct", "small_get_per_s_qd1": 300.0,
                                          "large_get_mb_s": 200.0}]}}  # fmt: skip


@pytest.fixture
def table() -> pd.DataFrame:
    results = [
        _row("png", "write_many", access="object", store_bytes=STORE_BYTES, objects=N + 1),
        _row("tar", "write_many", access="object", store_bytes=STORE_BYTES, objects=12),
        _row("lmdb", "write_many", access="object", store_bytes=STORE_BYTES, objects=2),
        _row("png", "read_epoch", access="object", readers=2, rif=4, pattern="shuffled",
             images_per_s=200.0, requests_per_image=1.0),
        _row("tar", "read_epoch", access="stream", readers=2, pattern="buffered",
             images_per_s=10_000.0, requests_per_image=0.001),
        _row("tar", "read_many", access="stream", rif=4, images_per_s=5_000.0),
        _row("png", "read_many", access="object", rif=4, images_per_s=125.0),
        _row("lmdb", "read_epoch", access="staged", readers=2, rif=4, pattern="shuffled",
             images_per_s=50_000.0, stage_s=2.0, images_per_s_with_stage=4_000.0),
    ]  # fmt: skip
    return s3_table(results, [_probe()])


def _one(df: pd.DataFrame, fmt: str, op: str) -> pd.Series:
    sel = df[(df["format"] == fmt) & (df["operation"] == op)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_each_row_is_beside_its_matching_limit(table):
    png = _one(table, "png", "read_epoch")
    assert png["limit"] == "small-object GETs/s, 2 x up to 4 in flight"
    assert png["limit_fraction"] == pytest.approx(200 / 450)  # r2 x 1 beat r2 x 4; not r2 x 16
    assert _one(table, "png", "read_many")["limit_fraction"] == pytest.approx(125 / 250)
    tar = _one(table, "tar", "read_epoch")  # 100 MB/s / 4,000 B = 25,000 images/s
    assert tar["limit_value"] == pytest.approx(25_000)
    assert tar["limit_fraction"] == pytest.approx(0.4)
    assert _one(table, "tar", "read_many")["limit_fraction"] == pytest.approx(0.2)
    lmdb = _one(table, "lmdb", "read_epoch")  # 40 MB in 2 s = 20 MB/s of 100
    assert lmdb["limit_fraction"] == pytest.approx(0.2)
    up = _one(table, "png", "write_many")
    assert pd.isna(up["images_per_s"]) and up["limit"] == "no PUT limit probed"


def test_a_row_without_its_probe_says_so():
    df = s3_table([_row("png", "read_epoch", access="object", readers=1, images_per_s=10.0)], [])
    assert df.iloc[0]["limit"] == "not probed" and pd.isna(df.iloc[0]["limit_fraction"])


def test_answer_judges_staged_formats_with_their_download(table):
    jobs = answer.s3_jobs({"s3": table})
    assert [j.name for j in jobs] == [
        "shuffled epochs from object storage, 10 ms round trip, 1,000 Mbit/s"
    ]
    rows = answer.candidates(jobs[0], {"s3": table}, "cifar32").set_index("format")
    assert rows.loc["lmdb", "value"] == pytest.approx(4_000)  # not 50,000: the download counts
    assert "tar" not in rows.index  # its streamed epoch: a shuffle buffer is not a shuffle
    assert answer.judge(jobs[0], {"s3": table}, "cifar32")["winner"] == "lmdb"


def test_a_library_scheduled_reader_is_held_to_the_deepest_probe():
    row = _row("lance", "read_epoch", access="range", readers=2, rif=1, pattern="shuffled",
               images_per_s=300.0, in_flight_by="library")  # fmt: skip
    df = s3_table([row], [_probe()])
    assert df.iloc[0]["limit"] == "small-object GETs/s, 2 x up to 16 in flight"  # not 2 x 1
    assert df.iloc[0]["limit_fraction"] == pytest.approx(300 / 900)


def test_summary_section_and_limits(table):
    lines = "\n".join(s3_md(table, probe_table([_probe()])))
    assert "| png | 10 ms |" in lines and "200 @ 4 (0.44, 1)" in lines
    lim = probe_table([_probe()])
    assert set(lim["path"]) == {"proxy", "direct"}
    assert lim.loc[lim["path"] == "direct", "small_get_per_s_r1_q1"].iloc[0] == 300.0
