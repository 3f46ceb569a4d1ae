"""A small named registry with descriptions, "did you mean" errors and entry-point plugins."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from omnipatch.errors import OmnipatchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, specs) with one-line descriptions.

    Args:
        kind: what is registered ("modality", "objective", ...), used in error messages.
        entry_point_group: optional ``importlib.metadata`` group scanned once, lazily, so
            third-party packages can register plugins (as xarray's backends do).
        builtins: optional module name imported lazily before the entry points, the way an
            entry point is: the package's own plugins (``"omnipatch.builtins"``), so the
            registry's module never imports them and no import loop forms.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, builtins: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._plugins_loaded = False
        self._default: str | None = None

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", "one line")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, description)
            return obj

        return deco

    def add(self, name: str, obj: T, description: str = "") -> None:
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        doc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        self._descriptions[name] = doc

    def set_default(self, name: str) -> None:
        """Name the entry used when a caller names none (a plugin may set it; the last one wins)."""
        self._default = name

    def default(self) -> str:
        """The entry used when a caller names none (after the plugins are loaded)."""
        self._load_plugins()
        if self._default is None:
            raise OmnipatchError(f"no default {self.kind} is registered: name one "
                                 f"(known: {', '.join(sorted(self._items)) or 'none'})")
        return self._default

    def load_plugins(self) -> None:
        """Import the built-in plugin module and the entry-point plugins (once)."""
        self._load_plugins()

    def _load_plugins(self) -> None:
        if self._plugins_loaded or not (self.entry_point_group or self.builtins):
            return
        self._plugins_loaded = True
        if self.builtins:
            importlib.import_module(self.builtins)  # registers the package's own plugins
        if not self.entry_point_group:
            return
        for ep in entry_points(group=self.entry_point_group):
            ep.load()  # importing the plugin module registers its entries

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._items:
            raise OmnipatchError(self._unknown(name))
        return self._items[name]

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items)) or 'none'})"

    def describe(self) -> dict[str, str]:
        self._load_plugins()
        return dict(sorted(self._descriptions.items()))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._items)
