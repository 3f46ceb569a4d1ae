"""Export to Hugging Face ``transformers`` (``omnipatch export --format hf``).

``import omnipatch.export; omnipatch.export.register()`` registers model_type ``omnipatch``;
:mod:`omnipatch.export.save` writes the folder, :mod:`omnipatch.export.hook` registers (lazily),
:mod:`omnipatch.export.hf` holds the ``transformers`` classes, :mod:`omnipatch.export.model_card`
the folder's ``README.md``.
"""

from __future__ import annotations

from omnipatch.export.hook import install_import_hook, register
from omnipatch.export.save import FORMATS, export_hf, hf_config_dict

__all__ = ["export_hf", "register", "install_import_hook", "hf_config_dict", "FORMATS"]
