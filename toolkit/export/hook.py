"""``omnipatch`` registered with ``transformers`` (``AutoConfig`` / ``AutoModel``), lazily.

:func:`register` imports ``transformers`` (through :mod:`omnipatch.export.hf`);
:func:`install_import_hook` (run by ``import omnipatch``) arranges for it to happen the moment
anything imports ``transformers``, so ``AutoModel.from_pretrained(HF_DIR)`` needs no extra
line and ``import omnipatch`` stays light.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def register():
    """Register ``omnipatch`` with ``AutoConfig`` / ``AutoModel``; returns the two classes."""
    from omnipatch.export.hf import OmnipatchConfig, OmnipatchModel

    return OmnipatchConfig, OmnipatchModel


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``transformers`` with the normal machinery, then registers once it has loaded."""

    def find_spec(self, name, path, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; the real finder resolves the package
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        spec.loader = self._loader  # leave the real loader behind for reloads and introspection
        self._loader.exec_module(module)
        if "omnipatch.export.hf" in sys.modules:  # transformers was imported by omnipatch.export.hf, which registers itself
            return
        try:
            register()
        except Exception as e:  # never break `import transformers` for the user
            print(f"omnipatch: could not register with transformers ({type(e).__name__}: {e})", file=sys.stderr)


def install_import_hook() -> None:
    """Register with ``transformers`` now if it is loaded, else as soon as it is imported."""
    if "transformers" in sys.modules:
        register()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


__all__ = ["register", "install_import_hook"]
