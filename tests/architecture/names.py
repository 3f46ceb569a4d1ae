"""Where ``toolkit/`` code names a modality or guesses a type with ``hasattr`` (``ast``).

The rule, decided for the "modality-blind core" test: *code* is identifiers (names,
attributes, function / class / argument / keyword names) and string constants. Words for
humans are not code: docstrings, f-strings (messages), the arguments of exception
constructors, ``print`` / ``warn`` / argparse calls, and ``help=`` / ``description=`` /
``metavar=`` keywords. A hit is a whole word (``_``-separated parts count) from
:data:`MODALITY_WORDS`, so ``image_size`` hits and ``imagery`` does not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "toolkit"
MODALITY_WORDS = frozenset({
    "image", "images", "audio", "video", "videos", "volume", "volumes", "climate", "pointcloud",
    "pointclouds", "tabular", "nifti", "netcdf", "zarr", "wav", "ply", "spectrogram", "spectrograms",
})
_HUMAN_CALLS = frozenset({"OmnipatchError", "BadSampleError", "ValueError", "TypeError", "KeyError",
                          "RuntimeError", "Exception", "NotImplementedError", "FileNotFoundError", "print",
                          "warn", "add_argument", "add_parser", "add_argument_group", "add_subparsers"})
_HUMAN_KWARGS = frozenset({"help", "description", "metavar", "epilog"})


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower().replace("_", " ")))


def _for_humans(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip |= {id(n) for n in ast.walk(node)}
        if isinstance(node, ast.Call):
            f = node.func
            fn = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fn in _HUMAN_CALLS:
                skip |= {id(n) for a in node.args for n in ast.walk(a)}
            skip |= {id(n) for k in node.keywords if k.arg in _HUMAN_KWARGS for n in ast.walk(k.value)}
    return skip


def _code_words(node: ast.AST, skip: set[int]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
        return node.value
    for kind, attr in ((ast.Name, "id"), (ast.Attribute, "attr"), (ast.FunctionDef, "name"),
                       (ast.ClassDef, "name"), (ast.arg, "arg"), (ast.keyword, "arg")):
        if isinstance(node, kind):
            return getattr(node, attr)
    return None


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def modality_names() -> list[tuple[str, int, str]]:
    """``(file, line, word)`` for every modality word in core code."""
    hits = []
    for p in core_files():
        tree = ast.parse(p.read_text())
        skip = _for_humans(tree)
        for node in ast.walk(tree):
            text = _code_words(node, skip)
            if text:
                for w in sorted(_words(text) & MODALITY_WORDS):
                    hits.append((str(p.relative_to(ROOT)), node.lineno, w))
    return hits


def hasattr_guesses() -> list[tuple[str, int, str]]:
    """``(file, line, attribute)`` for every ``hasattr(obj, "attribute")`` in core code."""
    hits = []
    for p in core_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" \
                    and len(node.args) == 2:
                attr = node.args[1].value if isinstance(node.args[1], ast.Constant) else "?"
                hits.append((str(p.relative_to(ROOT)), node.lineno, attr))
    return hits
