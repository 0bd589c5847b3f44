"""Pins live in requirements.txt only; the other dependency lists are checked against it.

pyproject.toml names the package's own dependencies without versions, each format's
registry entry names its libraries, envs/bench.yaml repeats the pins in conda's names.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions

import yaml

from imgbench import stores
from tests.conftest import REPO

#: requirements.txt name -> conda-forge name, where they differ
CONDA_NAMES = {"lmdb": "python-lmdb", "matplotlib": "matplotlib-base"}
FIX = "pin it in requirements.txt (the one place for versions)"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """requirements.txt's name==version lines (comments and -e lines skipped)."""
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s#]+)", line)
        if m:
            out[_canon(m[1])] = m[2]
    return out


def core() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def runtime() -> set[str]:
    """What the package can import: its own dependencies and every format's libraries."""
    return {_canon(n) for n in [*core(), *stores.packages()]}


def test_pyproject_names_dependencies_without_pins() -> None:
    for req in core():
        assert re.fullmatch(r"[A-Za-z0-9._-]+", req), (
            f"pyproject.toml dependency {req!r} carries a version: keep names only there; {FIX}"
        )
        assert _canon(req) in pins(), f"pyproject.toml dependency {req!r}: {FIX}"


def test_every_format_library_is_pinned() -> None:
    for fmt, spec in stores.FORMATS.items():
        for pkg in spec.packages:
            assert _canon(pkg) in pins(), f"format {fmt!r} needs {pkg!r}: {FIX}"


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _imports(path) -> set[str]:
    """Distributions of the third-party modules a file imports (any depth, any place)."""
    dists = _distributions()
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top != "imgbench" and top not in sys.stdlib_module_names:
                out |= {_canon(d) for d in dists.get(top, [top])}
    return out


def test_every_import_is_declared() -> None:
    """A format module imports only the core and its own entry's packages; any other
    module only declared ones (a format library imported elsewhere, lazily, is fine)."""
    own = {
        cls.split(":")[0]: {_canon(p) for p in spec.packages}
        for spec in stores.FORMATS.values()
        for cls in spec.classes.values()
    }
    base = {_canon(n) for n in core()}
    for path in sorted((REPO / "imgbench").rglob("*.py")):
        rel = path.relative_to(REPO)
        is_format = rel.parent.name == "stores" and path.stem in own
        allowed = base | own[path.stem] if is_format else runtime()
        undeclared = _imports(path) - allowed
        where = "its registry entry's packages" if is_format else "pyproject.toml's dependencies"
        assert not undeclared, f"{rel} imports {sorted(undeclared)}: add to {where}; {FIX}"


def test_conda_env_pins_what_requirements_pin() -> None:
    env = yaml.safe_load((REPO / "envs" / "bench.yaml").read_text())
    conda = {}
    pip = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                name, sep, version = line.partition("==")
                if sep:
                    pip[_canon(name)] = version
        else:
            name, _, version = dep.partition("=")
            conda[name] = version
    want = pins()
    for name in sorted(runtime()):
        in_env = conda.get(CONDA_NAMES.get(name, name)) or pip.get(name)
        assert in_env == want[name], (
            f"envs/bench.yaml: {name} is {in_env}, requirements.txt pins {want[name]}; add "
            f"'{CONDA_NAMES.get(name, name)}={want[name]}' (or '{name}=={want[name]}' under pip:)"
        )
    to_pip = {conda_name: name for name, conda_name in CONDA_NAMES.items()}
    for name, version in [*((to_pip.get(n, n), v) for n, v in conda.items()), *pip.items()]:
        if name not in ("python", "pip"):
            assert want.get(name) == version, (
                f"envs/bench.yaml pins {name} {version}, requirements.txt {want.get(name)}"
            )
