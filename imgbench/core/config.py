"""Make ``--config key=value`` overrides mean what users typed.

Snakemake parses a ``--config`` value with YAML's BaseLoader when it is not a plain number,
so ``cutoffs=[10,100]`` arrives as ``["10", "100"]`` and ``cifar_md5=null`` as ``"null"``.
We convert such strings back before the JSON schema sees them; anything else is left alone
for the schema to judge.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_NULL = {"null", "~", "none", "None", "NULL"}


def _scalar(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    if v in _NULL:
        return None
    if v in ("true", "True"):
        return True
    if v in ("false", "False"):
        return False
    if _INT.match(v):
        return int(v)
    if _FLOAT.match(v):
        return float(v)
    return v


def normalize(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy with command-line strings turned into numbers, booleans and nulls."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, list):
            out[key] = [_scalar(v) for v in value]
        elif key in ("cifar_url", "lance_storage_version"):  # free text: never reinterpret
            out[key] = value
        elif key == "images_dir":  # a path (even "2024"), or null
            out[key] = None if value in (None, "", "null", "None") else str(value)
        else:
            out[key] = _scalar(value)
    return out


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Short, key-order independent fingerprint of a config (groups identical setups)."""
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
