"""One file per objective's loss; tensor-only ``forward``; paper cited in each docstring."""

from omnipatch.losses.infonce import NTXentLoss
from omnipatch.losses.masked_mse import masked_mse, normalize_targets

__all__ = ["NTXentLoss", "masked_mse", "normalize_targets"]
