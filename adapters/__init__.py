"""Learnable tokenizers: samples <-> PatchTokens. One file per modality."""

from omnipatch.adapters.grid import GridAdapter
from omnipatch.adapters.image import ImageAdapter

__all__ = ["GridAdapter", "ImageAdapter"]
