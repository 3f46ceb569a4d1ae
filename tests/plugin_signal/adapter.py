"""The signal adapter: 1-D patches of ``patch_size`` samples x C channels on the grid adapter."""

from __future__ import annotations

from omnipatch.adapters.grid import GridAdapter
from omnipatch.modality import ADAPTERS


class SignalAdapter(GridAdapter):
    """Args: as :class:`~omnipatch.adapters.grid.GridAdapter`, with one spatial axis (time)."""

    registry_name = "signal"

    def __init__(self, in_chans: int, patch_size: int | list[int], dim: int, mean: list[float] | None = None,
                 std: list[float] | None = None, modality: str = "signal", pos_grid: list[int] | None = None):
        ps = [patch_size] if isinstance(patch_size, int) else list(patch_size)
        super().__init__(modality, in_chans, ps, dim, mean, std, pos_grid)


if "signal" not in ADAPTERS:
    ADAPTERS.add("signal", SignalAdapter, "1-D multichannel signal patches (test plugin)")
