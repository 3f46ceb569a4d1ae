"""Video adapter: spatio-temporal tubelets ``t x p x p`` on the grid adapter in 3-D (VideoMAE,
Tong et al., 2022).

Input ``x (B, C, T, H, W)``; tokens are tubelets in row-major (time, row, column) order, so
the grid is ``(T/t, H/p, W/p)`` with time first, which is what tube masking (one spatial
mask shared by every time step) expects. Each token's time step is exposed as its group,
so ``group`` masking hides whole time steps. Targets are the tubelets' normalised pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnipatch.adapters.grid import GridAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens


@ADAPTERS.register("video", "spatio-temporal tubelets t x p x p (VideoMAE), any channel count")
class VideoAdapter(GridAdapter):
    """Args:
        in_chans: channels C (3 RGB, 1 grey).
        patch_size: ``[t, p, p]`` tubelet (``[t, ph, pw]``); an int ``p`` means ``[2, p, p]``.
        dim: token width (the encoder's).
        mean, std: per-channel pixel statistics of the data set (length C).
        modality: modality name.
    """

    registry_name = "video"

    def __init__(self, in_chans: int = 3, patch_size: int | list[int] = (2, 8, 8), dim: int = 192,
                 mean: list[float] | None = None, std: list[float] | None = None, modality: str = "video",
                 pos_grid: list[int] | None = None):
        ps = [2, patch_size, patch_size] if isinstance(patch_size, int) else list(patch_size)
        if len(ps) != 3:
            raise OmnipatchError(f"video patch_size is [t, ph, pw], got {patch_size}")
        super().__init__(modality, in_chans, ps, dim, mean, std, pos_grid)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_chans:
            raise OmnipatchError(f"{self.modality}: expected clips (B, C={self.in_chans}, T, H, W), "
                                 f"got {tuple(x.shape)}")
        super()._check(x)

    def tokenize(self, batch: Batch) -> PatchTokens:
        t = super().tokenize(batch)
        gt, gh, gw = t.grid
        groups = torch.arange(gt, device=t.tokens.device).repeat_interleave(gh * gw)  # time step per token
        return t.replace(groups=groups)
