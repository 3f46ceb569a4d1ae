"""Data side: files -> samples, augmentations. One file per modality, registered by name."""

from omnipatch.modalities import image  # noqa: F401  (registers "image")
from omnipatch.modalities import audio, video  # noqa: F401  (register "audio", "video")
from omnipatch.modalities import climate, volume  # noqa: F401  (register "climate", "volume")
from omnipatch.modalities import pointcloud, tabular  # noqa: F401  (register "pointcloud", "tabular")

__all__ = ["image"]
