"""One file per objective's loss; tensor-only ``forward``; paper cited in each docstring.

Two-view losses take ``(B, D)`` pairs; multi-view losses take views stacked as ``(V, B, D)``.
Losses that need the global batch gather it across ranks (:mod:`omnipatch.losses.distributed`).
"""

from omnipatch.losses.barlow_twins import BarlowTwinsLoss
from omnipatch.losses.clip import CLIPLoss
from omnipatch.losses.infonce import NTXentLoss
from omnipatch.losses.masked_mse import masked_mse, normalize_targets
from omnipatch.losses.mv_dhel import MVDHELLoss
from omnipatch.losses.mv_infonce import MVInfoNCELoss
from omnipatch.losses.shapes import LossInputError
from omnipatch.losses.sigreg import LeJEPALoss, SIGReg
from omnipatch.losses.supcon import SupConLoss
from omnipatch.losses.vicreg import VICRegLoss

__all__ = ["BarlowTwinsLoss", "CLIPLoss", "LeJEPALoss", "LossInputError", "MVDHELLoss", "MVInfoNCELoss",
           "NTXentLoss", "SIGReg", "SupConLoss", "VICRegLoss", "masked_mse", "normalize_targets"]
