"""Committed files that code generates (config blocks, docs pages): one command-line shape.

Why one: the files are committed so they can be read without running anything, and a test
fails when one drifts from the code; each generator then needs "report what differs" and
"rewrite" the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def main(
    description: str,
    generated: Callable[[Path], dict[Path, str]],
    stale: Callable[[Path], list[str]],
    in_step: str,
    repo: Path,
    argv: list[str] | None = None,
) -> int:
    """Rewrite every generated file (``--write``), or print what differs and exit 1."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", action="store_true", help="rewrite the generated files")
    parser.add_argument("--repo", type=Path, default=repo)
    args = parser.parse_args(argv)
    if args.write:
        for path, text in generated(args.repo).items():
            (args.repo / path).write_text(text)
        return 0
    problems = stale(args.repo)
    print("\n".join(problems) or in_step)
    return 1 if problems else 0
