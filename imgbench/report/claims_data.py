"""The article's 21 claims as data, and its conclusion restricted to training on data larger than
memory: what each says, the test, margin and rule that decide it.

Why a module of its own: the table is long prose; the rules (:mod:`imgbench.report.claim_rules`)
and the margins (:mod:`imgbench.report.judging`) are code. Article mode decides (the code the
article measured); tuned mode's verdict is shown beside it. Writes count until durable on disk,
reads are warm; "many" claims use the largest cutoff, crossovers all cutoffs. Capped parts read
capped.csv: epochs from a store 5x the page cache, each format with its best reader options
(readahead advice, reads in flight) of those measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imgbench.report.claim_rules import (
    beyond_memory,
    crossover,
    disk_png_smallest,
    hdf5_disk_large,
    hdf5_ranges,
    hdf5_write_lock,
    lazy_items,
    lmdb_map_full,
    lmdb_overflow,
    lmdb_sequential,
    overall,
    png_concurrency,
    png_gap,
    png_slow,
    read_dominates,
    scaling,
    single_disk_lmdb,
    single_read_png,
    single_store_fast,
    single_store_lmdb_edge,
)
from imgbench.report.judging import (
    DISK_TIE,
    DRASTIC_MIN,
    EPOCHS,
    GAP_MIN,
    LARGE_MIN,
    LAZY_FRACTION,
    LAZY_MAX_BYTES,
    NOISE,
    SLIGHT_MAX,
    TRIVIAL_S,
    Outcome,
    Run,
)


@dataclass(frozen=True)
class Claim:
    """One claim of the article: what it says, how it is decided, and the rule deciding it."""

    id: str
    section: str
    claim: str
    kind: str
    test: str
    mode: str
    margin: str
    rule: Callable[[Run], Outcome]
    tuned: bool = True  # also evaluate tuned mode and show it beside


ART = "article (tuned beside)"
CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="single-store-fast",
        section="Storing a single image",
        claim="Storing one image is trivially fast with all three methods",
        kind="measured",
        test="Durable write_one median of every format is under TRIVIAL_S.",
        mode=ART,
        margin=f"TRIVIAL_S = {TRIVIAL_S * 1e3:g} ms",
        rule=single_store_fast,
    ),
    Claim(
        id="single-store-lmdb-edge",
        section="Storing a single image",
        claim="LMDB has a slight speed edge for storing one image",
        kind="measured",
        test="LMDB's durable write_one is the fastest beyond the spread, by less than SLIGHT_MAX.",
        mode=ART,
        margin=f"SLIGHT_MAX = {SLIGHT_MAX:g}x; {NOISE}",
        rule=single_store_lmdb_edge,
    ),
    Claim(
        id="single-disk-lmdb",
        section="Storing a single image",
        claim="LMDB uses more disk for one image (32 K vs 8 K for PNG and HDF5)",
        kind="measured",
        test="A single-image LMDB store is larger than PNG's and HDF5's, allocated and apparent.",
        mode=ART,
        margin=f"DISK_TIE = {DISK_TIE:.0%}",
        rule=single_disk_lmdb,
    ),
    Claim(
        id="single-read-png",
        section="Reading a single image",
        claim="Reading one PNG + CSV is slightly faster than LMDB or HDF5; all are trivially fast",
        kind="measured",
        test="Warm read_one: PNG faster than each beyond the spread, by < SLIGHT_MAX; all trivial.",
        mode=ART,
        margin=f"SLIGHT_MAX = {SLIGHT_MAX:g}x; TRIVIAL_S = {TRIVIAL_S * 1e3:g} ms; {NOISE}",
        rule=single_read_png,
    ),
    Claim(
        id="many-store-png-slow",
        section="Storing many images",
        claim="Storing many images as PNG files is drastically slower than LMDB or HDF5",
        kind="measured",
        test="At the largest cutoff, durable write_many: PNG / LMDB and PNG / HDF5 >= DRASTIC_MIN.",
        mode=ART,
        margin=f"DRASTIC_MIN = {DRASTIC_MIN:g}x",
        rule=png_slow("write_many"),
    ),
    Claim(
        id="many-store-hdf5-crossover",
        section="Storing many images",
        claim="HDF5 starts slower than LMDB for few images and is slightly faster for many",
        kind="measured",
        test="Durable write_many: HDF5 slower than LMDB at the smallest cutoff, faster at the "
        "largest.",
        mode=ART,
        margin=f"{NOISE}; 'slightly' not bounded: the article's own gap at 100k is 15x",
        rule=crossover("write_many", consistently=False),
    ),
    Claim(
        id="many-read-png-slow",
        section="Reading many images",
        claim="Reading many PNG files is drastically slower than LMDB or HDF5",
        kind="measured",
        test="At the largest cutoff, warm read_many: PNG / LMDB and PNG / HDF5 >= DRASTIC_MIN.",
        mode=ART,
        margin=f"DRASTIC_MIN = {DRASTIC_MIN:g}x",
        rule=png_slow("read_many"),
    ),
    Claim(
        id="many-read-hdf5-crossover",
        section="Reading many images",
        claim="HDF5 reads start behind LMDB and become consistently faster by a small margin",
        kind="measured",
        test="Warm read_many: HDF5 behind LMDB at the smallest cutoff, ahead at the largest, "
        "never behind again once ahead.",
        mode=ART,
        margin=f"{NOISE}; 'small margin' not bounded: the article's own is up to 3.3x",
        rule=crossover("read_many", consistently=True),
    ),
    Claim(
        id="png-write-read-gap",
        section="Reading many images",
        claim="PNG files show a large gap between write and read time; LMDB and HDF5 a much "
        "smaller one",
        kind="measured",
        test="At the largest cutoff, PNG's gap between durable write and warm read >= GAP_MIN x "
        "LMDB's and HDF5's.",
        mode=ART,
        margin=f"GAP_MIN = {GAP_MIN:g}x",
        rule=png_gap,
    ),
    Claim(
        id="read-dominates",
        section="Reading many images",
        claim="Read time matters more than write time (40 s vs 4 s per epoch: ~6 h vs ~40 min)",
        kind="reasoning",
        test="At the largest cutoff, per format, EPOCHS warm reads take longer than one durable "
        "write.",
        mode=ART,
        margin=f"EPOCHS = {EPOCHS}",
        rule=read_dominates,
    ),
    Claim(
        id="disk-png-smallest",
        section="Considering disk usage",
        claim="HDF5 and LMDB both take more disk space than PNG files",
        kind="measured",
        test="At the largest cutoff, the HDF5 and LMDB stores exceed the PNG folder, in KiB "
        "allocated and in apparent bytes.",
        mode=ART,
        margin=f"DISK_TIE = {DISK_TIE:.0%}",
        rule=disk_png_smallest,
    ),
    Claim(
        id="lmdb-overflow-large",
        section="Considering disk usage",
        claim="With larger images LMDB disk use shoots off the chart (overflow pages)",
        kind="unmeasured",
        test="LMDB disk per raw byte at the largest image size >= 256 px against every "
        "other format's, with LMDB's overflow pages (env.stat) and its 32-px figure.",
        mode=ART,
        margin="CHART_MIN = 2x",
        rule=lmdb_overflow,
    ),
    Claim(
        id="hdf5-disk-large",
        section="Considering disk usage",
        claim="For 256x256x3 or 512x512x3 images HDF5 is slightly more disk-efficient than LMDB",
        kind="unmeasured",
        test="HDF5 vs LMDB allocated disk for the largest store at the largest image size "
        ">= 256 px (the same raw bytes).",
        mode=ART,
        margin="DISK_TIE < LMDB/HDF5 - 1; LMDB/HDF5 < SLIGHT_MAX",
        rule=hdf5_disk_large,
    ),
    Claim(
        id="png-concurrency",
        section="Parallel access",
        claim="PNG files allow complete concurrency: several images read or written at once",
        kind="unmeasured",
        test="PNG sequential epochs: images/s with 1 and more reader threads and processes; "
        "tuned PNG builds with 1 and more writer processes; each against min(n, cores).",
        mode="article (tuned beside)",
        margin="SCALING_EFFICIENCY = 80%",
        rule=png_concurrency,
    ),
    Claim(
        id="lmdb-readers",
        section="Parallel access",
        claim="LMDB allows many concurrent readers; 10 processes each reading a tenth divide the "
        "load time by ten",
        kind="unmeasured",
        test="LMDB sequential epochs: images/s with 1 and more reader processes, each reading "
        "an interleaved share, against min(readers, cores).",
        mode="article (tuned beside)",
        margin="SCALING_EFFICIENCY = 80%",
        rule=scaling("lmdb", ("process",)),
    ),
    Claim(
        id="hdf5-write-lock",
        section="Parallel access",
        claim="HDF5 access is sequential without a parallel file system; one file per process "
        "avoids it",
        kind="unmeasured",
        test="Tuned HDF5 builds with 1 and more writer processes, one file per process "
        "(joined by a virtual dataset), against min(writers, cores). One shared file needs "
        "MPI-parallel HDF5 (h5py built with mpi4py), which the pip wheel is not: not measured.",
        mode="tuned",
        margin="SCALING_EFFICIENCY = 80%",
        rule=hdf5_write_lock,
        tuned=False,
    ),
    Claim(
        id="lmdb-sequential",
        section="A more critical look",
        claim="LMDB performs better when items are accessed sequentially by key",
        kind="unmeasured",
        test="LMDB epochs with 1 reader, key order vs shuffled order: warm, and capped (a "
        "store 5x the page cache; each order's best readahead advice and reads in flight).",
        mode="article (tuned beside)",
        margin=f"{NOISE}; a part not measured: never holds",
        rule=lmdb_sequential,
    ),
    Claim(
        id="hdf5-ranges",
        section="A more critical look",
        claim="HDF5 reads of large ranges (dataset[:]) beat reading element by element",
        kind="unmeasured",
        test="HDF5 warm: the whole-store read (one range) vs a sequential epoch reading image "
        "by image (article: file['/images'][i]). Capped (a store 5x the page cache, 1 reader, "
        "each order's best reader options): the epoch in store order, which the device reads "
        "as ranges through readahead, vs the shuffled one, one image per device read.",
        mode="article (tuned beside)",
        margin=f"{NOISE}; a part not measured: never holds",
        rule=hdf5_ranges,
    ),
    Claim(
        id="lmdb-map-full",
        section="A more critical look",
        claim="Adding data to an LMDB later easily hits MapFullError despite a map_size buffer",
        kind="unmeasured",
        test="Append 10 % more images to the largest article LMDB, sized by the article's rule.",
        mode="article",
        margin="none: MapFullError raised or not",
        rule=lmdb_map_full,
        tuned=False,
    ),
    Claim(
        id="lazy-items",
        section="A more critical look",
        claim="With LMDB and HDF5 only the requested item is read into memory",
        kind="unmeasured",
        test="Peak RSS increase of a fresh process reading one image of the largest store.",
        mode="article",
        margin=f"LAZY_FRACTION = {LAZY_FRACTION:.0%} of the store; "
        f"LAZY_MAX_BYTES = {LAZY_MAX_BYTES // 2**20} MiB",
        rule=lazy_items,
        tuned=False,
    ),
    Claim(
        id="overall",
        section="Conclusion",
        claim="There are large performance benefits to HDF5 or LMDB over PNG files",
        kind="measured",
        test="At the largest cutoff, PNG / the faster of LMDB and HDF5 >= LARGE_MIN, for durable "
        "writes and for warm reads.",
        mode=ART,
        margin=f"LARGE_MIN = {LARGE_MIN:g}x",
        rule=overall,
    ),
    Claim(
        id="overall-beyond-memory",
        section="Conclusion",
        claim="HDF5 or LMDB over PNG files when the data does not fit in memory (training: "
        "shuffled epochs)",
        kind="unmeasured",
        test="Tuned shuffled epochs from a 32-px store 5x the page cache (capped.csv), each "
        "format with its best readahead advice and reads in flight: HDF5 and LMDB each faster "
        "than PNG files, at every reader count measured. Both: holds; one: mixed; neither: fails.",
        mode="tuned",
        margin=f"{NOISE}; a format not measured: not decided",
        rule=beyond_memory,
        tuned=False,
    ),
)
