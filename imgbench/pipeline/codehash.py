"""Which code a result came from: the git commit and dirty flag of the checkout, and a hash
per experiment family over every ``imgbench`` module that family imports.

A rule's ``code_hash`` param reruns exactly the jobs whose code changed: the hash covers
the family's module and everything it imports, directly or not (module-level,
function-local and ``TYPE_CHECKING`` imports, found with :mod:`ast`, nothing imported), plus
the job's own format module(s), which the registry names lazily ("module:Class"), so a
change to the LMDB store reruns LMDB jobs only. A package's ``__init__`` counts when it is
imported by name (``from imgbench.stores import FORMATS``), not merely because a submodule
below it is: ``imgbench/experiments/__init__.py`` imports every family, and counting it would
tie every family to every other.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path

import imgbench
from imgbench import stores

#: environment variables that carry the commit and dirty flag from the main Snakemake
#: process to every job (see workflow/rules/common.smk for why not params)
ENV_COMMIT = "IMGBENCH_COMMIT"
ENV_DIRTY = "IMGBENCH_DIRTY"
UNKNOWN = "unknown"


def git_state(repo: Path) -> tuple[str, bool]:
    """(HEAD sha, True if tracked files have uncommitted changes); ("unknown", False)
    outside a git checkout or without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN, False
    return commit, dirty


def export_git_state(repo: Path, main_process: bool) -> tuple[str, bool]:
    """Put the checkout's commit and dirty flag in the environment, once: the main process
    computes them; a job that re-parses the workflow (e.g. on a SLURM node, which needs no
    git) keeps the values it inherited."""
    if main_process or ENV_COMMIT not in os.environ:
        commit, dirty = git_state(repo) if main_process else (UNKNOWN, False)
        os.environ[ENV_COMMIT] = commit
        os.environ[ENV_DIRTY] = "true" if dirty else "false"
    return job_git_state()


def job_git_state(environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """The commit and dirty flag a job was handed (``unknown`` if none)."""
    return environ.get(ENV_COMMIT, UNKNOWN), environ.get(ENV_DIRTY) == "true"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file of every module under the package folder *root*."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: Iterable[str]) -> str | None:
    """The deepest known module a dotted import name refers to (``a.b.Class`` -> ``a.b``)."""
    known = set(mods)
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def imports_of(module: str, path: Path, mods: Iterable[str]) -> set[str]:
    """The package modules one source file imports, wherever the import statement sits."""
    known = set(mods)
    is_pkg = path.name == "__init__.py"
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name, known) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_pkg]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                found.add(_resolve(f"{base}.{a.name}", known) or _resolve(base, known))
    return {m for m in found if m and m != module}


class CodeHasher:
    """Import graph of one package and the code hashes derived from it (memoised)."""

    def __init__(self, root: Path | None = None, package: str = "imgbench") -> None:
        self.root = Path(root or Path(imgbench.__file__).parent)
        self.package = package
        self._hashes: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    @cached_property
    def files(self) -> dict[str, Path]:
        return module_files(self.root, self.package)

    @cached_property
    def graph(self) -> dict[str, set[str]]:
        return {m: imports_of(m, p, self.files) for m, p in self.files.items()}

    def closure(self, roots: Iterable[str]) -> set[str]:
        """The *roots* and every package module they import, directly or not."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            if m not in self.graph:
                raise KeyError(f"module {m} is not in {self.root} (a renamed module?)")
            seen.add(m)
            todo.extend(self.graph[m])
        return seen

    def hash(self, *roots: str, alone: tuple[str, ...] = ()) -> str:
        """sha256 over the names and sources of the closure of *roots*, plus the modules
        *alone* without what they import (first 16 hex)."""
        key = (tuple(sorted(set(roots))), tuple(sorted(set(alone))))
        if key not in self._hashes:
            h = hashlib.sha256()
            for m in sorted(self.closure(key[0]) | set(key[1])):
                h.update(m.encode() + b"\0" + self.files[m].read_bytes() + b"\0")
            self._hashes[key] = h.hexdigest()[:16]
        return self._hashes[key]

    @cached_property
    def experiments(self) -> dict[str, str]:
        """Experiment name -> its family module, read from the registry's imports in
        ``experiments/__init__.py`` (importing it would load every family at parse)."""
        pkg = f"{self.package}.experiments"
        tree = ast.parse(self.files[pkg].read_text())
        return {
            a.asname or a.name: node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(pkg + ".")
            for a in node.names
        }

    def format_modules(self, fmt: str) -> list[str]:
        """The modules of a format's classes ("module:Class", relative to the stores package
        or absolute)."""
        out = set()
        for spec in stores.FORMATS[fmt].classes.values():
            mod = spec.split(":")[0]
            out.add(mod if mod in self.files else f"{self.package}.stores.{mod}")
        return sorted(out)

    def experiment_hash(self, experiment: str, fmt: str | None) -> str:
        """Code hash of one timed job: its experiment family, its own format's module (and,
        for an object-storage job, the format's S3 reader; none for the probe), and the glue
        that builds its Job (its defaults are part of what is measured; alone: it imports
        the experiments package, which imports every family)."""
        glue = (f"{self.package}.pipeline.snake",)
        mods = self.format_modules(fmt) if fmt else []
        if fmt and experiment.startswith("s3_") and stores.FORMATS[fmt].s3:
            mods.append(f"{self.package}.stores.remote.{stores.FORMATS[fmt].s3.split(':')[0]}")
        return self.hash(self.experiments[experiment], *mods, alone=glue)

    def step_hash(self, step: str) -> str:
        """Code hash of an untimed step ("package.module:function")."""
        return self.hash(step.split(":")[0])
