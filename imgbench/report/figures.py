"""The article's figures (and a few more), one panel per mode, median with min-max spread."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from imgbench.core.atomic import atomic_path  # noqa: E402
from imgbench.data.sizes import is_encoded, main_pixels, size_of  # noqa: E402
from imgbench.report.answer import JOBS, answer_bars, load_tables, main_data  # noqa: E402
from imgbench.report.s3 import s3_figure  # noqa: E402
from imgbench.stores import FORMATS  # noqa: E402  (the registry: plain data, no format library)

MODES = ["article", "tuned"]
#: One hue per family, one shade per format in it, the same in every figure and panel (solid
#: vs dashed tells the operation), so twelve formats stay readable: files blue, key-value
#: orange, array green, columnar purple, shards red.
FAMILY_MAPS = {
    "files": "Blues",
    "key-value": "Oranges",
    "array": "Greens",
    "columnar": "Purples",
    "shards": "Reds",
}


def family(fmt: str) -> str:
    """The registry's family of a format (tables and figures group by it)."""
    return FORMATS[fmt].family if fmt in FORMATS else "other"


def color(fmt: str) -> tuple[float, ...] | None:
    """The format's colour: its family's hue, a shade by its place in the registry."""
    fam = family(fmt)
    if fam not in FAMILY_MAPS:
        return None
    members = [f for f in FORMATS if FORMATS[f].family == fam]
    shade = 0.85 - 0.45 * members.index(fmt) / max(1, len(members) - 1)
    return matplotlib.colormaps[FAMILY_MAPS[fam]](shade if len(members) > 1 else 0.7)


def _rank(fmt: str) -> tuple[int, int]:
    """Sort key: family (in FAMILY_MAPS order), then the registry's order."""
    fams = list(FAMILY_MAPS)
    fam = family(fmt)
    pos = list(FORMATS).index(fmt) if fmt in FORMATS else 99
    return (fams.index(fam) if fam in fams else 99, pos)


def _by_family(df: pd.DataFrame, keys: str | list[str] = "format") -> list:
    """groupby(keys), formats ordered by family then registry order (legends read by family)."""
    first = (lambda k: k) if isinstance(keys, str) else (lambda k: k[0])
    return sorted(df.groupby(keys), key=lambda kg: (_rank(first(kg[0])), str(kg[0])))


def _panels(df: pd.DataFrame) -> tuple[plt.Figure, list[plt.Axes], list[str]]:
    modes = [m for m in MODES if m in set(df["mode"])] or sorted(set(df["mode"]))
    fig, axes = plt.subplots(
        1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False, sharey=True
    )
    return fig, list(axes[0]), modes


def _lines(ax: plt.Axes, df: pd.DataFrame, label_suffix: str = "", style: str = "-o") -> None:
    for fmt, g in _by_family(df):
        g = g.sort_values("n_images")
        err = [g["median_s"] - g["min_s"], g["max_s"] - g["median_s"]]
        ax.errorbar(
            g["n_images"],
            g["median_s"],
            yerr=err,
            fmt=style,
            capsize=3,
            ms=4,
            label=f"{fmt}{label_suffix} [{family(fmt)}]",
            color=color(fmt),
        )


def _time_plot(df: pd.DataFrame, title: str, log: bool) -> plt.Figure:
    fig, axes, modes = _panels(df)
    for ax, mode in zip(axes, modes, strict=True):
        _lines(ax, df[df["mode"] == mode])
        ax.set_title(f"{title} ({mode} mode)")
        ax.set_xlabel("number of images")
        ax.grid(True, which="both", alpha=0.3)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.legend()
    axes[0].set_ylabel("seconds (median, bars: min-max)")
    fig.tight_layout()
    return fig


def _pair(df: pd.DataFrame, column: str, first: str, second: str, title: str) -> plt.Figure:
    """Two families of lines per panel (solid *first*, dashed *second*), log-log."""
    fig, axes, modes = _panels(df)
    for ax, mode in zip(axes, modes, strict=True):
        sub = df[df["mode"] == mode]
        for value, style in ((first, "-o"), (second, "--s")):
            _lines(ax, sub[sub[column] == value], f" {value.removesuffix('_many')}", style)
        ax.set(
            xscale="log", yscale="log", title=f"{title} ({mode} mode)", xlabel="number of images"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("seconds")
    fig.tight_layout()
    return fig


def _disk(disk: pd.DataFrame) -> plt.Figure:
    fig, axes, modes = _panels(disk)
    for ax, mode in zip(axes, modes, strict=True):
        for fmt, g in _by_family(disk[disk["mode"] == mode]):
            g = g.sort_values("n_images")
            ax.plot(
                g["n_images"],
                g["kib_allocated"],
                "-o",
                ms=4,
                label=f"{fmt} [{family(fmt)}]",
                color=color(fmt),
            )
        ax.set(
            xscale="log",
            yscale="log",
            title=f"disk use, du -sk ({mode} mode)",
            xlabel="number of images",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("KiB allocated")
    fig.tight_layout()
    return fig


def _single(df: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    df = df.copy()
    df["what"] = df["operation"] + " " + df["cache"].where(df["cache"] != "none", "")
    piv = df.pivot_table(index=["format", "mode"], columns="what", values="median_s") * 1e3
    piv.index = [f"{fmt}\n{mode}" for fmt, mode in piv.index]
    piv.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("ms per image (median)")
    ax.set_title("one image: store and read")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _access(acc: pd.DataFrame) -> plt.Figure:
    patterns = [p for p in ("sequential", "shuffled", "random") if p in set(acc["pattern"])]
    caches = [c for c in ("warm", "cold") if c in set(acc["cache"])]
    fig, axes = plt.subplots(
        len(patterns), len(caches), figsize=(6 * len(caches), 3.8 * len(patterns)), squeeze=False
    )
    for i, pattern in enumerate(patterns):
        for j, cache in enumerate(caches):
            ax = axes[i][j]
            sub = acc[(acc["pattern"] == pattern) & (acc["cache"] == cache)]
            for (fmt, mode, kind), g in _by_family(sub, ["format", "mode", "reader_kind"]):
                g = g.sort_values("readers")
                style = "-o" if mode == "tuned" else "--s"
                label = f"{fmt} {mode}" + (f" ({kind})" if kind != "process" else "")
                ax.plot(g["readers"], g["images_per_s"], style, ms=4, label=label, color=color(fmt))
            ax.set(yscale="log", title=f"{pattern} epoch, {cache} cache", xlabel="readers")
            ax.set_xticks(sorted(set(acc["readers"])))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        axes[i][0].set_ylabel("images/s (median epoch)")
    fig.tight_layout()
    return fig


def _au(au: pd.DataFrame) -> plt.Figure:
    caches = [c for c in ("warm", "cold") if c in set(au["cache"])]
    fig, axes = plt.subplots(1, len(caches), figsize=(7 * len(caches), 4.5), squeeze=False)
    for ax, cache in zip(axes[0], caches, strict=True):
        sub = au[au["cache"] == cache].copy()
        sub["setup"] = sub["format"] + " " + sub["mode"]
        piv = sub.pivot_table(index="setup", columns="readers", values="au") * 100
        piv.plot.bar(ax=ax, rot=30)
        ax.axhline(90, ls="--", color="k", lw=1)
        c = ", ".join(f"{v * 1e3:g} ms" for v in sorted(set(sub["computation_time"])))
        ax.set(ylabel="AU % (median)", ylim=(0, 105), title=f"{cache} cache, compute {c}/batch")
        ax.legend(title="readers", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _largest_by_size(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of each pixel data set's largest store, with its image size as ``px`` (encoded
    images have no one size)."""
    df = df[~df["data"].map(is_encoded)]
    df = df.assign(px=df["data"].map(size_of))
    return df[df["n_images"] == df.groupby(["data", "format", "mode"])["n_images"].transform("max")]


def _sizes(summary: pd.DataFrame, disk: pd.DataFrame) -> plt.Figure:
    """Per byte across image sizes (each size's largest store: the same raw bytes): warm and
    cold read MB/s, store MB/s, and disk per raw byte."""
    top = _largest_by_size(summary)
    panels = [
        ("write_many", "none", "store MB/s"),
        ("read_many", "warm", "read MB/s, warm"),
        ("read_many", "cold", "read MB/s, cold"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.5), squeeze=False)
    for ax, (op, cache, title) in zip(axes[0], panels, strict=False):
        sel = top[(top["operation"] == op) & (top["cache"] == cache)]
        for (fmt, mode), g in _by_family(sel, ["format", "mode"]):
            g = g.sort_values("px")
            style = "-o" if mode == "tuned" else "--s"
            ax.plot(g["px"], g["mb_per_s"], style, ms=4, label=f"{fmt} {mode}", color=color(fmt))
        ax.set(xscale="log", yscale="log", title=title, xlabel="image size (px)")
        ax.grid(True, which="both", alpha=0.3)
    d = _largest_by_size(disk)
    for (fmt, mode), g in _by_family(d, ["format", "mode"]):
        g = g.sort_values("px")
        style = "-o" if mode == "tuned" else "--s"
        axes[0][3].plot(
            g["px"], g["disk_per_raw"], style, ms=4, label=f"{fmt} {mode}", color=color(fmt)
        )
    axes[0][3].set(xscale="log", title="disk / raw pixel bytes", xlabel="image size (px)")
    axes[0][3].grid(True, which="both", alpha=0.3)
    axes[0][3].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _answer(bars: pd.DataFrame) -> plt.Figure:
    """A panel per job of the answer table, a bar per format (its best setting), min-max
    spread as error bars, coloured by family."""
    jobs = list(dict.fromkeys(bars["job"])) or ["no job measured"]
    cols = min(3, len(jobs))
    rows = -(-len(jobs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, job in zip(axes.flat, jobs, strict=False):
        g = bars[bars["job"] == job]
        g = g.iloc[sorted(range(len(g)), key=lambda i: _rank(g["format"].iloc[i]))]
        lo = (g["value"] - g["lo"]).clip(lower=0).fillna(0)
        hi = (g["hi"] - g["value"]).clip(lower=0).fillna(0)
        ax.bar(g["format"], g["value"], yerr=[lo, hi], capsize=3,
               color=[color(f) or "grey" for f in g["format"]])  # fmt: skip
        better = "higher" if g["higher"].all() else "lower"
        unit = g["unit"].iloc[0] if len(g) else ""
        ax.set_title(job, fontsize=9)
        ax.set_ylabel(f"{unit} ({better} is better)", fontsize=8)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(jobs) :]:
        ax.set_visible(False)
    fams = [f for f in FAMILY_MAPS if f in set(bars["family"])]
    handles = [Patch(color=matplotlib.colormaps[FAMILY_MAPS[f]](0.7), label=f) for f in fams]
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=9)
    return fig


def _capped_bars(bars: pd.DataFrame) -> plt.Figure:
    """Shuffled epochs per format: warm, cold and capped images/s side by side (each at its
    best reader count; capped at its best advice and io_depth), min-max as error bars."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * bars["format"].nunique() + 2), 4.5))
    fmts = sorted(set(bars["format"]), key=_rank)
    jobs = list(dict.fromkeys(bars["job"]))
    width = 0.8 / max(1, len(jobs))
    for k, (job, hatch) in enumerate(zip(jobs, ["", "//", ".."], strict=False)):
        g = bars[bars["job"] == job].set_index("format").reindex(fmts)
        x = [i + (k - (len(jobs) - 1) / 2) * width for i in range(len(fmts))]
        err = [
            (g["value"] - g["lo"]).clip(lower=0).fillna(0),
            (g["hi"] - g["value"]).clip(lower=0).fillna(0),
        ]
        ax.bar(
            x,
            g["value"],
            width,
            yerr=err,
            capsize=2,
            hatch=hatch,
            edgecolor="k",
            color=[color(f) or "grey" for f in fmts],
            label=job.removeprefix("shuffled epochs, "),
        )
    ax.set_xticks(range(len(fmts)), fmts, rotation=30)
    ax.set(yscale="log", ylabel="images/s (bars: min-max)", title="shuffled epochs")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if jobs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: the answer table's shuffled-epoch jobs: warm, cold, capped (the capped figure)
EPOCH_JOBS = [j for j in JOBS if j.name.startswith("shuffled epochs")]


def _bars(summary_csv: Path, jobs: list | None = None) -> pd.DataFrame:
    """The answer's per-format values from the tables beside summary.csv (the tables rule
    writes them all at once)."""
    tables = load_tables(Path(summary_csv).parent)
    return answer_bars(tables, main_data(tables), jobs)


def write_figures(
    summary_csv: Path,
    disk_csv: Path,
    access_csv: Path,
    au_csv: Path,
    dpi: int = 120,
    **outputs: Path,
) -> None:
    """The figures rule: render every figure named in *outputs* (keys below) from the tables;
    answer and capped read the other tables the tables rule wrote beside summary.csv."""
    all_s, all_disk = pd.read_csv(summary_csv), pd.read_csv(disk_csv)
    # The article's figures are of one pixel data set (CIFAR 32 px when present, else the
    # smallest folder size); sizes and the pixels-vs-encoded comparison have their own.
    data = main_pixels(all_s.get("data", []))
    s, disk, acc, au = (
        df[df["data"] == data] if data and "data" in df else df
        for df in (all_s, all_disk, pd.read_csv(access_csv), pd.read_csv(au_csv))
    )
    store = s[s["operation"] == "write_many"]
    read_warm = s[(s["operation"] == "read_many") & (s["cache"] == "warm")]
    many = s[s["operation"].isin(["write_many", "read_many"]) & (s["cache"] != "cold")]
    makers = {
        "store_linear": lambda: _time_plot(store, "store many", log=False),
        "store_log": lambda: _time_plot(store, "store many", log=True),
        "read_linear": lambda: _time_plot(read_warm, "read many, warm", log=False),
        "read_log": lambda: _time_plot(read_warm, "read many, warm", log=True),
        "store_read": lambda: _pair(many, "operation", "write_many", "read_many", "store and read"),
        "cold_warm": lambda: _pair(
            s[s["operation"] == "read_many"],
            "cache",
            "warm",
            "cold",
            "read many: warm vs cold cache",
        ),
        "disk": lambda: _disk(disk),
        "single": lambda: _single(s[s["operation"].isin(["write_one", "read_one"])]),
        "access": lambda: _access(acc),
        "au": lambda: _au(au),
        "sizes": lambda: _sizes(all_s, all_disk),
        "answer": lambda: _answer(_bars(summary_csv)),
        "capped": lambda: _capped_bars(_bars(summary_csv, EPOCH_JOBS)),
        "s3": lambda: s3_figure(pd.read_csv(Path(summary_csv).parent / "s3.csv")),
    }
    for name, path in outputs.items():
        fig = makers[name]()
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip("."))
        plt.close(fig)
