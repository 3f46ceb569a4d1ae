"""One run record (issue 16): a checkpoint's config is read through :class:`omnipatch.runspec.RunSpec`.

No package code outside ``toolkit/runspec.py`` digs the run sections out of a checkpoint
config (``cfg["run"]["data"]``, ``...["data"]["options"]``) or splits a modality string
(``cfg["modality"].split(",")``); :func:`omnipatch.modality.modality_list` is the one split."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("toolkit", "modalities", "adapters")
ALLOWED = {"toolkit/runspec.py"}


def _key(node: ast.AST) -> str | None:
    return node.slice.value if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
        and isinstance(node.slice.value, str) else None


def _hits(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    out = []
    for node in ast.walk(tree):
        inner = getattr(node, "value", None)
        if isinstance(node, ast.Subscript) and _key(inner) == "run":  # x["run"][...]
            out.append(f"{where}:{node.lineno}: digs x['run'][{_key(node)!r}]")
        if isinstance(node, ast.Subscript) and _key(node) == "options" and _key(inner) == "data":
            out.append(f"{where}:{node.lineno}: digs x['data']['options']")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split" \
                and "modality" in ast.unparse(node.func.value):
            if not (path.name == "modality.py" and _in_function(tree, node, "modality_list")):
                out.append(f"{where}:{node.lineno}: splits a modality string "
                           f"({ast.unparse(node)})")
    return out


def _in_function(tree: ast.AST, target: ast.AST, name: str) -> bool:
    return any(isinstance(f, ast.FunctionDef) and f.name == name and any(n is target for n in ast.walk(f))
               for f in ast.walk(tree))


def test_no_reparsing_of_the_run_record_outside_runspec():
    hits = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if str(path.relative_to(ROOT)) not in ALLOWED:
                hits += _hits(path)
    assert hits == [], "read the checkpoint config through omnipatch.runspec.RunSpec:\n" + "\n".join(hits)


def test_the_check_sees_what_it_forbids(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text('def f(cfg, a):\n    x = cfg["run"]["data"]\n    y = cfg["data"]["options"]\n'
                   '    return a.modality.split(",")\n')
    assert len(_hits(bad)) == 3
