"""The core's layout (issue 16): command-line code only in ``toolkit/cli/``, and every
subpackage of ``toolkit/`` listed in pyproject (setuptools installs only the listed ones)."""

from __future__ import annotations

import ast

import pytest

from tests.architecture.imports import ROOT

CORE = ROOT / "toolkit"


def test_library_modules_hold_no_argparse_code():
    hits = []
    for p in sorted(CORE.rglob("*.py")):
        if p.relative_to(CORE).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if "argparse" in names or (isinstance(node, ast.ImportFrom) and node.module == "argparse"):
                hits.append(f"{p.relative_to(ROOT)}: imports argparse")
            if isinstance(node, ast.Attribute) and node.attr in ("add_argument", "add_parser", "add_subparsers"):
                hits.append(f"{p.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not hits, f"command-line code belongs in toolkit/cli/: {hits}"


def test_every_core_subpackage_is_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"omnipatch." + ".".join(p.parent.relative_to(CORE).parts) for p in CORE.rglob("__init__.py")
             if p.parent != CORE}
    assert found <= set(conf["packages"]), f"missing from [tool.setuptools] packages: {sorted(found - set(conf['packages']))}"
    dirs = conf["package-dir"]
    assert all(dirs.get(pkg) == "toolkit/" + pkg.removeprefix("omnipatch.").replace(".", "/") for pkg in found), dirs
