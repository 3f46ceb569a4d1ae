"""The package's import graph, from its sources (``ast``), without importing anything.

Every ``import`` / ``from ... import`` statement counts, at module level or inside a function
(a lazy import is still a dependency). Importing ``a.b.c`` also depends on the packages
``a.b`` (their ``__init__`` runs first) -- except the importer's own packages (a module
always runs inside its package; a package's ``__init__`` importing its own submodules is not a
loop) and the root ``omnipatch``: its ``__init__`` is a
facade (re-exports and the lazy ``omnipatch.load`` front door) that no module imports for
behaviour. Dynamic imports by name (the registries' plugin loading: entry points and
``Registry(builtins="omnipatch.builtins")``) are not edges, by design: that is how plugins
plug in.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: package name -> source folder (pyproject's package-dir)
PACKAGES = {"omnipatch": "toolkit", "omnipatch.modalities": "modalities", "omnipatch.adapters": "adapters"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for p in sorted((ROOT / folder).rglob("*.py")):
            parts = list(p.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = p
    return out


def _owner(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(name: str, path: Path, mods: dict | None = None) -> set[str]:
    """Dotted names ``path`` imports (absolute, relative ones resolved), anywhere in the file;
    ``from pkg import submodule`` names the submodule only (``pkg`` is its package)."""
    mods = modules() if mods is None else mods
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                b = base
                for _ in range(node.level - 1):
                    b = b.rpartition(".")[0]
                mod = f"{b}.{mod}" if mod else b
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods}
            out |= subs | ({mod} if len(subs) < len(node.names) else set())
    return {n for n in out if n == "omnipatch" or n.startswith("omnipatch.")}


def graph() -> dict[str, set[str]]:
    """``module -> modules it depends on`` (see the module docstring for the rules)."""
    mods = modules()
    g = {}
    for name, path in mods.items():
        deps = set()
        for n in imported_names(name, path, mods):
            owner = _owner(n, mods)
            if owner is None or owner == "omnipatch":
                continue
            deps.add(owner)
            owner = owner.rpartition(".")[0]
            while owner and owner != "omnipatch" and not name.startswith(owner + "."):
                deps.add(owner)  # its packages too, unless they are the importer's own
                owner = owner.rpartition(".")[0]
        deps.discard(name)
        g[name] = deps
    return g


def cycles(g: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out
