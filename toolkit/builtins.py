"""The bundled modalities and adapters, registered as plugins.

This is the only module of ``toolkit/`` that imports ``omnipatch.modalities`` and
``omnipatch.adapters``. Nothing imports it by name: the ``MODALITIES`` and ``ADAPTERS``
registries (:mod:`omnipatch.modality`) load it lazily, on their first look-up, through the
same mechanism as a third-party plugin's entry point (``builtins=`` of
:class:`~omnipatch.registry.Registry`). So the core below the registries never imports a
modality, there is no import loop, and every library entry point (``pretrain``,
``finetune``, ``omnipatch.load``, ``transformers.AutoModel.from_pretrained``, ...) finds the
built-ins without a call of its own.

Importing this module (or ``omnipatch.modality.load_builtin()``, kept as a deprecated
alias) registers them eagerly.
"""

from __future__ import annotations

import omnipatch.adapters  # noqa: F401  (registers the bundled adapters)
import omnipatch.modalities  # noqa: F401  (registers the bundled modalities)

#: the registry reference of this module (what ``Registry(builtins=...)`` imports)
REFERENCE = __name__
