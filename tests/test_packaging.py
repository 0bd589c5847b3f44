"""The package as SLURM and conda jobs get it: built into a wheel and installed, not editable.

An editable install resolves any file under imgbench/, so a subpackage that pyproject.toml
forgets to ship (or a module that exists only in the work tree) passes every other test and
fails only on a cluster node. Here the wheel is built and every module imported from it alone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import REPO


def _source_modules() -> set[str]:
    return {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "imgbench").rglob("*.py")
    }


def test_the_wheel_ships_every_module_and_each_imports_from_it(tmp_path: Path) -> None:
    # Built from a copy: setuptools keeps a build/ folder in the source tree, and a module
    # deleted since the last build would still ship from it.
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "imgbench", src / "imgbench", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", src)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("imgbench-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    shipped = {
        ".".join(p.relative_to(unpacked).with_suffix("").parts).removesuffix(".__init__")
        for p in (unpacked / "imgbench").rglob("*.py")
    }
    assert shipped == _source_modules(), "pyproject.toml ships other modules than the tree has"

    # -S: no site processing, so the editable install's import hook (a .pth file) is not
    # loaded; the dependencies still come from this environment's site-packages, after it.
    check = (
        "import importlib, sys\n"
        f"root = {str(unpacked)!r}\n"
        f"for name in {sorted(shipped)!r}:\n"
        "    mod = importlib.import_module(name)\n"
        "    assert mod.__file__.startswith(root), (name, mod.__file__)\n"
        "print('imported', len(sys.modules))\n"
    )
    site = sysconfig.get_paths()["purelib"]
    run = subprocess.run(
        [sys.executable, "-S", "-c", check],
        env={"PYTHONPATH": f"{unpacked}:{site}", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
