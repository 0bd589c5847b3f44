"""The rules deciding the article's claims, one function per claim (or per family of claims).

Why apart from the claims' table: a rule is arithmetic over :class:`Run` lookups and the
margins of :mod:`imgbench.report.judging`; :mod:`imgbench.report.claims_data` says which rule
decides which claim and why.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from imgbench.report.judging import (
    DISK_TIE,
    DRASTIC_MIN,
    EPOCHS,
    FORMATS,
    GAP_MIN,
    LARGE_MIN,
    LAZY_FRACTION,
    LAZY_MAX_BYTES,
    SCALING_EFFICIENCY,
    SLIGHT_MAX,
    TRIVIAL_S,
    Missing,
    Outcome,
    Run,
    Time,
    compare,
    faster,
    fmt_times,
    larger,
    ratio,
    tally,
    times,
)
from imgbench.report.select import ANY, select


def single_store_fast(run: Run) -> Outcome:
    """Every format's durable write_one under TRIVIAL_S."""
    t = times(run, "write_one", 1)
    checks = {f"{f.upper()} < {TRIVIAL_S * 1e3:g} ms": t[f].median < TRIVIAL_S for f in t}
    return tally(checks, fmt_times(t, ms=True))


def single_store_lmdb_edge(run: Run) -> Outcome:
    """LMDB's write_one fastest beyond the spread, by less than SLIGHT_MAX."""
    t = times(run, "write_one", 1)
    edge = ratio(min(t["png"].median, t["hdf5"].median), t["lmdb"].median)
    numbers = f"{fmt_times(t, ms=True)}; edge {edge:.2f}x"
    ahead = [faster(t["lmdb"], t[f]) for f in ("png", "hdf5")]
    if False in ahead:
        return "fails", numbers + "; LMDB not fastest beyond the spread"
    if None in ahead:
        return "not tested", numbers + "; a spread is unknown: no difference called real"
    if edge >= SLIGHT_MAX:
        return "mixed", numbers + f"; an edge, but not slight (>= {SLIGHT_MAX:g}x)"
    return "holds", numbers


def single_disk_lmdb(run: Run) -> Outcome:
    """A one-image LMDB store larger than PNG's and HDF5's, in both units."""
    single = run.extra("single_disk")
    sizes = {}
    for f in FORMATS:
        d = single.get((f, run.mode))
        if not d:
            raise Missing(f'extras["single_disk"][("{f}", "{run.mode}")]')
        sizes[f] = (float(d["kib_allocated"]), float(d["apparent_bytes"]))
    return larger(sizes, [("lmdb", "png"), ("lmdb", "hdf5")])


def single_read_png(run: Run) -> Outcome:
    """PNG's warm read_one fastest, by less than SLIGHT_MAX; all trivially fast."""
    t = times(run, "read_one", 1)
    ahead = {f"PNG faster than {f.upper()}": faster(t["png"], t[f]) for f in ("lmdb", "hdf5")}
    edge = ratio(max(t["lmdb"].median, t["hdf5"].median), t["png"].median)
    numbers = f"{fmt_times(t, ms=True)}; PNG edge up to {edge:.2f}x"
    if all(v is False for v in ahead.values()):
        return "fails", numbers
    checks = {
        **ahead,
        f"edge < {SLIGHT_MAX:g}x": edge < SLIGHT_MAX,
        f"all < {TRIVIAL_S * 1e3:g} ms": all(v.median < TRIVIAL_S for v in t.values()),
    }
    return tally(checks, numbers)


def png_slow(op: str) -> Callable[[Run], Outcome]:
    """PNG at least DRASTIC_MIN times slower than LMDB and than HDF5 at the largest cutoff."""

    def rule(run: Run) -> Outcome:
        n = run.cutoffs(op)[-1]
        t = times(run, op, n)
        r = {f: ratio(t["png"].median, t[f].median) for f in ("lmdb", "hdf5")}
        checks = {f"PNG/{f.upper()} >= {DRASTIC_MIN:g}x": r[f] >= DRASTIC_MIN for f in r}
        ratios = ", ".join(f"PNG/{f.upper()} {v:.3g}x" for f, v in r.items())
        return tally(checks, f"N={n}: {fmt_times(t)}; {ratios}")

    return rule


def crossover(op: str, consistently: bool) -> Callable[[Run], Outcome]:
    """HDF5 behind LMDB at the smallest cutoff, ahead at the largest (and from then on)."""

    def rule(run: Run) -> Outcome:
        ns = run.cutoffs(op)
        if len(ns) < 2:
            raise Missing(f"a second {op} cutoff")
        pairs = [(run.time("hdf5", op, n), run.time("lmdb", op, n)) for n in ns]
        c = [compare(h, lm) for h, lm in pairs]
        checks: dict[str, bool | None] = {
            f"HDF5 slower at N={ns[0]}": None if c[0] is None else c[0] > 0,
            f"HDF5 faster at N={ns[-1]}": None if c[-1] is None else c[-1] < 0,
        }
        if consistently:
            if None in c:
                checks["never behind once ahead"] = None
            else:
                first = next((i for i, x in enumerate(c) if x < 0), None)
                checks["never behind once ahead"] = first is not None and all(
                    x <= 0 for x in c[first:]
                )
        numbers = "HDF5/LMDB " + ", ".join(
            f"N={n}: {ratio(h.median, lm.median):.3g}" for n, (h, lm) in zip(ns, pairs, strict=True)
        )
        return tally(checks, numbers)

    return rule


def png_gap(run: Run) -> Outcome:
    """PNG's write-read gap at least GAP_MIN times LMDB's and HDF5's."""
    n = run.cutoffs("write_many", "read_many")[-1]
    w, r = times(run, "write_many", n), times(run, "read_many", n)
    gap = {f: abs(w[f].median - r[f].median) for f in FORMATS}
    others = ("lmdb", "hdf5")
    checks = {
        f"PNG gap >= {GAP_MIN:g}x {f.upper()}'s": gap["png"] >= GAP_MIN * gap[f] for f in others
    }
    numbers = f"N={n}: write-read gap " + ", ".join(
        f"{f.upper()} {g:.3g} s" for f, g in gap.items()
    )
    return tally(checks, numbers)


def read_dominates(run: Run) -> Outcome:
    """EPOCHS warm reads outweigh one durable write, per format."""
    n = run.cutoffs("write_many", "read_many")[-1]
    w, r = times(run, "write_many", n), times(run, "read_many", n)
    checks = {f"{f.upper()}": EPOCHS * r[f].median > w[f].median for f in FORMATS}
    numbers = f"N={n}, write once vs read {EPOCHS}x: " + ", ".join(
        f"{f.upper()} {w[f].median:.3g} s vs {EPOCHS * r[f].median:.3g} s" for f in FORMATS
    )
    return tally(checks, numbers)


def disk_png_smallest(run: Run) -> Outcome:
    """HDF5 and LMDB stores larger than PNG's at the largest cutoff."""
    n, sizes = run.disk_use()
    verdict, numbers = larger(sizes, [("hdf5", "png"), ("lmdb", "png")])
    return verdict, f"N={n}: {numbers}"


def lmdb_map_full(run: Run) -> Outcome:
    """Appending 10 % to the largest article LMDB raised MapFullError."""
    m = run.extra("lmdb_map_full")
    numbers = (
        f"appended {m.get('appended')} to N={m.get('n_images')}: map_size {m.get('map_size')} B, "
        f"data {m.get('data_bytes')} B"
    )
    if m.get("map_full"):
        return "holds", numbers + "; MapFullError"
    if m.get("error"):
        return "not tested", numbers + f"; the append failed otherwise: {m['error']}"
    return "fails", numbers + "; the append fit"


def lazy_items(run: Run) -> Outcome:
    """Reading one image raises peak RSS by under the LAZY margins."""
    items = run.extra("lazy_items").get("items") or []
    items = {i.get("format"): i for i in items if i.get("mode", "article") == run.mode}
    checks, parts = {}, []
    for f in ("lmdb", "hdf5"):
        if f not in items:
            raise Missing(f'extras["lazy_items"] for {f}')
        rise, store = items[f]["peak_rss_increase_bytes"], items[f]["store_bytes"]
        checks[f.upper()] = rise < LAZY_FRACTION * store and rise < LAZY_MAX_BYTES
        parts.append(f"{f.upper()} +{rise / 2**20:.3g} MiB of {store / 2**20:.4g} MiB")
    return tally(checks, "peak RSS while reading one image: " + ", ".join(parts))


def overall(run: Run) -> Outcome:
    """PNG over the faster of LMDB and HDF5 at least LARGE_MIN, writes and reads."""
    n = run.cutoffs("write_many", "read_many")[-1]
    checks, parts = {}, []
    for op in ("write_many", "read_many"):
        t = times(run, op, n)
        best = min(t["lmdb"].median, t["hdf5"].median)
        over = ratio(t["png"].median, best)
        checks[f"{op} PNG/best >= {LARGE_MIN:g}x"] = over >= LARGE_MIN
        parts.append(f"{op} PNG/best {over:.3g}x")
    return tally(checks, f"N={n}: " + ", ".join(parts))


def _epochs(run: Run) -> pd.DataFrame:
    acc = select(run.table("access"), mode=run.mode, cache="warm")
    if not len(acc):
        raise Missing("the epoch table (access_patterns is empty?)")
    return acc


def _epoch(
    acc: pd.DataFrame, fmt: str, pattern: str, readers: int = 1, kind: str = "process"
) -> Time:
    sel = select(acc, format=fmt, pattern=pattern, readers=readers, reader_kind=kind)
    if not len(sel):
        raise Missing(f"{fmt} {pattern} epoch, {readers} {kind} reader(s)")
    return Time(float(sel["median_s"].iloc[0]), float(sel["spread"].iloc[0]))


Part = tuple[bool | None, str]  # (check met, None when undecided; its numbers)


def _parts(run: Run, parts: dict[str, Callable[[Run], Part]]) -> Outcome:
    """A claim of several parts: each part's check, a missing part undecided and named (so the
    claim never holds on half its parts); Missing only when no part was measured."""
    checks: dict[str, bool | None] = {}
    texts, missing = [], []
    for name, part in parts.items():
        try:
            checks[name], text = part(run)
        except Missing as e:
            checks[name], text = None, f"{name}: not tested (missing {e})"
            missing.append(str(e))
        texts.append(text)
    if len(missing) == len(parts):
        raise Missing("; ".join(missing))
    return tally(checks, "; ".join(texts))


def _capped_order(fmt: str) -> Callable[[Run], Part]:
    """Capped (store 5x the page cache), 1 reader, each order's best reader options: the epoch
    in store order faster than the shuffled one beyond the spread."""

    def part(run: Run) -> Part:
        seq = run.capped(fmt, "sequential", 1)
        shuf = run.capped(fmt, "shuffled", 1)
        text = (
            f"capped, 1 reader: sequential {seq}, shuffled {shuf} "
            f"({ratio(seq.images_per_s, shuf.images_per_s):.2f}x)"
        )
        return faster(seq.time, shuf.time), text

    return part


def _lmdb_warm_order(run: Run) -> Part:
    acc = _epochs(run)
    seq, shuf = _epoch(acc, "lmdb", "sequential"), _epoch(acc, "lmdb", "shuffled")
    text = (
        f"warm epoch, 1 reader: sequential {seq.median:.3g} s, shuffled "
        f"{shuf.median:.3g} s ({ratio(shuf.median, seq.median):.2f}x)"
    )
    return faster(seq, shuf), text


def lmdb_sequential(run: Run) -> Outcome:
    """LMDB's key-order epoch faster than its shuffled one beyond the spread, warm and capped."""
    parts = {"warm sequential faster": _lmdb_warm_order}
    return _parts(run, parts | {"capped sequential faster": _capped_order("lmdb")})


def _hdf5_warm_range(run: Run) -> Part:
    acc = _epochs(run)
    element = _epoch(acc, "hdf5", "sequential")
    n = int(select(acc, format="hdf5")["epoch_images"].iloc[0])
    whole = run.time("hdf5", "read_many", n)
    how = "image by image" if run.mode == "article" else "batch by batch"
    text = (
        f"N={n:,}, warm: one range read {whole.median:.3g} s, {how} in order (an epoch, "
        f"1 reader) {element.median:.3g} s ({ratio(element.median, whole.median):.1f}x)"
    )
    return faster(whole, element), text


def hdf5_ranges(run: Run) -> Outcome:
    """HDF5's one-range read faster than reading image by image (warm); capped, the epoch in
    store order (the device reads ranges through readahead) faster than the shuffled one."""
    parts = {"warm range read faster": _hdf5_warm_range}
    return _parts(run, parts | {"capped in-order faster": _capped_order("hdf5")})


#: The formats the conclusion prefers, each against PNG files.
OVER_PNG = ("hdf5", "lmdb")


def beyond_memory(run: Run) -> Outcome:
    """Tuned capped shuffled epochs (store 5x the page cache): HDF5 and LMDB each faster than
    PNG files beyond the spread at every reader count, each format with its best reader
    options; a pair with a side not measured is undecided."""
    cap = select(run.table("capped"), mode="tuned", pattern="shuffled", cache="capped")
    readers = sorted({int(r) for r in cap["readers"]})
    if not readers:
        raise Missing("tuned capped shuffled epochs (capped.csv)")
    checks: dict[str, bool | None] = {}
    parts, why = [], []
    for n in readers:
        best = {}
        for f in ("png", *OVER_PNG):
            try:
                best[f] = run.capped(f, "shuffled", n, mode="tuned")
            except Missing as e:
                why.append(str(e))
        if best:
            rates = ", ".join(f"{f.upper()} {c}" for f, c in best.items())
            parts.append(f"{n} reader(s): {rates}")
        for f in OVER_PNG:
            ok = faster(best[f].time, best["png"].time) if {f, "png"} <= set(best) else None
            checks[f"{f.upper()} faster than PNG ({n} reader(s))"] = ok
    if not parts:
        raise Missing("; ".join(why))
    numbers = "tuned, shuffled, capped: " + "; ".join(parts)
    return tally(checks, numbers + ("; missing: " + "; ".join(why) if why else ""))


def scaling(fmt: str, kinds: tuple[str, ...]) -> Callable[[Run], Outcome]:
    """Images/s from 1 reader to the most measured, against min(readers, cores)."""

    def rule(run: Run) -> Outcome:
        acc = _epochs(run)
        checks, parts = {}, []
        for kind in kinds:
            sel = select(acc, format=fmt, reader_kind=kind, pattern="sequential")
            if not len(sel) or sel["readers"].max() < 2:
                raise Missing(f"{fmt} sequential epochs with 1 and 2+ {kind} readers")
            top = sel[sel["readers"] == sel["readers"].max()].iloc[0]
            cores = int(min(top["readers"], top.get("cores", top["readers"])))
            if top.get("oversubscribed", False):
                cores = int(sel[~sel["oversubscribed"]]["readers"].max())
            eff = float(top["scaling"]) / max(1, min(int(top["readers"]), cores))
            checks[f"{kind} readers scale"] = eff >= SCALING_EFFICIENCY
            parts.append(
                f"{kind}: {int(top['readers'])} readers {float(top['scaling']):.2f}x "
                f"of 1 reader ({eff:.0%} of min(readers, cores))"
            )
        return tally(checks, "; ".join(parts))

    return rule


def _writer_scaling(run: Run, fmt: str) -> tuple[bool, str]:
    """Tuned builds of *fmt* (the only mode with parallel writers): speed-up from 1 writer to
    the most measured, against min(writers, cores)."""
    sel = select(run.table("writers"), format=fmt, mode="tuned")
    if not len(sel) or sel["writers_used"].max() < 2 or 1 not in set(sel["writers"]):
        raise Missing(f"tuned {fmt} builds with 1 and 2+ writers")
    sel = sel[(sel["writers"] == 1) | (sel["writers_used"] >= 2)]
    fair = sel[~sel["oversubscribed"]] if (~sel["oversubscribed"]).any() else sel
    top = fair[fair["writers"] == fair["writers"].max()].iloc[0]
    allowed = max(1, min(int(top["writers"]), int(top["cores"])))
    eff = float(top["speedup"]) / allowed
    text = (
        f"tuned {fmt} writers: {int(top['writers'])} writers {float(top['speedup']):.2f}x of 1 "
        f"({eff:.0%} of min(writers, cores))"
    )
    return eff >= SCALING_EFFICIENCY, text


def png_concurrency(run: Run) -> Outcome:
    """PNG readers and writers both scale; half of it measured never holds."""
    verdict, numbers = scaling("png", ("process", "thread"))(run)
    checks: dict[str, bool | None] = {"readers scale": verdict == "holds"}
    try:
        ok, text = _writer_scaling(run, "png")
    except Missing as e:  # half a claim measured decides nothing: never "holds"
        checks["writers scale"] = None
        return tally(checks, f"{numbers}; writers not tested (missing {e})")
    checks["writers scale"] = ok
    return tally(checks, f"{numbers}; {text}")


def hdf5_write_lock(run: Run) -> Outcome:
    """HDF5 builds with one file per process scale with writers."""
    ok, text = _writer_scaling(run, "hdf5")
    return tally({"one file per process scales": ok}, text)


#: The article's own threshold for "large" images: 256 x 256 x 3.
LARGE_PX = 256
#: "Shoots off the chart": LMDB's disk per raw byte at least twice every other format's.
CHART_MIN = 2.0


def _large_disk(run: Run) -> tuple[int, pd.DataFrame]:
    """Disk rows of the largest store of the largest image size >= 256 px (this mode)."""
    disk = select(run.table("disk_all"), data=ANY, mode=run.mode)
    px = (disk["image_bytes"] // 3) ** 0.5  # NaN for encoded data: never large
    if not (px >= LARGE_PX).any():
        if not len(disk):
            raise Missing("disk rows of other image sizes (image_sizes)")
        raise Missing(f"{run.mode} stores of {LARGE_PX} px or more (image_sizes)")
    data = disk.loc[px.idxmax(), "data"]
    rows = select(disk, data=data, mode=run.mode)
    rows = rows[rows["n_images"] == rows["n_images"].max()]
    return int(px.max()), rows.set_index("format")


def lmdb_overflow(run: Run) -> Outcome:
    """LMDB's disk per raw byte at >= 256 px at least CHART_MIN x every other's."""
    size, rows = _large_disk(run)
    if "lmdb" not in rows.index:
        raise Missing(f"lmdb {run.mode} disk at {size} px")
    lm = float(rows.loc["lmdb", "disk_per_raw"])
    others = {f: float(v) for f, v in rows["disk_per_raw"].items() if f != "lmdb"}
    small = select(run.table("disk_all"), format="lmdb", mode=run.mode)  # the article's 32 px
    at32 = (
        float(small[small["n_images"] == small["n_images"].max()]["disk_per_raw"].iloc[0])
        if len(small)
        else np.nan
    )
    pages = rows.loc["lmdb", "lmdb_overflow_pages"]
    at32_text = f"{at32:.2f}x" if np.isfinite(at32) else "not in this run"
    known = isinstance(pages, int | float) and np.isfinite(pages)
    pages_text = f"{pages:,.0f}" if known else "unrecorded"
    numbers = (
        f"{size} px: LMDB {lm:.2f}x raw bytes on disk ({pages_text} overflow pages), 32 px: "
        f"{at32_text}; others at {size} px: "
        + ", ".join(f"{f} {v:.2f}x" for f, v in sorted(others.items()))
    )
    return tally(
        {"LMDB >= 2x every other format": all(lm >= CHART_MIN * v for v in others.values())},
        numbers,
    )


def hdf5_disk_large(run: Run) -> Outcome:
    """HDF5 smaller than LMDB at >= 256 px, beyond DISK_TIE, below SLIGHT_MAX."""
    size, rows = _large_disk(run)
    if not {"lmdb", "hdf5"} <= set(rows.index):
        raise Missing(f"lmdb and hdf5 {run.mode} disk at {size} px")
    h5, lm = float(rows.loc["hdf5", "kib_allocated"]), float(rows.loc["lmdb", "kib_allocated"])
    lm_h5 = lm / h5 if h5 else float("inf")
    numbers = f"{size} px: HDF5 {h5:,.0f} KiB, LMDB {lm:,.0f} KiB (LMDB/HDF5 = {lm_h5:.2f})"
    checks = {
        "HDF5 smaller beyond the tie": lm_h5 > 1 + DISK_TIE,
        "only slightly": lm_h5 < SLIGHT_MAX,
    }
    return tally(checks, numbers)
