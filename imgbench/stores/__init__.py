"""The format registry: format name -> mode -> where its class lives, its options, packages.

Declared as plain data, so reading it imports no format library: parsing the Snakefile,
a dry run and ``snakemake --lint`` need neither h5py nor lmdb nor Pillow, and each job
imports only its own format's module (:func:`store_class` imports it on first use).

Each format is declared once here: its options (name, type, default, description and where
the default comes from), its pip packages, its family. config.yaml and the config schema are
committed files checked against this registry by tests/test_registry.py; regenerate their
store-option blocks with ``python -m imgbench.stores.config_files --write``.

To add a format: write ``imgbench/stores/<module>.py`` with one :class:`Store` subclass
per mode, and add one :class:`Format` entry to :data:`FORMATS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgbench.core.errors import BenchError
from imgbench.core.names import Mode

if TYPE_CHECKING:  # the base class imports numpy only; the format modules import more
    from imgbench.stores.base import Store
    from imgbench.stores.remote.base import RemoteStore


@dataclass(frozen=True, kw_only=True)
class Option:
    """One tuned-mode config key of a format, declared once (config.yaml and the schema
    are checked against it)."""

    name: str
    #: JSON-schema type(s), e.g. "integer" or ("string", "null")
    type: str | tuple[str, ...]
    default: Any
    #: one line for config.yaml and the schema
    description: str
    #: where the default comes from: the library's docs, a measurement (README), a choice
    source: str
    #: further JSON-schema keywords: minimum, maximum, enum, exclusiveMinimum, ...
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Format:
    """One storage format: its classes by mode, its options, what it needs installed."""

    #: mode -> "module:Class", relative to this package
    classes: Mapping[str, str]
    #: config keys the format's tuned class reads (each named "<format>_...")
    options: tuple[Option, ...] = ()
    #: pip packages the format's module imports, as pinned in requirements.txt (named in the
    #: error when one is missing, and recorded with their versions in the provenance)
    packages: tuple[str, ...] = ()
    #: family used to group formats in tables and figures
    family: str = "files"
    #: how the tuned class uses several writer processes (config ``writers``); empty: it
    #: writes with one process whatever ``writers`` says (the README's tuned table says why)
    parallel_writes: str = ""
    #: True if the tuned class streams shards (``shard_sizes`` and ``stream_shards``): it can
    #: run the ``buffered`` epoch pattern, WebDataset's way of reading
    streams: bool = False
    #: how the tuned class stores encoded images (``payload: encoded``: the original files'
    #: bytes, variable length); empty: it cannot, and ``encoded_why_not`` says why
    encoded: str = ""
    encoded_why_not: str = ""
    #: how the format reads from object storage (issue 24): "module:Class" relative to
    #: :mod:`imgbench.stores.remote`; empty: it is not measured there, ``s3_why_not`` says why
    s3: str = ""
    s3_why_not: str = ""
    #: how its S3 reader keeps requests in flight: "pool" (``s3_requests_in_flight`` threads
    #: per reader), "library" (the library's own scheduler), "serial" (one at a time)
    s3_in_flight: str = "pool"


_POSITIVE = {"minimum": 1}
_TUNED = "the format module's docstring"

FORMATS: dict[str, Format] = {
    "png": Format(
        s3="png:RemotePng",
        classes={"article": "png:ArticlePng", "tuned": "png:TunedPng"},
        options=(
            Option(
                name="png_compress_level",
                type="integer",
                default=6,
                limits={"minimum": 0, "maximum": 9},
                description="zlib level for tuned PNG writes",
                source="Pillow's default (PngImagePlugin: compress_level 6)",
            ),
        ),
        packages=("pillow",),
        family="files",
        parallel_writes="a fork pool encodes and writes the files",
        encoded="one file per image, named by its sniffed type",
    ),
    "lmdb": Format(
        s3="staged:StagedLmdb",
        classes={"article": "lmdb_store:ArticleLmdb", "tuned": "lmdb_store:TunedLmdb"},
        options=(
            Option(
                name="lmdb_map_headroom",
                type="number",
                default=1.5,
                limits={"exclusiveMinimum": 0},
                description="initial LMDB map = data pages x headroom; grows when full",
                source="our choice: the map doubles on MapFullError, so this only saves resizes",
            ),
            Option(
                name="lmdb_txn_images",
                type="integer",
                default=10000,
                limits=_POSITIVE,
                description="images per LMDB write transaction",
                source="our choice: batched commits, each transaction a bounded size",
            ),
        ),
        packages=("lmdb",),
        family="key-value",
        encoded="one value per key",
    ),
    "hdf5": Format(
        s3="hdf5:RemoteHdf5",
        s3_in_flight="serial",
        classes={"article": "hdf5:ArticleHdf5", "tuned": "hdf5:TunedHdf5"},
        options=(
            Option(
                name="hdf5_chunk_images",
                type="integer",
                default=0,
                limits={"minimum": 0},
                description="0 = contiguous dataset; else images per chunk",
                source="h5py's default layout (contiguous); docs.h5py.org 'Chunked storage'",
            ),
            Option(
                name="hdf5_compression",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "gzip", "lzf"]},
                description="null, gzip or lzf (implies chunking)",
                source="h5py's default (none); random pixels do not compress",
            ),
        ),
        packages=("h5py",),
        family="array",
        parallel_writes="one file per process, joined by a virtual dataset",
        encoded="a variable-length uint8 dataset (one process)",
    ),
    "npy": Format(
        s3="npy:RemoteNpy",
        classes={"tuned": "npy:NpyStore"},
        family="array",
        parallel_writes="processes pwrite shares of one file",
        encoded_why_not="one fixed-shape array: records cannot differ in length",
    ),
    # --- issue 12: the formats teams choose today (tuned mode only: no article code) ---
    "tar": Format(
        s3="tar:RemoteTar",
        classes={"tuned": "tar:TunedTar"},
        options=(
            Option(
                name="tar_shard_images",
                type="integer",
                default=10000,
                limits=_POSITIVE,
                description="samples per WebDataset tar shard (~51 MB here); batches read by index",
                source="webdataset.github.io 'Sharding, Parallel I/O, and DataLoader'",
            ),
        ),
        family="shards",
        parallel_writes="processes write whole shards",
        streams=True,
        encoded="WebDataset members <key>.<ext> + <key>.cls",
    ),
    "parquet": Format(
        s3="arrow:RemoteParquet",
        classes={"tuned": "parquet:TunedParquet"},
        options=(
            Option(
                name="parquet_row_group_images",
                type="integer",
                default=16,
                limits=_POSITIVE,
                description="rows per row group: pyarrow decodes a whole group to read one row",
                source=f"measured: 1024 rows ~10k images/s, 16 ~60-130k in shuffled batches "
                f"({_TUNED})",
            ),
            Option(
                name="parquet_compression",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "none", "snappy", "zstd", "lz4", "gzip", "brotli"]},
                description="null, snappy, zstd, lz4, gzip or brotli",
                source="random pixels barely compress; parquet.apache.org 'Configurations'",
            ),
        ),
        packages=("pyarrow",),
        family="columnar",
        encoded="a binary column",
    ),
    "feather": Format(
        s3="arrow:RemoteFeather",
        classes={"tuned": "feather:TunedFeather"},
        options=(
            Option(
                name="feather_batch_images",
                type="integer",
                default=65536,
                limits=_POSITIVE,
                description="rows per Arrow record batch",
                source="pyarrow's default; uncompressed batches are gathered from the map "
                "whatever their size",
            ),
            Option(
                name="feather_compression",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "none", "uncompressed", "lz4", "zstd"]},
                description="null (memory-mapped, zero-copy), lz4 or zstd (decoded per batch)",
                source="arrow.apache.org 'Streaming, Serialization, and IPC' (pyarrow: lz4)",
            ),
        ),
        packages=("pyarrow",),
        family="columnar",
        encoded="a binary column",
    ),
    "lance": Format(
        s3="lance:RemoteLance",
        s3_in_flight="library",
        classes={"tuned": "lance_store:TunedLance"},
        options=(
            Option(
                name="lance_rows_per_file",
                type="integer",
                default=1048576,
                limits=_POSITIVE,
                description="rows per Lance data file (fragment)",
                source="Lance's default (write_dataset max_rows_per_file)",
            ),
            Option(
                name="lance_storage_version",
                type="string",
                default="2.0",
                limits={"enum": ["2.0", "2.1", "2.2", "stable"]},
                description="Lance file format version",
                source=f"measured: a full scan ~2x faster with 2.0 than the 2.2 default ({_TUNED})",
            ),
        ),
        packages=("pylance", "pyarrow"),
        family="columnar",
        encoded="a binary column",
    ),
    "zarr": Format(
        s3="zarr:RemoteZarr",
        classes={"tuned": "zarr_store:TunedZarr"},
        options=(
            Option(
                name="zarr_chunk_images",
                type="integer",
                default=64,
                limits=_POSITIVE,
                description="images per zarr inner chunk (the read unit)",
                source="measured: 1 makes full reads ~40x slower, random access no faster "
                "(zarr-python: ~0.3 ms per chunk); zarr.readthedocs.io 'Performance'",
            ),
            Option(
                name="zarr_shard_images",
                type="integer",
                default=8192,
                limits=_POSITIVE,
                description="images per zarr shard file (a multiple of the chunk)",
                source="fewer shard indexes read per shuffled batch; zarr.readthedocs.io "
                "'Sharding'",
            ),
            Option(
                name="zarr_compressor",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "zstd", "blosc", "gzip"]},
                description="null, zstd, blosc or gzip",
                source="random pixels do not compress",
            ),
            Option(
                name="zarr_checksum",
                type="boolean",
                default=False,
                description="crc32c on every inner chunk: a flipped byte raises",
                source="measured: ~10 % slower reads; not in zarr's default codecs",
            ),
        ),
        packages=("zarr", "obstore"),
        family="array",
        encoded="a variable-length bytes array, sharded",
    ),
    "tiledb": Format(
        s3_why_not=(
            "not measured: TileDB reads S3 through its own VFS (a config of its C++ library), "
            "not in this issue's list; its local rows stand"
        ),
        classes={"tuned": "tiledb_store:TunedTiledb"},
        options=(
            Option(
                name="tiledb_tile_images",
                type="integer",
                default=4,
                limits=_POSITIVE,
                description="images per TileDB space tile (the I/O unit)",
                source="measured: 1-4 best for shuffled batches, 64 for streaming; "
                "docs.tiledb.com 'Performance tips'",
            ),
            Option(
                name="tiledb_compression",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "zstd", "lz4", "gzip"]},
                description="TileDB attribute filter: null, zstd, lz4 or gzip",
                source="random pixels do not compress",
            ),
        ),
        packages=("tiledb",),
        family="array",
        encoded="a var-sized uint8 attribute",
    ),
    "sqlite": Format(
        s3="staged:StagedSqlite",
        classes={"tuned": "sqlite:TunedSqlite"},
        options=(
            Option(
                name="sqlite_page_size",
                type="integer",
                default=16384,
                limits={"enum": [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]},
                description="SQLite page size in bytes",
                source="sqlite.org 'Internal Versus External BLOBs'; 5 CIFAR rows per page, "
                "1.07x the raw bytes on disk vs 1.34x with 4 KB",
            ),
            Option(
                name="sqlite_txn_images",
                type="integer",
                default=10000,
                limits=_POSITIVE,
                description="rows inserted per transaction while building",
                source="our choice: batched commits (sqlite.org FAQ: INSERTs in one transaction)",
            ),
        ),
        family="key-value",
        encoded="a BLOB column, one row per image",
    ),
    "leveldb": Format(
        s3="staged:StagedLeveldb",
        classes={"tuned": "leveldb:TunedLeveldb"},
        options=(
            Option(
                name="leveldb_batch_images",
                type="integer",
                default=10000,
                limits=_POSITIVE,
                description="puts per WriteBatch (~one table file of batch x image bytes)",
                source="our choice: batched writes; github.com/google/leveldb doc/index.md",
            ),
            Option(
                name="leveldb_block_size",
                type="integer",
                default=65536,
                limits={"minimum": 1024},
                description="LevelDB block (the read and cache unit) in bytes",
                source="measured: 64 KB scans ~1.35x faster than the 4 KB default, shuffled "
                "gets the same",
            ),
            Option(
                name="leveldb_compression",
                type=("string", "null"),
                default=None,
                limits={"enum": [None, "snappy"]},
                description="null or snappy",
                source="random pixels do not compress (LevelDB's default is snappy)",
            ),
            Option(
                name="leveldb_verify_checksums",
                type="boolean",
                default=False,
                description="CRC of each block on read (flipped bytes raise)",
                source="measured: ~35 % slower reads; LevelDB's default is off",
            ),
        ),
        packages=("plyvel",),
        family="key-value",
        encoded="one value per key",
    ),
}


class MissingLibraryError(BenchError):
    """A format's library is not installed (raised by the job that needs it, not the DAG)."""


def _spec(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise KeyError(f"unknown format {fmt!r}; registered: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def modes(fmt: str) -> list[str]:
    """The modes a registered format implements (no import)."""
    return list(_spec(fmt).classes)


def options(fmt: str, mode: str) -> dict[str, Any]:
    """Option keys and defaults of one format and mode (no import). Article mode has none:
    it is the article's code, with nothing to tune."""
    spec = _spec(fmt)
    if mode not in spec.classes:
        raise KeyError(f"format {fmt!r} has no mode {mode!r}; it has: {', '.join(spec.classes)}")
    return {o.name: o.default for o in spec.options} if mode == Mode.TUNED else {}


def parallel_writes(fmt: str) -> str:
    """How a format's tuned build uses several writers ("" = it writes with one)."""
    return _spec(fmt).parallel_writes


def streams(fmt: str) -> bool:
    """True if the format can run the ``buffered`` (shard-streaming) epoch pattern."""
    return _spec(fmt).streams


def encoded(fmt: str) -> str:
    """How a format's tuned class stores encoded images ("" = it does not)."""
    return _spec(fmt).encoded


def option_list() -> list[Option]:
    """Every registered store option, in registry order (config.yaml's order)."""
    return [o for spec in FORMATS.values() for o in spec.options]


def option_defaults() -> dict[str, Any]:
    """Every store option key with its default (config.yaml and the schema mirror these)."""
    return {o.name: o.default for o in option_list()}


def packages() -> list[str]:
    """The pip packages of every registered format, once each (the provenance records
    their versions; requirements.txt pins them)."""
    return list(dict.fromkeys(p for spec in FORMATS.values() for p in spec.packages))


def s3_formats() -> list[str]:
    """The formats with an object-storage reader (issue 24), in registry order."""
    return [f for f, spec in FORMATS.items() if spec.s3]


def _import(fmt: str, module: str) -> Any:
    """One of this package's modules; one line naming the package if a library is missing."""
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == __name__.split(".")[0]:
            raise
        raise MissingLibraryError(
            f"format {fmt!r} needs the Python package "
            f"{' / '.join(_spec(fmt).packages) or exc.name} "
            f"(import of {exc.name!r} failed); install it: pip install -r requirements.txt"
        ) from None


def remote_class(fmt: str) -> type[RemoteStore]:
    """Import and return the format's object-storage reader class."""
    spec = _spec(fmt)
    if not spec.s3:
        raise KeyError(f"format {fmt!r} is not read from object storage: {spec.s3_why_not}")
    module, cls = spec.s3.split(":")
    return getattr(_import(fmt, f"remote.{module}"), cls)


def store_class(fmt: str, mode: str) -> type[Store]:
    """Import and return the class for a format and mode; one line if its library is missing."""
    spec = _spec(fmt)
    if mode not in spec.classes:
        raise KeyError(f"format {fmt!r} has no mode {mode!r}; it has: {', '.join(spec.classes)}")
    module, cls = spec.classes[mode].split(":")
    return getattr(_import(fmt, module), cls)


def get_store(
    fmt: str, mode: str, opts: Mapping[str, Any] | None = None, workers: int = 1
) -> Store:
    """Instantiate the store for *fmt* in *mode* with its options (flat config keys)."""
    allowed = options(fmt, mode)
    unknown = set(opts or {}) - set(allowed)
    if unknown:
        raise ValueError(f"{fmt}/{mode}: unknown options {sorted(unknown)}")
    return store_class(fmt, mode)({**allowed, **(opts or {})}, workers)
