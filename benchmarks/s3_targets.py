"""Issue 24's targets and per-format facts, from an S3 run's s3.csv and limits.csv.

Prints, per format and round trip: upload seconds; full read images/s; the best shuffled
epoch with 1 and 2 readers (images/s, at which requests in flight, as a fraction of the
probe's matching limit, requests per image; a staged format with its download counted);
tar's streamed epochs; the client's CPU (cores kept busy) of the full read and of the best
2-reader epoch; the probe's limits; then the two targets at the given round trip
(default 10 ms), 2 readers:

* PNG (one object per image) at its best requests in flight reaches >= 50 % of the probe's
  small-object GET rate at that depth;
* the best sharded or columnar read (streamed shards, or a whole-store read) reaches >= 50 %
  of the probe's large-object bandwidth (bytes: images/s x stored bytes per image).

Every number is read from the run's tables; nothing is typed in.

    python benchmarks/s3_targets.py docs/results/s3/<machine>   # or results/s3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

#: sharded and columnar formats (the second target's candidates)
SHARDED_COLUMNAR = ("tar", "parquet", "feather", "lance", "zarr")


def _pct(x: float) -> str:
    return "" if pd.isna(x) else f"{x * 100:.0f} %"


def _cores(row: pd.Series) -> str:
    """The client's CPU over the row's wall time, in cores of the job's (e.g. 1.4/2)."""
    busy, cores = row.get("cpu_cores"), row.get("cores")
    return "" if pd.isna(busy) or pd.isna(cores) else f"{busy:.2f}/{int(cores)}"


def per_format(df: pd.DataFrame) -> pd.DataFrame:
    """One row per format and round trip: upload, full read, best epochs per reader count."""
    rows = []
    for (fmt, lat), g in df.groupby(["format", "latency_ms"]):
        up = g[g["operation"] == "write_many"]
        full = g[g["operation"] == "read_many"]
        row = {
            "format": fmt,
            "latency_ms": lat,
            "access": ", ".join(sorted(set(g.loc[g["operation"] != "write_many", "access"]))),
            "upload_s": round(float(up["upload_s"].iloc[0]), 2) if len(up) else None,
            "full_read_img_s": round(float(full["images_per_s"].iloc[0])) if len(full) else None,
            "full_read_of_limit": _pct(full["limit_fraction"].iloc[0]) if len(full) else "",
            "full_read_cores": _cores(full.iloc[0]) if len(full) else "",
        }
        for r in (1, 2):
            ep = g[(g["operation"] == "read_epoch") & (g["readers"] == r)]
            ep = ep[ep["pattern"] == "shuffled"].dropna(subset=["images_per_s"])
            if not len(ep):
                continue
            staged = ep["access"].eq("staged").all()
            metric = "images_per_s_with_stage" if staged else "images_per_s"
            b = ep.loc[ep[metric].idxmax()]
            row[f"epoch_{r}r_img_s"] = round(float(b[metric]))
            row[f"epoch_{r}r_rif"] = int(b["requests_in_flight"])
            row[f"epoch_{r}r_of_limit"] = _pct(b["limit_fraction"])
            row[f"epoch_{r}r_req_per_img"] = round(float(b["requests_per_image"]), 3)
            if r == 2:
                row["epoch_2r_cores"] = _cores(b)
        rows.append(row)
    return pd.DataFrame(rows)


def streamed(df: pd.DataFrame) -> pd.DataFrame:
    """The streamed epochs (tar's whole shards through a shuffle buffer), whole epochs."""
    st = df[df["pattern"] == "buffered"]
    cols = ["format", "latency_ms", "readers", "images_per_s", "limit_fraction",
            "requests_per_image"]  # fmt: skip
    out = st[cols].copy()
    out["images_per_s"] = out["images_per_s"].round()
    out["limit_fraction"] = out["limit_fraction"].map(_pct)
    return out


def targets(df: pd.DataFrame, lat: float) -> list[str]:
    """The two targets at round trip *lat*, 2 readers."""
    at = df[(df["latency_ms"] == lat) & (df["readers"] == 2) & (df["operation"] == "read_epoch")]
    out = []
    png = at[at["format"] == "png"].dropna(subset=["limit_fraction"])
    if len(png):
        b = png.loc[png["images_per_s"].idxmax()]
        ok = "met" if b["limit_fraction"] >= 0.5 else "NOT met"
        out.append(
            f"PNG, {lat:g} ms, 2 readers, best at {int(b['requests_in_flight'])} in flight: "
            f"{b['images_per_s']:,.0f} images/s = {_pct(b['limit_fraction'])} of "
            f"{b['limit']} ({b['limit_value']:,.0f}): target >= 50 % {ok}"
        )
    big = df[(df["latency_ms"] == lat) & df["format"].isin(SHARDED_COLUMNAR)]
    big = big[big["limit"].astype(str).str.startswith("large-object")]
    big = big[(big["operation"] == "read_many") | (big["readers"] == 2)]
    big = big.dropna(subset=["limit_fraction"])
    if len(big):
        b = big.loc[big["limit_fraction"].idxmax()]
        ok = "met" if b["limit_fraction"] >= 0.5 else "NOT met"
        what = "full read" if b["operation"] == "read_many" else f"{b['pattern']} epoch, 2 readers"
        out.append(
            f"best sharded/columnar at {lat:g} ms: {b['format']} {what}, "
            f"{b['images_per_s']:,.0f} images/s = {_pct(b['limit_fraction'])} of the "
            f"large-object bandwidth: target >= 50 % {ok}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="folder with s3.csv and limits.csv")
    ap.add_argument("--latency-ms", type=float, default=10.0)
    args = ap.parse_args()
    df = pd.read_csv(args.run / "s3.csv")
    print(per_format(df).to_markdown(index=False))
    print()
    print(streamed(df).to_markdown(index=False))
    print()
    lim = pd.read_csv(args.run / "limits.csv")
    print(
        lim.drop(columns=[c for c in lim.columns if lim[c].isna().all()]).to_markdown(index=False)
    )
    print()
    for line in targets(df, args.latency_ms):
        print("- " + line)


if __name__ == "__main__":
    main()
