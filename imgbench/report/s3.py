"""Object storage's table (s3.csv), its summary section and its figure (issue 24).

Every S3 row is put beside the object store's own limit at the same round trip and
bandwidth, probed in the same run (:mod:`imgbench.experiments.s3_limits`):

* ``object`` and ``range`` epoch rows (one GET per image or per range): images/s over the
  small-object GET rate with the same readers and up to the same requests in flight (the
  best probed depth not above it); with one request per image,
  1.0 is the most a format can reach; ``requests_per_image`` says how many GETs an image cost
  (a PNG full read likewise, one reader);
* ``stream`` rows (whole shards) and full reads of the other formats (whole objects or large
  ranges): images/s over the large-object bandwidth expressed as images/s (MB/s / stored
  bytes per image);
* ``staged`` rows: the download's MB/s over the large-object bandwidth; the epoch after it is
  a local read (``images_per_s_with_stage`` counts the download in one epoch).

Uploads are not probed (no PUT limit): their rows carry MB/s and objects/s only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgbench.report.capped import cpu_columns
from imgbench.report.load import provenance

#: the table's columns, in order (extra keys of the results are left out)
COLUMNS = [
    "data", "format", "mode", "operation", "storage", "latency_ms", "bandwidth_mbps",
    "readers", "requests_in_flight", "in_flight_by", "access", "pattern", "n_images",
    "images_per_s",
    "images_per_s_min", "images_per_s_max", "n_samples", "requests_per_image",
    "bytes_per_image", "limit", "limit_value", "limit_fraction", "stage_s", "stage_bytes",
    "images_per_s_with_stage", "upload_s", "upload_mb_s", "objects", "store_bytes", "au",
    "computation_time", "epoch_ended", "not_measured", "verified", "cpu_user_s", "cpu_sys_s",
    "cpu_cores", "cores", "server", "durability", "commit", "dirty",
]  # fmt: skip


def _rates(r: dict) -> tuple[float | None, float | None, float | None]:
    """images/s and its range: the median over the samples (seconds for n images)."""
    x = r.get("extra", {})
    n = r["n_images"]
    if r["operation"] == "train":  # its sample is one run of au_batches batches
        return x.get("images_per_s"), None, None
    samples = [s for s in r.get("samples") or [] if s and s > 0]
    if not samples:
        return x.get("images_per_s"), None, None
    rates = [n / s for s in samples]
    return x.get("images_per_s") or float(np.median(rates)), min(rates), max(rates)


def _seconds(r: dict) -> float | None:
    """The wall time a row's CPU was spent in: its window (time-boxed epochs) or its median
    whole pass."""
    samples = r.get("samples") or []
    return r.get("extra", {}).get("window_seconds") or (
        float(np.median(samples)) if samples else None
    )


def _net(r: dict) -> tuple[float, float]:
    x = r["extra"]
    return float(x["latency_ms"]), float(x["bandwidth_mbps"])


def _limit(row: dict, probe: dict | None, store_bytes: float | None) -> None:
    """The matching limit of one row, in place (limit, limit_value, limit_fraction)."""
    if probe is None or row["operation"] == "write_many":
        row["limit"] = "not probed" if probe is None else "no PUT limit probed"
        return
    x = probe["extra"]
    ips = row.get("images_per_s")
    whole = row["operation"] == "read_many" and row["access"] != "object"
    if row["access"] in ("object", "range") and row["operation"] != "train" and not whole:
        depth = int(row["requests_in_flight"])
        probed = {tuple(int(v) for v in k[1:].split("_q")): rate
                  for k, rate in x["small_get_per_s"].items()}  # fmt: skip
        if row.get("in_flight_by") == "library":  # its own scheduler: the deepest probed
            depth = max(q for _, q in probed)
        readers = int(row.get("readers") or 1)
        # the most the client got with up to this many requests in flight (a reader at
        # depth q could keep fewer going; the probe's own rate dips at 64 threads per core)
        at = [rate for (r, q), rate in probed.items() if r == readers and q <= depth]
        rate = max(at) if at else None
        row["limit"] = f"small-object GETs/s, {readers} x up to {depth} in flight"
        row["limit_value"] = rate
        row["limit_fraction"] = ips / rate if ips and rate else None
    elif row["access"] in ("stream", "range") and store_bytes and row["operation"] != "train":
        # whole shards, or a whole store read in large ranges: bytes are the limit
        per_image = store_bytes / row["n_images"]
        cap = x["large_get_mb_s"] * 1e6 / per_image
        row["limit"] = "large-object bandwidth, as images/s"
        row["limit_value"] = cap
        row["limit_fraction"] = ips / cap if ips else None
    elif row["access"] == "staged" and row.get("stage_s") and store_bytes:
        mb_s = store_bytes / row["stage_s"] / 1e6
        row["limit"] = "large-object bandwidth (the download)"
        row["limit_value"] = x["large_get_mb_s"]
        row["limit_fraction"] = mb_s / x["large_get_mb_s"]


def s3_table(results: list[dict], probes: list[dict]) -> pd.DataFrame:
    """One row per S3 result, beside the probe's matching limit."""
    by_net = {_net(p): p for p in probes}
    uploads = {
        (r["format"], *_net(r)): r["extra"].get("store_bytes")
        for r in results
        if r["operation"] == "write_many"
    }
    rows = []
    for r in results:
        x = r.get("extra", {})
        ips, lo, hi = _rates(r)
        if r["operation"] == "write_many":
            ips = lo = hi = None
        row: dict[str, Any] = {
            **{k: r.get(k) for k in ("data", "format", "mode", "operation", "n_images")},
            **{k: x.get(k) for k in COLUMNS if k in x},
            "images_per_s": ips,
            "images_per_s_min": lo,
            "images_per_s_max": hi,
            "n_samples": len(r.get("samples") or []),
            "verified": r.get("verified"),
            **cpu_columns(r, _seconds(r)),
            **provenance(r),
        }
        if r["operation"] == "write_many":
            row["upload_s"] = (r.get("samples") or [None])[0]
        if r["operation"] == "train":
            row["computation_time"] = x.get("computation_time")
        lat, bw = _net(r)
        _limit(row, by_net.get((lat, bw)), uploads.get((r["format"], lat, bw)))
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(
        ["latency_ms", "operation", "format", "readers", "requests_in_flight"],
        kind="stable",
        ignore_index=True,
    )


def probe_table(probes: list[dict]) -> pd.DataFrame:
    """The limits per network setting, and the proxy's own cost beside going direct."""
    rows = []
    for p in probes:
        x = p["extra"]
        lat, bw = _net(p)
        rows.append(
            {
                "path": "proxy",
                "latency_ms": lat,
                "bandwidth_mbps": bw,
                **{f"small_get_per_s_{k}": v for k, v in x["small_get_per_s"].items()},
                "large_get_mb_s": x["large_get_mb_s"],
                "one_get_ms": x["one_get_ms"],
            }
        )
        for o in x.get("proxy_overhead", []):  # at 0 ms, unlimited; one reader
            rates = {f"small_get_per_s_r1_q{k[len('small_get_per_s_qd'):]}": v
                     for k, v in o.items() if k.startswith("small_get_per_s_qd")}  # fmt: skip
            rows.append({"path": o["path"], "latency_ms": 0.0, "bandwidth_mbps": 0.0, **rates,
                         "large_get_mb_s": o["large_get_mb_s"],
                         "measured_with": f"the {lat:g} ms probe"})  # fmt: skip
    return pd.DataFrame(rows)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float | int | np.floating | np.integer):
        return f"{float(v):,.{digits}g}" if abs(float(v)) < 1000 else f"{float(v):,.0f}"
    return str(v)


def s3_md(table: pd.DataFrame, probes: pd.DataFrame) -> list[str]:
    """summary.md's section: per format and latency, upload, full read, and the best
    shuffled epoch with 1 and 2 readers, each as a fraction of its limit."""
    if not len(table):
        return []
    out = [
        "## Object storage (S3)",
        "",
        "Tuned stores uploaded to the run's S3 server and read back through a proxy with "
        "the stated round trip and bandwidth. Fraction = images/s over the probe's "
        "matching limit in the same run (small-object GETs/s at the same readers x "
        "requests in flight; large-object bandwidth for streamed and staged reads).",
        "",
    ]
    lines = [
        "| format | latency | upload s | full read img/s (fraction) | epoch 1 reader "
        "img/s @ rif (fraction, req/img) | epoch 2 readers | access |",
        "|---|---|---|---|---|---|---|",
    ]
    for (fmt, lat), g in table.groupby(["format", "latency_ms"], sort=True):
        up = g[g["operation"] == "write_many"]
        full = g[g["operation"] == "read_many"]
        ep = g[(g["operation"] == "read_epoch") & (g["pattern"] == "shuffled")]

        def best(r: int, ep: pd.DataFrame = ep) -> str:
            e = ep[ep["readers"] == r].dropna(subset=["images_per_s"])
            if not len(e):
                return ""
            b = e.loc[e["images_per_s"].idxmax()]
            return (
                f"{_fmt(b['images_per_s'])} @ {int(b['requests_in_flight'])} "
                f"({_fmt(b['limit_fraction'], 2)}, {_fmt(b['requests_per_image'], 2)})"
            )

        fr = full.iloc[0] if len(full) else None
        read = f"{_fmt(fr['images_per_s'])} ({_fmt(fr['limit_fraction'], 2)})" if len(full) else ""
        upload = _fmt(up["upload_s"].iloc[0]) if len(up) else ""
        access = ", ".join(sorted(set(g.loc[g["operation"] != "write_many", "access"].dropna())))
        lines.append(
            f"| {fmt} | {lat:g} ms | {upload} | {read} | {best(1)} | {best(2)} | {access} |"
        )
    out += lines + [""]
    if len(probes):
        out += ["Limits (probe, same run):", "", probes.to_markdown(index=False), ""]
    return out


def s3_figure(table: pd.DataFrame) -> Any:
    """images/s against requests in flight per format, one panel per round trip (2 readers
    solid, 1 reader dashed; one colour per format), log-log. A staged format is drawn with its
    download counted in one epoch (as the answer judges it); a format that keeps its own
    depth (Lance) or one request at a time (HDF5) is one point at 1."""
    import matplotlib.pyplot as plt

    from imgbench.stores import FORMATS

    ep = table[(table["operation"] == "read_epoch") & (table["pattern"] == "shuffled")].copy()
    staged = ep["access"].eq("staged")
    ep.loc[staged, "images_per_s"] = ep.loc[staged, "images_per_s_with_stage"]
    lats = sorted(ep["latency_ms"].dropna().unique()) or [0.0]
    fig, axes = plt.subplots(1, len(lats), figsize=(5.5 * len(lats), 5.2), squeeze=False)
    names = list(FORMATS)
    for ax, lat in zip(axes[0], lats, strict=True):
        sel = ep[ep["latency_ms"] == lat].dropna(subset=["images_per_s"])
        for (fmt, readers), g in sel.groupby(["format", "readers"]):
            g = g.sort_values("requests_in_flight")
            how = {"staged": ", staged, download counted"}.get(str(g["access"].iloc[0]), "")
            ax.plot(g["requests_in_flight"], g["images_per_s"], "-o" if readers > 1 else "--x",
                    color=plt.cm.tab20(names.index(fmt) % 20 if fmt in names else 19),
                    label=f"{fmt} ({int(readers)} reader{'s' * (readers > 1)}{how})")  # fmt: skip
        title = f"shuffled epochs from S3, {lat:g} ms round trip"
        ax.set(xscale="log", yscale="log", xlabel="requests in flight per reader",
               ylabel="images/s", title=title)  # fmt: skip
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.22, 1, 1))
    return fig


def write_s3_report(
    s3_runs: list[Path],
    s3_probes: list[Path],
    table: Path,
    probes: Path,
    markdown: Path,
    figure: Path,
) -> None:
    """The S3 command's own report (rule s3_report): the table, the limits, the summary
    section and the figure from the S3 jobs alone, without the local run's tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imgbench.core.atomic import atomic_path
    from imgbench.report.load import load, read_results
    from imgbench.report.select import ReportError

    if not s3_runs:
        raise ReportError(
            "no S3 experiments in this run: s3_formats is empty. Use --workflow-profile "
            "profiles/s3 (a --config on the command line replaces the profile's config: "
            "repeat its keys there)"
        )
    s3 = s3_table(load(s3_runs), read_results(s3_probes))
    lim = probe_table(read_results(s3_probes))
    for df, path in ((s3, table), (lim, probes)):
        with atomic_path(Path(path)) as tmp:
            df.to_csv(tmp, index=False)
    with atomic_path(Path(markdown)) as tmp:
        tmp.write_text("\n".join(s3_md(s3, lim)))
    fig = s3_figure(s3)
    with atomic_path(Path(figure)) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(figure).suffix.lstrip("."))
    plt.close(fig)
