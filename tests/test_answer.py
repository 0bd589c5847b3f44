"""'Which format for which job' (imgbench.report.answer): winners, ties, reasons, plain numbers,
"not measured" rows, the README block and its markers, the figures; and the README's block
against the committed reference run (when one is published)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from imgbench.report import answer
from imgbench.report.answer import (
    JOBS,
    Job,
    answer_table,
    is_tie,
    plain,
    readme_answer,
)
from imgbench.report.summary import which_format

ROOT = Path(__file__).resolve().parents[1]
#: one format of every family, plus a second array format
FMTS = {"png": 8.0, "lmdb": 2.0, "hdf5": 1.0, "npy": 1.5, "tar": 3.0, "feather": 4.0}


def _summary_row(fmt: str, op: str, cache: str, n: int, med: float, **kw: object) -> dict:
    return {
        "data": "cifar32",
        "format": fmt,
        "mode": "tuned",
        "operation": op,
        "cache": cache,
        "n_images": n,
        "median_s": med,
        "min_s": med * 0.98,
        "max_s": med * 1.02,
        "n_samples": 3,
        "repeats": 3,
        "spread": 0.04,
        "cpu_user_s": med * 0.1,
        "cpu_sys_s": med * 0.1,
        "threads": 1,
        "cache_scope": "resident" if cache == "warm" else "data",
        **kw,
    }


def summary(over: dict | None = None) -> pd.DataFrame:
    """Every format: write and read 100 and 1,000 images, one image; cifar128 says the
    opposite (it must not count)."""
    rows = []
    for fmt, t in FMTS.items():
        for n in (100, 1000):
            rows.append(_summary_row(fmt, "write_many", "none", n, t * n / 1000))
            for cache, k in (("warm", 1.0), ("cold", 3.0)):
                rows.append(_summary_row(fmt, "read_many", cache, n, k * t * n / 2000))
        rows.append(_summary_row(fmt, "read_one", "warm", 1, t * 1e-5))
        rows.append(_summary_row(fmt, "write_one", "none", 1, t * 1e-4))
    rows += [{**r, "data": "cifar128", "median_s": 1 / r["median_s"]} for r in list(rows)]
    df = pd.DataFrame(rows)
    for (fmt, op, cache), values in (over or {}).items():
        m = (df["format"] == fmt) & (df["operation"] == op) & (df["cache"] == cache)
        m &= df["data"] == "cifar32"
        for k, v in values.items():
            df.loc[m, k] = v
    return df


def access() -> pd.DataFrame:
    rows = []
    for fmt, t in FMTS.items():
        for cache in ("warm", "cold"):
            for readers in (1, 2):
                med = t / readers if fmt != "png" else t  # png does not scale
                med *= 2 if cache == "cold" else 1
                rows.append(
                    {
                        "data": "cifar32",
                        "format": fmt,
                        "mode": "tuned",
                        "pattern": "shuffled",
                        "reader_kind": "process",
                        "readers": readers,
                        "cache": cache,
                        "cache_scope": "resident",
                        "epoch_images": 1000,
                        "median_s": med,
                        "min_s": med * 0.99,
                        "max_s": med * 1.01,
                        "n_samples": 2,
                    }
                )
    return pd.DataFrame(rows)


def capped() -> pd.DataFrame:
    rows = []
    for fmt, t in FMTS.items():
        for advice, gain in (("default", 1.0), ("random", 1.5)):
            rate = 1000 / t * gain
            rows.append(
                {
                    "data": "cifar32",
                    "format": fmt,
                    "mode": "tuned",
                    "pattern": "shuffled",
                    "reader_kind": "process",
                    "readers": 2,
                    "advice": advice,
                    "io_depth": 1,
                    "cache": "capped",
                    "images_per_s": rate,
                    "images_per_s_min": rate * 0.9,
                    "images_per_s_max": rate * 1.1,
                    "device_ios_per_image": 1.2,
                    "device_bytes_per_image": 36864.0,
                    "limit": "random_4k_iops_qd32",
                    "limit_fraction": rate / 1500,
                    "not_measured": None,
                }
            )
    return pd.DataFrame(rows)


def disk() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"data": "cifar32", "format": f, "mode": "tuned", "n_images": n,
             "kib_allocated": n * (3 + i), "image_bytes": 3072.0}
            for i, f in enumerate(FMTS)
            for n in (100, 1000)
        ]
    )  # fmt: skip


def tables(**over: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"summary": summary(), "access": access(), "capped": capped(), "disk": disk(), **over}


def row(table: pd.DataFrame, job: str) -> pd.Series:
    return table.set_index("job").loc[job]


def test_plain_numbers_never_scientific():
    assert plain(117_123.4) == "117,100"
    assert plain(2.3) == "2.3"
    assert plain(3072) == "3,072"
    assert plain(0.000012345) == "0.00001234"  # 4 significant digits, no exponent
    assert plain(float("nan")) == ""
    assert answer.ratio_text(1.1534) == "1.15x"


def test_winners_ratio_runner_up_and_families():
    t = answer_table(tables(), "cifar32")
    w = row(t, "write once (durable)")
    # hdf5 1.0 s, npy 1.5 s for 1,000 images: 1,000 and 666.7 images/s, ranges apart
    assert (w["winner"], w["measured"]) == ("hdf5", "1,000 images/s")
    assert w["runner-up"] == "npy 666.7 images/s" and w["ratio"] == "1.50x"
    fams = w["per family"].split("; ")
    assert [f.split(":")[0] for f in fams] == ["files", "key-value", "array", "columnar", "shards"]
    assert "array: hdf5 1,000" in fams and "files: png 125" in fams
    one = row(t, "one image: read (warm)")
    assert one["winner"] == "hdf5" and one["measured"] == "0.01 ms"  # lower is better
    d = row(t, "disk per image")
    assert d["winner"] == "png" and d["measured"] == "3,072 B"
    assert "1x the pixels" in d["reason"]


def test_epochs_take_each_format_at_its_best_setting():
    t = answer_table(tables(), "cifar32")
    e = row(t, "shuffled epochs, warm")
    assert e["winner"] == "hdf5" and e["measured"] == "2,000 images/s"
    assert e["reason"].startswith("2 readers;")
    c = row(t, "shuffled epochs, store 5x the page cache")
    assert c["winner"] == "hdf5" and c["measured"] == "1,500 images/s"
    assert "advice random" in c["reason"] and "device-bound: 100 %" in c["reason"]
    assert "1.2 device reads and 36,860 B per image" in c["reason"]
    # readahead: few images/s, but the device read near its sequential bandwidth
    cap = capped().assign(limit_fraction=0.1, bandwidth_fraction=0.9)
    c = row(answer_table(tables(capped=cap), "cifar32"), "shuffled epochs, store 5x the page cache")
    assert "device-bound: 90 % of its sequential bandwidth" in c["reason"], c["reason"]
    cap = capped().assign(limit_fraction=0.1, bandwidth_fraction=0.2)
    c = row(answer_table(tables(capped=cap), "cifar32"), "shuffled epochs, store 5x the page cache")
    assert "below the device limit: 20 %" in c["reason"], c["reason"]


def test_tie_when_ranges_overlap_or_within_five_percent_of_few_samples():
    close = {("npy", "write_many", "none"): {"median_s": 1.02, "min_s": 0.99, "max_s": 1.05}}
    t = answer_table(tables(summary=summary(close)), "cifar32")
    assert row(t, "write once (durable)")["ratio"] == "tie (1.02x)"
    # the same medians with narrow ranges: apart
    apart = {("npy", "write_many", "none"): {"median_s": 1.02, "min_s": 1.019, "max_s": 1.021}}
    s = summary({**apart, ("hdf5", "write_many", "none"): {"min_s": 0.999, "max_s": 1.001}})
    t = answer_table(tables(summary=s), "cifar32")
    assert row(t, "write once (durable)")["ratio"] == "1.02x"

    def pair(a: float, b: float, n: int) -> bool:
        mk = lambda v: pd.Series({"value": v, "lo": v * 0.5, "hi": v * 1.5, "samples": n})  # noqa: E731
        return is_tie(mk(a), mk(b))

    assert pair(100, 104, 2) and not pair(100, 106, 2)  # two samples: the 5 % rule
    assert pair(100, 140, 3)  # three: the ranges overlap


def test_reasons_say_what_bound_the_winner():
    cpu = {("hdf5", "read_many", "warm"): {"cpu_user_s": 0.49, "cpu_sys_s": 0.0}}
    t = answer_table(tables(summary=summary(cpu)), "cifar32")
    r = row(t, "full read, warm")["reason"]
    assert r.startswith("CPU-bound: user CPU 98 % of 1 thread"), r
    kern = {("hdf5", "read_many", "cold"): {"cpu_user_s": 0.1, "cpu_sys_s": 1.4, "threads": 1}}
    t = answer_table(tables(summary=summary(kern)), "cifar32")
    assert row(t, "full read, cold")["reason"].startswith("kernel-bound: system CPU 93 %")
    w = row(t, "write once (durable)")["reason"]
    assert w.startswith("waiting (device, sync or lock): CPU busy 20 %"), w
    assert row(t, "shuffled epochs, cold")["reason"].endswith(
        "CPU time not measured for these rows"
    )


def test_epoch_reasons_count_every_reader():
    acc = access().assign(cpu_user_s=lambda d: d["median_s"] * 1.8, cpu_sys_s=0.01)
    r = row(answer_table(tables(access=acc), "cifar32"), "shuffled epochs, warm")["reason"]
    # 2 readers busy 90 % of the epoch each: CPU-bound; 1.8 x wall would be 180 % of one
    assert r.startswith("2 readers; CPU-bound: user CPU 90 % of 2 readers x wall time"), r


def test_one_data_set_only():
    s = summary()
    t = answer_table(tables(summary=s[s["data"] == "cifar128"]), "cifar32")
    assert row(t, "write once (durable)")["winner"] == "not measured"
    t = answer_table(tables(), "cifar128")  # the inverted times: png wins there
    assert row(t, "write once (durable)")["winner"] == "png"


def test_missing_tables_say_not_measured():
    t = answer_table({"summary": summary()}, "cifar32")
    assert len(t) == len(JOBS)
    for job in ("shuffled epochs, warm", "disk per image", "accelerators fed at AU >= 90 % (warm)"):
        assert row(t, job)["winner"] == "not measured" and "no " in row(t, job)["reason"]
    gone = capped().assign(not_measured="no memory controller usable (not root)")
    t = answer_table(tables(capped=gone), "cifar32")
    c = row(t, "shuffled epochs, store 5x the page cache")
    assert c["winner"] == "not measured" and c["reason"] == "no memory controller usable (not root)"
    # an empty table without columns (what an absent CSV reads as) is no crash either
    assert len(answer_table({"access": pd.DataFrame()}, "cifar32")) == len(JOBS)


def test_payload_and_au_rows_when_measured():
    payload = pd.DataFrame(
        [{"data": "cifar32_encoded", "pixels_data": "cifar32", "format": f, "n_images": 1000,
          "cache": "warm", "pixels_read_s": 0.5, "encoded_read_decode_s": t,
          "decode_vs_pixels": t / 0.5} for f, t in (("png", 2.0), ("lmdb", 1.0))]
    )  # fmt: skip
    au = pd.DataFrame(
        [{"data": "cifar32", "format": f, "mode": "tuned", "reader_kind": "process",
          "readers": 2, "cache": "warm", "computation_time": 0.016, "batch_size": 256,
          "loader_images_per_s": k * 14_400.0, "accelerators_at_90": float(k)}
         for f, k in (("lmdb", 3), ("npy", 3), ("png", 1))]
    )  # fmt: skip
    t = answer_table(tables(payload=payload, au=au), "cifar32")
    p = row(t, "your JPEG/PNG folder: stored encoded, read warm and decoded")
    assert p["winner"] == "lmdb" and p["measured"] == "1,000 images/s"
    assert "stored as pixels: 2,000 images/s" in p["reason"] and "2.00x" in p["reason"]
    a = row(t, "accelerators fed at AU >= 90 % (warm)")
    assert a["measured"] == "3 accelerators" and a["ratio"] == "tie (1.00x)"
    assert a["reason"] == "2 readers; loader 43,200 images/s; 16 ms compute per batch of 256 images"


def test_a_new_job_is_one_entry():
    job = Job(
        "full read, warm, 100 images",
        "summary",
        "rate",
        True,
        {"mode": "tuned", "operation": "read_many", "cache": "warm", "n_images": 100},
    )
    t = answer_table(tables(), "cifar32", [*JOBS, job])
    assert row(t, job.name)["winner"] == "hdf5"


def test_summary_section_renders_plain_numbers():
    text = "\n".join(
        which_format(summary(), disk(), access(), "cifar32", capped=capped(), au=pd.DataFrame())
    )
    assert text.startswith("## Which format for which job")
    assert "| write once (durable)" in text and "data set `cifar32`" in text
    assert not re.search(r"\d[eE][+-]?\d", text), "scientific notation in the table"


def test_csv_round_trip_renders_the_same_table(tmp_path):
    """The README reads the CSVs, summary.md the tables in memory: the same answer."""
    t = tables()
    for name, df in t.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    loaded = answer.load_tables(tmp_path)
    assert answer.main_data(loaded) == "cifar32"
    assert answer.answer_lines(loaded, "cifar32") == answer.answer_lines(t, "cifar32")


def _published(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, df in tables().items():
        df.to_csv(folder / f"{name}.csv", index=False)
    prov = {
        "created": "2025-01-02T03:04:05+00:00",
        "cpu": {"model": "Test CPU", "logical_cores": 2},
        "memory": {"total_bytes": 24 * 2**30},
        "filesystem": {"fstype": "ext4"},
        "git": {"commit": "0123456789abcdef0123", "dirty": False},
    }
    (folder / "provenance.json").write_text(json.dumps(prov))
    return folder


def test_readme_block_names_the_run(tmp_path):
    run = _published(tmp_path / "docs" / "results" / "cpu-2c-24g-ext4")
    block = readme_answer(run, run / "provenance.json")
    assert block.splitlines()[0] == (
        "Reference run `cpu-2c-24g-ext4` (Test CPU, 2 cores, 24 GiB, ext4), 2025-01-02, "
        "commit `0123456789ab`, data `cifar32`, 1,000 images."
    )
    assert "| write once (durable)" in block


def test_figures_render(tmp_path):
    from imgbench.report.figures import write_figures

    tdir = tmp_path / "tables"
    tdir.mkdir()
    for name, df in {**tables(), "au": pd.DataFrame({"cache": []})}.items():
        df.to_csv(tdir / f"{name}.csv", index=False)
    out = {n: tmp_path / f"{n}.png" for n in ("answer", "capped")}
    write_figures(tdir / "summary.csv", tdir / "disk.csv", tdir / "access.csv", tdir / "au.csv",
                  dpi=40, **out)  # fmt: skip
    for p in out.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
        p.unlink()
    for name in ("summary", "disk", "access", "capped"):  # a run that measured nothing of it
        pd.DataFrame(columns=["data", "format", "mode", "cache", "operation", "n_images"]).to_csv(
            tdir / f"{name}.csv"
        )
    write_figures(tdir / "summary.csv", tdir / "disk.csv", tdir / "access.csv", tdir / "au.csv",
                  dpi=40, **out)  # fmt: skip
    assert all(p.exists() for p in out.values())


def test_time_boxed_and_remote_reasons_say_how_many_cores_the_readers_kept_busy():
    from imgbench.report import reasons

    row = pd.Series({"cpu_cores": 1.8, "cores": 2, "cpu_user_s": 20.0, "cpu_sys_s": 7.0})
    said = reasons.cores(row, "the client")
    assert said.startswith("CPU-bound: the client kept 1.8 of 2 cores busy")
    assert "user 20 s, system 7 s" in said
    assert not reasons.cores(row.drop("cpu_cores"), "readers")  # not measured: nothing said
    calm = row.copy()
    calm["cpu_cores"] = 0.4
    assert reasons.cores(calm, "readers").startswith("readers kept 0.4 of 2 cores busy")
    capped = pd.Series({"limit_fraction": 0.47, "limit": "random_4k_iops_qd32", **calm})
    assert reasons.device(capped).endswith(
        "readers kept 0.4 of 2 cores busy (user 20 s, system 7 s)"
    )
