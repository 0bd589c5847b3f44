"""The tables rule's entry point: every result read once, every table and summary.md written.

Why one entry: the tables depend on each other (claims on summary, disk, epochs and writers;
AU on the epochs) and summary.md presents them all; reading the results here once keeps
each builder a plain function of its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from imgbench.core.atomic import atomic_path
from imgbench.core.names import Op
from imgbench.data.sizes import is_encoded, main_pixels
from imgbench.report.capped import capped_md, capped_table
from imgbench.report.claims import claims_markdown, claims_table
from imgbench.report.epoch_tables import access_table, au_table, writers_table
from imgbench.report.load import load, provenance_note, read_results
from imgbench.report.reproduction import reproduction_markdown, reproduction_table
from imgbench.report.s3 import probe_table, s3_md, s3_table
from imgbench.report.select import DIMENSIONS
from imgbench.report.summary import (
    access_md,
    au_md,
    markdown_summary,
    partial_note,
    payload_md,
    provenance_md,
    sizes_md,
    spread_note,
    which_format,
    writers_md,
)
from imgbench.report.tables import (
    add_family,
    article_table,
    disk_table,
    payload_table,
    samples_table,
    summary_table,
)


def _extras(results: list[dict], claim_runs: list[Path]) -> dict:
    """What the claims and reproduction tables need beyond summary and disk: the single-image
    stores' disk use (of the article's data set only, as every claim) and the claim runs."""
    extras: dict = {
        "single_disk": {
            (r["format"], r["mode"]): r["extra"]["single_store_disk"]
            for r in results
            if r["operation"] == "write_one"
            and "single_store_disk" in r.get("extra", {})
            and all(r.get(k) == v for k, v in DIMENSIONS.items())
        }
    }
    for p in claim_runs:
        extras[Path(p).stem] = json.loads(Path(p).read_text())
    return extras


def write_tables(
    timings: list[Path],
    du: list[Path],
    claim_runs: list[Path],
    epochs: list[Path],
    training: list[Path],
    writer_builds: list[Path] = (),
    capped_runs: list[Path] = (),
    s3_runs: list[Path] = (),
    s3_probes: list[Path] = (),
    device: Path | None = None,
    **outputs: Path,
) -> None:
    """The tables rule: samples, summary, disk, article comparison, reproduction, claims and
    the loader tables (CSV), and the markdown summary."""
    results = load(timings)
    summary = summary_table(results)
    dsk = disk_table(load(du, timed=False))
    payload = payload_table(summary, dsk)
    decoders = {r.get("extra", {}).get("decoder") for r in results} - {None}
    payload["decoder"] = ",".join(sorted(decoders)) or None
    summary_all = summary  # summary.csv keeps every row, encoded ones too
    if len(summary):  # encoded rows have their own table; the rest compares pixels
        summary = summary[~summary["data"].map(is_encoded)].reset_index(drop=True)
    main = main_pixels(summary["data"])
    art = article_table(summary, dsk)
    extras = _extras(results, claim_runs)
    access = access_table(read_results(epochs))
    extras["access"] = access
    extras["disk_all"] = dsk  # every image size (the size claims compare them)
    au = au_table(read_results(training), access)
    extras["writers"] = writers_table(
        [r for r in load(writer_builds) if r["operation"] == Op.WRITE_MANY]
    )
    extras["capped"] = capped_table(load(capped_runs), device)  # the claims' capped parts
    s3 = s3_table(load(s3_runs), read_results(s3_probes))
    probes = probe_table(read_results(s3_probes))
    claims = claims_table(summary, dsk, extras)
    repro = reproduction_table(summary, dsk, extras)
    frames = {
        "samples": samples_table(results),
        "summary": summary_all,
        "disk": dsk,
        "article": art,
        "claims": claims,
        "reproduction": repro,
        "access": access,
        "au": au,
        "writers": extras["writers"],
        "capped": extras["capped"],
        "payload": payload,
        "s3": s3,
    }
    for name, df in frames.items():
        add_family(df)
        with atomic_path(outputs[name]) as tmp:
            df.to_csv(tmp, index=False)
    timed = (summary_all, access, au, extras["writers"], frames["capped"])
    text = "\n".join(
        [
            markdown_summary(summary, dsk, art, main),
            *provenance_md(provenance_note(timed)),
            *which_format(
                summary, dsk, access, main, capped=frames["capped"], payload=payload, au=au, s3=s3
            ),
            *access_md(access),
            *au_md(au),
            *writers_md(extras["writers"]),
            *capped_md(frames["capped"]),
            *s3_md(s3, probes),
            *sizes_md(summary, dsk),
            *payload_md(payload, ",".join(sorted(decoders))),
            *spread_note(summary),
            *partial_note(summary, access),
            reproduction_markdown(repro),
            "",
            claims_markdown(claims),
        ]
    )
    with atomic_path(outputs["markdown"]) as tmp:
        tmp.write_text(text)
