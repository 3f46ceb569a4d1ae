"""Data side: files -> samples, augmentations. One file per modality, registered by name."""

from omnipatch.modalities import (  # noqa: F401  (register "audio", "video")  # noqa: F401  (register "climate", "volume")  # noqa: F401  (register "pointcloud", "tabular")
    audio,
    climate,
    image,  # noqa: F401  (registers "image")
    pointcloud,
    tabular,
    video,
    volume,
)

__all__ = ["image"]
