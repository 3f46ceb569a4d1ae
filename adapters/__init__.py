"""Learnable tokenizers: samples <-> PatchTokens. One file per modality."""

from omnipatch.adapters.audio import AudioAdapter  # noqa: F401
from omnipatch.adapters.climate import ClimateAdapter  # noqa: F401
from omnipatch.adapters.grid import GridAdapter
from omnipatch.adapters.image import ImageAdapter
from omnipatch.adapters.pointcloud import PointCloudAdapter  # noqa: F401
from omnipatch.adapters.tabular import TabularAdapter  # noqa: F401
from omnipatch.adapters.video import VideoAdapter  # noqa: F401
from omnipatch.adapters.volume import VolumeAdapter  # noqa: F401

__all__ = ["GridAdapter", "ImageAdapter"]
