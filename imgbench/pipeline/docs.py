"""Generate the parts of docs/ that the code already knows, so they cannot drift from it.

- ``docs/configuration.md``, whole: every config key with its type, its default (from
  config.yaml), its allowed values and limits and its description (from the schema), grouped
  as config.yaml groups them (its ``# --- title ---`` lines).
- In ``docs/formats.md``, one block per registered format, between marker lines: its modes,
  family, packages, writers, encoded storage, tuned options (name, type, default, limits,
  description, source: the registry) and read tuning (each class's ``random_advice`` /
  ``io_depth_how`` or why not). The prose around the blocks is written by hand.

``python -m imgbench.pipeline.docs`` reports what differs (exit 1); ``--write`` rewrites it.
tests/test_docs.py fails when a committed page differs from what this module generates.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from imgbench import stores
from imgbench.core import generated as generated_files
from imgbench.stores import config_files

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path("config.yaml")
SCHEMA = Path("workflow/schemas/config.schema.yaml")
CONFIGURATION = Path("docs/configuration.md")
FORMATS = Path("docs/formats.md")
COMMAND = "python -m imgbench.pipeline.docs --write"
WIDTH = 100
_HEADER = re.compile(r"^# --- (?P<title>.+?) -*$")
_KEY = re.compile(r"^(?P<key>[a-z][a-z0-9_]*):")
#: schema keywords shown as limits, and how
_LIMITS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "at least {} characters",
    "minItems": "at least {} item(s)",
    "pattern": "matching `{}`",
}


def scalar(value: Any) -> str:
    """A config value as it is written in YAML (``null``, ``true``, ``[1, 2]``, ``"2.0"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, str) and yaml.safe_load(value) != value:
        return f'"{value}"'  # text YAML would read as another type
    return str(value)


def _type(prop: dict[str, Any]) -> str:
    t = prop.get("type", "any")
    types = t if isinstance(t, list) else [t]
    words = []
    for one in types:
        if one == "array":
            words.append(f"list of {_type(prop.get('items', {}))}")
        else:
            words.append(one)
    return " or ".join(words)


def _limits(prop: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in prop:
        out.append("one of " + ", ".join(f"`{scalar(v)}`" for v in prop["enum"]))
    out += [
        "non-empty" if k in ("minLength", "minItems") and prop[k] == 1 else fmt.format(prop[k])
        for k, fmt in _LIMITS.items()
        if k in prop
    ]
    if prop.get("uniqueItems"):
        out.append("no repeats")
    items = prop.get("items")
    inner = _limits(items) if isinstance(items, dict) else []
    if inner:
        out.append("each " + ", ".join(inner))
    return out


def _wrap(text: str, indent: str = "  ", first: str = "") -> str:
    lines = textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines)


def config_groups(config_text: str) -> list[tuple[str, list[str]]]:
    """config.yaml's groups in order: (title, keys), from its ``# --- title ---`` lines."""
    groups: list[tuple[str, list[str]]] = [("general", [])]
    for line in config_text.splitlines():
        header = _HEADER.match(line)
        if header:
            title = re.sub(r"\s*\(.*\)$", "", header["title"]).strip()
            if title.startswith(("store options, generated", "end of store options")):
                continue  # the generator's marker lines, inside the tuned-options group
            groups.append((title, []))
            continue
        key = _KEY.match(line)
        if key:
            groups[-1][1].append(key["key"])
    return [(t, keys) for t, keys in groups if keys]


def key_entry(key: str, prop: dict[str, Any], default: Any, indent: str = "") -> str:
    """One config key as a Markdown list item, wrapped at :data:`WIDTH`."""
    limits = "; ".join(_limits(prop))
    head = f"- **`{key}`** ({_type(prop)}{'; ' + limits if limits else ''}; "
    head += f"default `{scalar(default)}`): {prop.get('description', 'NO DESCRIPTION')}."
    source = str(prop.get("$comment", ""))
    if source.startswith("source: "):
        head += f" Source: {source.removeprefix('source: ')}."
    return _wrap(head, indent + "  ", indent)


def configuration_md(repo: Path = REPO) -> str:
    """docs/configuration.md as the schema and config.yaml say it should read."""
    config_text = (repo / CONFIG).read_text()
    defaults = yaml.safe_load(config_text)
    props = yaml.safe_load((repo / SCHEMA).read_text())["properties"]
    intro = (
        f"Generated by `{COMMAND}` from `{SCHEMA}` (types, limits, descriptions) and "
        f"`{CONFIG}` (defaults, groups); edit those, not this page. Snakemake validates the "
        "config against the schema before any job starts (unknown keys, wrong types, values "
        "out of range are refused); a cutoff above `n_images`, an unregistered format or an "
        "`epoch_sizes` entry missing from `image_sizes` is refused right after, in one line "
        "naming the key (imgbench/pipeline/plan.py). Override any key flat, e.g. "
        '`snakemake --cores all --config n_images=20000 "cutoffs=[10,100,1000]"`, or put '
        "several in a file for `--configfile my.yaml`. With a workflow profile that sets "
        "`config:` (profiles/full, profiles/capped, profiles/reference), use `--configfile`: "
        "a `--config` on the command line replaces the profile's whole `config:` list."
    )
    out = ["# Configuration", "", _wrap(intro, ""), ""]
    for title, keys in config_groups(config_text):
        out += [f"## {title[0].upper()}{title[1:]}", ""]
        out += [key_entry(k, props.get(k, {}), defaults.get(k)) for k in keys]
        out.append("")
    return "\n".join(out)


# -- formats.md blocks -------------------------------------------------------------------


def _begin(fmt: str) -> str:
    return f"<!-- generated by {COMMAND}: {fmt} -->"


def _end(fmt: str) -> str:
    return f"<!-- end generated: {fmt} -->"


def _read_tuning(fmt: str) -> list[str]:
    """How each mode's class applies readahead advice and reads in flight, or why not."""
    out = []
    for mode in stores.modes(fmt):
        cls = stores.store_class(fmt, mode)
        advice = cls.random_advice or f"not applied: {cls.random_advice_why_not}"
        depth = cls.io_depth_how or f"not applied: {cls.io_depth_why_not}"
        out.append(_wrap(f"- {mode}, `capped_advice: random`: {advice}.", "    ", "  "))
        out.append(_wrap(f"- {mode}, `io_depth` above 1: {depth}.", "    ", "  "))
    return out


def format_block(fmt: str) -> str:
    """The generated facts of one registered format (registry and store classes)."""
    spec = stores.FORMATS[fmt]
    lines = [
        _wrap(
            f"- Modes: {', '.join(spec.classes)}; family: {spec.family}; packages: "
            + (", ".join(f"`{p}`" for p in spec.packages) or "numpy and the standard library")
            + "."
        ),
        _wrap(
            "- Several writers (`writers`): "
            + (spec.parallel_writes or "no, one writer process whatever `writers` says")
            + "."
        ),
        _wrap(
            "- Encoded files (`payload: encoded`): "
            + (spec.encoded or f"not stored: {spec.encoded_why_not}")
            + "."
        ),
    ]
    if spec.streams:
        lines.append("- Streams its shards: runs the `buffered` epoch order.")
    if spec.options:
        lines.append("- Tuned options (declared in imgbench/stores/__init__.py):")
        props = config_files.schema_fragment()
        for opt in spec.options:
            lines.append(key_entry(opt.name, props[opt.name], opt.default, "  "))
    else:
        lines.append("- Tuned options: none.")
    lines.append("- Read tuning (`Store.tune_reads`, measured in the capped epochs):")
    lines += _read_tuning(fmt)
    lines += _object_storage(fmt)
    return "\n".join(lines) + "\n"


def _object_storage(fmt: str) -> list[str]:
    """How the format reads from S3 (its class in imgbench/stores/remote/), or why not."""
    spec = stores.FORMATS[fmt]
    if not spec.s3:
        return [_wrap(f"- Object storage (`s3_formats`): {spec.s3_why_not}.")]
    cls = stores.remote_class(fmt)
    full = f" (full read: {cls.full_access})" if cls.full_access else ""
    return [
        _wrap(
            f"- Object storage (`s3_formats`, `imgbench/stores/remote/{spec.s3.split(':')[0]}"
            f".py`): access `{cls.access}`{full}.",
            "  ",
        ),  # fmt: skip
        _wrap(f"- requests in flight: {cls.in_flight}.", "    ", "  "),
        _wrap(f"- options for ranged reads: {cls.tuned_for_s3}.", "    ", "  "),
    ]


def formats_md(text: str, formats: Iterable[str] | None = None) -> str:
    """*text* (docs/formats.md) with every format's block regenerated between its markers."""
    for fmt in formats if formats is not None else stores.FORMATS:
        begin, end = _begin(fmt), _end(fmt)
        head, sep, rest = text.partition(begin + "\n")
        _, sep2, tail = rest.partition(end + "\n")
        if not (sep and sep2):
            raise ValueError(
                f"{FORMATS}: no generated block for format {fmt!r}; add a section with these "
                f"two lines in it, then run {COMMAND}:\n{begin}\n{end}"
            )
        text = f"{head}{begin}\n{format_block(fmt)}{end}\n{tail}"
    return text


def generated(repo: Path = REPO) -> dict[Path, str]:
    """The generated pages as the code says they should read."""
    return {
        CONFIGURATION: configuration_md(repo),
        FORMATS: formats_md((repo / FORMATS).read_text()),
    }


def stale(repo: Path = REPO) -> list[str]:
    """One line per committed page that differs from what the code generates."""
    out = []
    for path, text in generated(repo).items():
        if not (repo / path).exists() or (repo / path).read_text() != text:
            out.append(f"{path} differs from the code that generates it; run {COMMAND}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Report (exit 1) or rewrite the generated pages."""
    return generated_files.main(
        __doc__.splitlines()[0], generated, stale, "docs/ match the code", REPO, argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
