"""omnipatch: self-supervised pretraining for scientific data of any modality.

``import omnipatch`` stays light: no modality library (nibabel, xarray, torchaudio, open3d,
av, soundfile, pandas) is imported until a modality needs it.
"""

from __future__ import annotations

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.tokens import PatchTokens

__version__ = "0.1.0"


def _hf_hook() -> None:
    # transformers.AutoModel.from_pretrained(dir) works once omnipatch is imported; the hook
    # registers the model classes only when transformers itself gets imported (stays light)
    from omnipatch.export import install_import_hook

    install_import_hook()


_hf_hook()


def load(run_dir=None, device: str = "auto", random_init: bool = False, **kwargs):
    """Load a pretrained run: ``omnipatch.load(RUN_DIR).embed(paths_or_tensor)``; or start from a
    public checkpoint: ``omnipatch.load(init="timm:NAME=FILE", modality="image", data=SRC)``
    (keywords: :func:`omnipatch.api.load`)."""
    from omnipatch.api import load as _load

    return _load(run_dir, device=device, random_init=random_init, **kwargs)


__all__ = ["Batch", "Sample", "PatchTokens", "OmnipatchError", "BadSampleError", "load", "__version__"]
