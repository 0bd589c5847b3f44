"""Keep config.yaml and the config schema in step with the format registry.

Both stay committed, readable files (users edit config.yaml; Snakemake validates against
the schema), but their store-option blocks are generated from :data:`FORMATS`, between
marker lines, so an option is declared once. ``python -m imgbench.stores.config_files``
reports what differs; ``--write`` rewrites the blocks (and the schema's ``required`` list).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import yaml

from imgbench import stores
from imgbench.core import generated as generated_files

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path("config.yaml")
SCHEMA = Path("workflow/schemas/config.schema.yaml")
FIX = "regenerate them: python -m imgbench.stores.config_files --write"
BEGIN = "# --- store options, generated: python -m imgbench.stores.config_files --write"
END = "# --- end of store options (declared in imgbench/stores/__init__.py: edit them there)"
WIDTH = 100


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists (``type: [string, 'null']``): the schema's own style."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def schema_fragment() -> dict[str, dict[str, Any]]:
    """The config schema's properties for every store option, as the registry declares
    them; workflow/schemas/config.schema.yaml must hold exactly these."""
    return {
        o.name: {
            "type": list(o.type) if isinstance(o.type, tuple) else o.type,
            **o.limits,
            "default": o.default,
            "description": o.description,
            "$comment": f"source: {o.source}",
        }
        for o in stores.option_list()
    }


def schema_block() -> str:
    """The schema's store-option properties, indented as in ``properties:``."""
    text = yaml.dump(schema_fragment(), Dumper=_Dumper, sort_keys=False, width=WIDTH - 4)
    return textwrap.indent(text, "  ")


def config_block() -> str:
    """config.yaml's store-option lines: each key under its description and source."""
    lines = []
    for opt in stores.option_list():
        comment = f"{opt.description}. Source: {opt.source}."
        lines += textwrap.wrap(comment, WIDTH, initial_indent="# ", subsequent_indent="# ")
        lines.append(f"{opt.name}: {json.dumps(opt.default)}")  # JSON scalars are YAML
    return "\n".join(lines) + "\n"


def _replace(text: str, block: str, indent: str, path: Path) -> str:
    """*text* with the lines between its marker lines replaced by *block*."""
    begin = indent + BEGIN
    head, sep, rest = text.partition(begin + "\n")
    _, sep2, tail = rest.partition(indent + END + "\n")
    if not (sep and sep2):
        raise ValueError(
            f"{path}: marker lines missing; put these two lines where the store options go:\n"
            f"{begin}\n{indent}{END}"
        )
    return f"{head}{begin}\n{block}{indent}{END}\n{tail}"


def _required(text: str) -> str:
    """The schema text with ``required:`` (its last key) listing every property."""
    keys = list(yaml.safe_load(text)["properties"])
    head = text[: text.index("\nrequired:") + 1]
    flow = textwrap.fill(", ".join(keys), WIDTH - 1, initial_indent="required: [")
    return head + flow.replace("\n", "\n  ") + "]\n"


def generated(repo: Path = REPO) -> dict[Path, str]:
    """The two files as the registry says they should read."""
    config = (repo / CONFIG).read_text()
    schema = (repo / SCHEMA).read_text()
    return {
        CONFIG: _replace(config, config_block(), "", CONFIG),
        SCHEMA: _required(_replace(schema, schema_block(), "  ", SCHEMA)),
    }


def stale(repo: Path = REPO) -> list[str]:
    """One line per committed file that differs from the registry (empty: in step)."""
    return [
        f"{path} differs from the format registry (imgbench/stores/__init__.py); {FIX}"
        for path, text in generated(repo).items()
        if (repo / path).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Report (exit 1) or rewrite the files that differ from the registry."""
    return generated_files.main(
        __doc__.splitlines()[0],
        generated,
        stale,
        "config.yaml and the schema match the registry",
        REPO,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
