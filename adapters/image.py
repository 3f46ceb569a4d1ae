"""Image adapter: 2-D patches on the grid adapter (ViT / MAE)."""

from __future__ import annotations

from omnipatch.adapters.grid import GridAdapter
from omnipatch.modality import ADAPTERS


@ADAPTERS.register("image", "2-D image patches (ViT/MAE), any channel count")
class ImageAdapter(GridAdapter):
    """Args: as :class:`GridAdapter` with ``patch_size`` an int or ``[ph, pw]``."""

    registry_name = "image"

    def __init__(self, in_chans: int, patch_size: int | list[int], dim: int,
                 mean: list[float] | None = None, std: list[float] | None = None, modality: str = "image",
                 pos_grid: list[int] | None = None):
        ps = [patch_size, patch_size] if isinstance(patch_size, int) else list(patch_size)
        super().__init__(modality, in_chans, ps, dim, mean, std, pos_grid)
