"""Data side: files -> samples, augmentations. One file per modality, registered by name."""

from omnipatch.modalities import image  # noqa: F401  (registers "image")

__all__ = ["image"]
