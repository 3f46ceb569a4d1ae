"""Symmetric cross-modal InfoNCE with a learnable temperature (Radford et al., 2021,
"Learning Transferable Visual Models From Natural Language Supervision" (CLIP), Fig. 3).

For B pairs ``(a_i, b_i)`` (image/text, two sensors as in CROMA, or two views), with
``s = exp(logit_scale)`` and unit vectors, ``logits = s * a @ b.T`` ``(B, B)`` and

``L = (CE(logits, arange(B)) + CE(logits.T, arange(B))) / 2``

i.e. every ``a_i`` must pick ``b_i`` among all ``b`` and vice versa; negatives are only
cross-modal. ``logit_scale`` starts at ``log(1 / 0.07)`` and is clipped so that ``s <= 100``,
as in CLIP. Under data parallelism both sides are gathered to the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.losses.distributed import gather
from omnipatch.losses.shapes import LossInputError, check_batch, check_pair


class CLIPLoss(nn.Module):
    """Args:
        init_temperature: initial ``1 / exp(logit_scale)`` (CLIP: 0.07).
        max_scale: upper clip of ``exp(logit_scale)`` (CLIP: 100).
        learnable: train ``logit_scale`` (a parameter) or keep it fixed (a buffer).
        gather_distributed: contrast against every rank's pairs.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0, learnable: bool = True,
                 gather_distributed: bool = True):
        super().__init__()
        if init_temperature <= 0 or max_scale <= 0:
            raise LossInputError("CLIPLoss init_temperature and max_scale must be > 0")
        init = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        self.max_log_scale = math.log(max_scale)
        self.gather_distributed = gather_distributed

    @property
    def temperature(self) -> float:
        """The current temperature ``1 / exp(logit_scale)`` (after clipping)."""
        return float(1.0 / self.logit_scale.detach().clamp(max=self.max_log_scale).exp())

    def forward(self, za: Tensor, zb: Tensor) -> Tensor:
        """``za, zb (B, D)`` paired embeddings of two modalities (or views) -> scalar."""
        check_pair("CLIPLoss", za, zb)
        if self.gather_distributed:
            za, zb = gather(za), gather(zb)
        check_batch("CLIPLoss", za.shape[0])
        za, zb = F.normalize(za.float(), dim=1), F.normalize(zb.float(), dim=1)
        scale = self.logit_scale.float().clamp(max=self.max_log_scale).exp()
        logits = scale * za @ zb.T
        target = torch.arange(za.shape[0], device=za.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
