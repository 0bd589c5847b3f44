"""Make ``--config key=value`` overrides mean what users typed, guided by the schema.

Snakemake turns a ``--config`` value into an int, a float or a bool when it can, else parses
it with YAML's BaseLoader, which keeps every scalar a string: ``cutoffs=[10,100]`` arrives as
``["10", "100"]`` and ``cifar_md5=null`` as ``"null"``. Each key's type in the config schema
decides what such a value means: for a string key text stays text (``cifar_url=123``,
``images_dir=2024``) and a number Snakemake made from it goes back to text
(``lance_storage_version=2.0`` -> ``"2.0"``; quote it, ``'x="007"'``, to keep the digits
exactly); for numbers, booleans, nulls and arrays the string goes through ``yaml.safe_load``.
Anything else is left for the schema to judge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def _types(prop: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema property allows (from ``type``, else from its ``enum``)."""
    declared = prop.get("type")
    if declared is not None:
        return {declared} if isinstance(declared, str) else set(declared)
    names = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    return {names.get(type(v), "string") for v in prop.get("enum", [])}


def _load(text: str) -> Any:
    """YAML's reading of *text*; text that is not valid YAML stays text (the schema says why)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _value(value: Any, prop: Mapping[str, Any]) -> Any:
    types = _types(prop)
    if isinstance(value, list):
        return [_value(v, prop.get("items", {})) for v in value] if "array" in types else value
    if "string" in types:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value if types & {"integer", "number"} else str(value)
        if isinstance(value, str) and "null" in types and _load(value) is None:
            return None  # "null", "~" or "" where null is allowed
        return value
    if isinstance(value, str) and types:
        return _load(value)
    return value


def normalize(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy with command-line strings given the types the schema declares
    (default: workflow/schemas/config.schema.yaml); keys it does not know stay as given."""
    props = (schema if schema is not None else _schema()).get("properties", {})
    return {key: _value(value, props.get(key, {})) for key, value in config.items()}


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Short, key-order independent fingerprint of a config (groups identical setups)."""
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
