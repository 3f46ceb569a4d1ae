"""Typed per-modality options: how a modality declares them, and what the core reads from them.

A modality declares the options of its dataset (``DataOptions``) and those its adapter takes
from the user (``AdapterOptions``) as dataclasses; every field says why its default is what
it is, and whether it is a command-line flag of its own::

    @dataclass(frozen=True)
    class DataOptions:
        variables: list[str] | None = option(None, "every gridded variable with a time axis",
                                             what="comma-separated variable names", flag=True)

These classes are the one source of the defaults: :class:`~omnipatch.modality.ModalitySpec`
derives its ``options`` dict from them, the dataset's ``_open`` and the adapter's kwargs read
their values through :func:`pick`, the data flags (:mod:`omnipatch.cli.dataflags`) are built from
the fields marked ``flag`` and parse text by the field's type (:func:`parse_text`), and
``omnipatch list`` prints :func:`describe`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from omnipatch.errors import OmnipatchError


def option(default: Any, reason: str, *, what: str = "", flag: bool = False) -> Any:
    """A dataclass field for a modality option.

    Args:
        default: the default value (lists are copied per instance).
        reason: why this is the default (``omnipatch list`` prints it).
        what: what the option is, in a few words (the flag's help; default: the reason).
        flag: also a command-line flag ``--NAME`` of every data-reading command.
    """
    meta = {"help": reason, "what": what, "flag": flag}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """One declared option, as ``omnipatch list`` and the flag builder see it."""

    name: str
    default: Any
    type: str
    reason: str
    what: str
    flag: bool
    group: str  # "data" or "adapter"


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: the field's text stands in
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise OmnipatchError(f"option {f.name!r} has no default (every modality option needs one)")


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", None) if isinstance(tp, type) else \
        str(tp).replace("typing.", "")


def defaults(cls: type | None) -> dict[str, Any]:
    """``{name: default}`` of an options dataclass (``{}`` for None)."""
    return {f.name: _default(f) for f in dataclasses.fields(cls)} if cls is not None else {}


def describe(cls: type | None, group: str = "data") -> list[OptionInfo]:
    """The fields of an options dataclass with their defaults, types and reasons."""
    if cls is None:
        return []
    hints = _hints(cls)
    return [OptionInfo(f.name, _default(f), _type_name(hints.get(f.name, f.type)), f.metadata.get("help", ""),
                       f.metadata.get("what", ""), bool(f.metadata.get("flag", False)), group)
            for f in dataclasses.fields(cls)]


def pick(cls: type, options: Mapping[str, Any]):
    """An instance of ``cls`` with the values of ``options`` for its fields (others ignored),
    the declared defaults for the rest. A value of None means "the default" only where the
    default is None itself; values are taken as given (the reader checks them)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names})


def field_type(cls: type, name: str) -> Any:
    """The resolved annotation of field ``name`` of ``cls``."""
    return _hints(cls).get(name, Any)


def parse_text(tp: Any, text: str, key: str) -> Any:
    """``text`` (a flag's or ``--option``'s value) as a value of type ``tp``: ``"a,b"`` for a
    list, numbers for int / float, true/false for bool, ``none`` for an optional field; JSON
    is accepted for any of them.

    Raises:
        OmnipatchError: naming ``key`` and the type it expects.
    """
    text = text.strip()
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:  # X | None
        return parse_text(args[0], text, key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for alt in sorted(args, key=lambda a: typing.get_origin(a) in (list, tuple)):  # scalars first
            try:
                return parse_text(alt, text, key)
            except OmnipatchError:
                continue
        raise OmnipatchError(f"{key}: cannot parse {text!r} as {_type_name(tp)}")
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        inner = (typing.get_args(tp) or (Any,))[0]
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        items = parsed if isinstance(parsed, list) else [x.strip() for x in text.split(",") if x.strip()]
        return [parse_text(inner, x, key) if isinstance(x, str) else x for x in items]
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise OmnipatchError(f"{key} expects true/false, got {text!r}")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise OmnipatchError(f"{key} expects {'an integer' if tp is int else 'a number'}, got {text!r}") from None
    if tp is str:
        return text
    try:  # Any or an annotation we do not model: JSON when it parses, else the text
        return json.loads(text)
    except ValueError:
        return text
