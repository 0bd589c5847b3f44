"""The format registry: one module per format, one line each here.

To add a format, write ``imgbench/stores/<name>.py`` with ``STORES = {mode: StoreClass}``
(see :mod:`imgbench.stores.base`) and add it to :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from imgbench.stores import hdf5, lmdb_store, npy, png
from imgbench.stores.base import Store

FORMATS: dict[str, ModuleType] = {
    "png": png,
    "lmdb": lmdb_store,
    "hdf5": hdf5,
    "npy": npy,
}


def store_class(fmt: str, mode: str) -> type[Store]:
    """The Store class for a format and mode, with a clear error for unknown ones."""
    if fmt not in FORMATS:
        raise KeyError(f"unknown format {fmt!r}; registered: {', '.join(FORMATS)}")
    stores = FORMATS[fmt].STORES
    if mode not in stores:
        raise KeyError(f"format {fmt!r} has no mode {mode!r}; it has: {', '.join(stores)}")
    return stores[mode]


def get_store(
    fmt: str, mode: str, options: Mapping[str, Any] | None = None, workers: int = 1
) -> Store:
    """Instantiate the store for *fmt* in *mode* with its options (flat config keys)."""
    return store_class(fmt, mode)(options, workers)


def modes(fmt: str) -> list[str]:
    """The modes a registered format implements."""
    return list(FORMATS[fmt].STORES)


def option_defaults() -> dict[str, Any]:
    """Every store option key with its default (the config schema mirrors these)."""
    out: dict[str, Any] = {}
    for module in FORMATS.values():
        for cls in module.STORES.values():
            out.update(cls.OPTIONS)
    return out
