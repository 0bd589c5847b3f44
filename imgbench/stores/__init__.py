"""The format registry: format name -> mode -> where its class lives, plus its options.

Declared as plain data, so reading it imports no format library: parsing the Snakefile,
a dry run and ``snakemake --lint`` need neither h5py nor lmdb nor Pillow, and each job
imports only its own format's module (:func:`store_class` imports it on first use).

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


@dataclass(frozen=True)
class Format:
    """One storage format: its classes by mode, its options, what it needs installed."""

    #: mode -> "module:Class", relative to this package
    classes: Mapping[str, str]
    #: flat config keys the format's tuned class reads, with their defaults
    options: Mapping[str, Any] = field(default_factory=dict)
    #: pip packages the format's module imports (named in the error when one is missing)
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


FORMATS: dict[str, Format] = {
    "png": Format(
        {"article": "png:ArticlePng", "tuned": "png:TunedPng"},
        {"png_compress_level": 6},
        ("pillow",),
        "files",
        "a fork pool encodes and writes the files",
        encoded="one file per image, named by its sniffed type",
    ),
    "lmdb": Format(
        {"article": "lmdb_store:ArticleLmdb", "tuned": "lmdb_store:TunedLmdb"},
        {"lmdb_map_headroom": 1.5, "lmdb_txn_images": 10000},
        ("lmdb",),
        "key-value",
        encoded="one value per key",
    ),
    "hdf5": Format(
        {"article": "hdf5:ArticleHdf5", "tuned": "hdf5:TunedHdf5"},
        {"hdf5_chunk_images": 0, "hdf5_compression": None},
        ("h5py",),
        "array",
        "one file per process, joined by a virtual dataset",
        encoded="a variable-length uint8 dataset (one process)",
    ),
    "npy": Format(
        {"tuned": "npy:NpyStore"},
        {},
        (),
        "array",
        "processes pwrite shares of one file",
        encoded_why_not="one fixed-shape array: records cannot differ in length",
    ),
    # --- issue 12: the formats teams choose today (tuned mode only: no article code) ---
    "tar": Format(
        {"tuned": "tar:TunedTar"},
        {"tar_shard_images": 10000},
        (),
        "shards",
        "processes write whole shards",
        streams=True,
        encoded="WebDataset members <key>.<ext> + <key>.cls",
    ),
    "parquet": Format(
        {"tuned": "parquet:TunedParquet"},
        {"parquet_row_group_images": 16, "parquet_compression": None},
        ("pyarrow",),
        "columnar",
        encoded="a binary column",
    ),
    "feather": Format(
        {"tuned": "feather:TunedFeather"},
        {"feather_batch_images": 65536, "feather_compression": None},
        ("pyarrow",),
        "columnar",
        encoded="a binary column",
    ),
    "lance": Format(
        {"tuned": "lance_store:TunedLance"},
        {"lance_rows_per_file": 1048576, "lance_storage_version": "2.0"},
        ("pylance", "pyarrow"),
        "columnar",
        encoded="a binary column",
    ),
    "zarr": Format(
        {"tuned": "zarr_store:TunedZarr"},
        {
            "zarr_chunk_images": 64,
            "zarr_shard_images": 8192,
            "zarr_compressor": None,
            "zarr_checksum": False,
        },
        ("zarr",),
        "array",
        encoded="a variable-length bytes array, sharded",
    ),
    "tiledb": Format(
        {"tuned": "tiledb_store:TunedTiledb"},
        {"tiledb_tile_images": 4, "tiledb_compression": None},
        ("tiledb",),
        "array",
        encoded="a var-sized uint8 attribute",
    ),
    "sqlite": Format(
        {"tuned": "sqlite:TunedSqlite"},
        {"sqlite_page_size": 16384, "sqlite_txn_images": 10000},
        (),
        "key-value",
        encoded="a BLOB column, one row per image",
    ),
    "leveldb": Format(
        {"tuned": "leveldb:TunedLeveldb"},
        {
            "leveldb_batch_images": 10000,
            "leveldb_block_size": 65536,
            "leveldb_compression": None,
            "leveldb_verify_checksums": False,
        },
        ("plyvel",),
        "key-value",
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
    return dict(spec.options) if mode == Mode.TUNED else {}


def parallel_writes(fmt: str) -> str:
    """How a format's tuned build uses several writers ("" = it writes with one)."""
    return _spec(fmt).parallel_writes


def streams(fmt: str) -> bool:
    """True if the format can run the ``buffered`` (shard-streaming) epoch pattern."""
    return _spec(fmt).streams


def encoded(fmt: str) -> str:
    """How a format's tuned class stores encoded images ("" = it does not)."""
    return _spec(fmt).encoded


def option_defaults() -> dict[str, Any]:
    """Every store option key with its default (config.yaml and the schema mirror these)."""
    return {k: v for spec in FORMATS.values() for k, v in spec.options.items()}


def store_class(fmt: str, mode: str) -> type[Store]:
    """Import and return the class for a format and mode; one line if its library is missing."""
    spec = _spec(fmt)
    if mode not in spec.classes:
        raise KeyError(f"format {fmt!r} has no mode {mode!r}; it has: {', '.join(spec.classes)}")
    module, cls = spec.classes[mode].split(":")
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == __name__.split(".")[0]:
            raise
        raise MissingLibraryError(
            f"format {fmt!r} needs the Python package {' / '.join(spec.packages) or exc.name} "
            f"(import of {exc.name!r} failed); install it: pip install -r requirements.txt"
        ) from None
    return getattr(mod, cls)


def get_store(
    fmt: str, mode: str, opts: Mapping[str, Any] | None = None, workers: int = 1
) -> Store:
    """Instantiate the store for *fmt* in *mode* with its options (flat config keys)."""
    allowed = options(fmt, mode)
    unknown = set(opts or {}) - set(allowed)
    if unknown:
        raise ValueError(f"{fmt}/{mode}: unknown options {sorted(unknown)}")
    return store_class(fmt, mode)({**allowed, **(opts or {})}, workers)
