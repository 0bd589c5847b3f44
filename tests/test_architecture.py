"""The package's folders are its layers: imports point down, nothing imports in a circle, no
module grows past 500 lines, and every dotted name the code loads lazily resolves.

The import graph is the one the rerun hashes use (imgbench.pipeline.codehash): every import
statement wherever it sits (module level, inside a function, under TYPE_CHECKING), read with
``ast``, so an import hidden in a function cannot route around a layer.
"""

from __future__ import annotations

import importlib
import re

import pytest

from imgbench.experiments import EXPERIMENTS
from imgbench.pipeline.codehash import CodeHasher
from imgbench.stores import FORMATS
from tests.conftest import REPO

#: bottom to top; a module may import its own folder and the folders before it
LAYERS = ["core", "data", "stores", "measure", "experiments", "report", "pipeline"]
MAX_LINES = 500


def _layer(module: str) -> int:
    parts = module.split(".")
    return -1 if len(parts) == 1 else LAYERS.index(parts[1])  # the bare package: no code


@pytest.fixture(scope="module")
def hasher() -> CodeHasher:
    return CodeHasher(REPO / "imgbench")


def test_every_module_sits_in_a_layer_folder(hasher):
    stray = [m for m in hasher.files if len(m.split(".")) > 1 and m.split(".")[1] not in LAYERS]
    flat = [m for m in hasher.files if len(m.split(".")) == 2 and m.split(".")[1] in LAYERS]
    flat = [m for m in flat if hasher.files[m].name != "__init__.py"]
    assert not stray and not flat, f"outside the layer folders: {stray + flat}"


def test_imports_point_down(hasher):
    upward = sorted(
        f"{m} ({LAYERS[_layer(m)]}) imports {d} ({LAYERS[_layer(d)]})"
        for m, deps in hasher.graph.items()
        for d in deps
        if _layer(d) > _layer(m)
    )
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles(hasher):
    assert not _cycles(hasher.graph), f"import circles: {_cycles(hasher.graph)}"


def test_the_circle_finder_finds_circles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_above_500_lines(hasher):
    long = {m: n for m, p in hasher.files.items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"modules above {MAX_LINES} lines: {long}"


def _load(spec: str) -> object:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_registry_names_classes_that_exist():
    for fmt, entry in FORMATS.items():
        for mode, spec in entry.classes.items():
            module = spec.split(":")[0]
            dotted = spec if module.startswith("imgbench.") else f"imgbench.stores.{spec}"
            assert isinstance(_load(dotted), type), f"{fmt}/{mode}: {spec}"


def test_every_step_and_experiment_a_rule_names_resolves():
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    steps = re.findall(r'step\("([\w.]+:\w+)"\)', rules)
    experiments = re.findall(r'experiment\("(\w+)"\)', rules)
    assert steps and experiments, "no step(...) or experiment(...) found: did the rules change?"
    for step in steps:
        assert callable(_load(step)), step
    missing = sorted(set(experiments) - set(EXPERIMENTS))
    assert not missing, f"rules name experiments that are not registered: {missing}"


def layer_report(hasher: CodeHasher) -> str:
    """The layers, their modules and imports: ``python -m tests.test_architecture``."""
    lines = []
    for i, layer in enumerate(LAYERS):
        mods = [m for m in hasher.files if _layer(m) == i]
        size = {m: len(hasher.files[m].read_text().splitlines()) for m in mods}
        longest = max(mods, key=size.__getitem__)
        edges = sum(len(hasher.graph[m]) for m in mods)
        lines.append(
            f"{layer:12} {len(mods):3} modules {edges:4} imports  longest {longest} "
            f"({size[longest]} lines)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(layer_report(CodeHasher(REPO / "imgbench")))
