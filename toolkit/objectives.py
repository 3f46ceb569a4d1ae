"""Training objectives: modules that turn encoded views into named loss terms.

Each objective owns its heads (the contrastive projector, ...), is registered by name, and
returns ``{term_name: scalar}``; the model sums ``weight * term`` and logs every term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnipatch.heads import ProjectionHead
from omnipatch.losses import NTXentLoss, normalize_targets
from omnipatch.masking import MaskResult
from omnipatch.registry import Registry
from omnipatch.tokens import PatchTokens

OBJECTIVES: Registry[type] = Registry("objective")


@dataclass
class View:
    """One encoded view: its tokens, its mask, visible latents ``(B, K, D)``, pooled ``(B, D)``."""

    tokens: PatchTokens
    mask: MaskResult
    latent: Tensor
    pooled: Tensor


class Objective(nn.Module):
    """Base: ``forward(model, views) -> dict[str, Tensor]``. ``n_views`` views are needed."""

    n_views: int = 1

    def forward(self, model: nn.Module, views: list[View]) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError


@OBJECTIVES.register("mae", "masked autoencoder: reconstruct hidden patches (He et al., 2022)")
class MAEObjective(Objective):
    """Decode every view and score hidden patches with the adapter's reconstruction loss.

    Args:
        norm_targets: standardise each target patch (MAE's ``norm_pix_loss``); helps with
            large patches, hurts with tiny ones (few values per patch).
    """

    n_views = 1

    def __init__(self, enc_dim: int, norm_targets: bool = False):
        super().__init__()
        self.norm_targets = norm_targets

    def forward(self, model: nn.Module, views: list[View]) -> dict[str, Tensor]:
        losses = []
        for v in views:
            pred = model.decode(v)
            target = v.tokens.targets
            if self.norm_targets:
                target = normalize_targets(target)
            adapter = model.adapters[v.tokens.modality]
            losses.append(adapter.reconstruction_loss(pred, target, v.mask.loss_mask))
        return {"mae": torch.stack(losses).mean()}


@OBJECTIVES.register("contrastive", "NT-Xent between two masked, augmented views (SimCLR)")
class ContrastiveObjective(Objective):
    """InfoNCE between projector outputs of two views of each sample.

    Args:
        temperature: softmax temperature.
        proj_hidden, proj_dim: projector widths.
    """

    n_views = 2

    def __init__(self, enc_dim: int, temperature: float = 0.2, proj_hidden: int = 512, proj_dim: int = 128):
        super().__init__()
        self.projector = ProjectionHead(enc_dim, proj_hidden, proj_dim)
        self.loss = NTXentLoss(temperature)

    def forward(self, model: nn.Module, views: list[View]) -> dict[str, Tensor]:
        z1, z2 = (self.projector(v.pooled.float()) for v in views[:2])
        return {"contrastive": self.loss(z1, z2)}
