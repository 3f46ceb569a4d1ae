"""Training objectives: modules that turn encoded views into named loss terms.

Each objective owns its heads (the contrastive projector, ...), is registered by name, and
returns ``{term_name: scalar}``; the model sums ``weight * term`` and logs every term.
Objectives compose: ``{"mae": {"weight": 1}, "sigreg": {"weight": 0.5}}`` in a config, or
``--objective mae+sigreg:0.5`` on the command line. An objective that declares ``n_views > 2``
(multi-view losses) makes the engine draw that many augmented views.

Joint-embedding objectives project each view's pooled latent ``(B, D_enc)`` with their own
:class:`~omnipatch.heads.ProjectionHead` to ``(B, proj_dim)`` and apply a loss from
:mod:`omnipatch.losses`; the papers are cited there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnipatch.errors import OmnipatchError
from omnipatch.heads import ProjectionHead
from omnipatch.losses import (
    BarlowTwinsLoss,
    CLIPLoss,
    LeJEPALoss,
    MVDHELLoss,
    MVInfoNCELoss,
    NTXentLoss,
    SupConLoss,
    VICRegLoss,
    normalize_targets,
)
from omnipatch.masking import MaskResult
from omnipatch.registry import Registry
from omnipatch.tokens import PatchTokens

OBJECTIVES: Registry[type] = Registry("objective")


@dataclass
class View:
    """One encoded view: its tokens, its mask, visible latents ``(B, K, D)``, pooled ``(B, D)``,
    and the batch's labels ``(B,)`` when the data has them (only ``supcon`` uses them);
    ``prefix (B, n, D)``: the encoder's class-token output when it has one (the MAE decoder
    reads it, as MAE's does)."""

    tokens: PatchTokens
    mask: MaskResult
    latent: Tensor
    pooled: Tensor
    labels: Tensor | None = None
    prefix: Tensor | None = None


class Objective(nn.Module):
    """Base: ``forward(model, views) -> dict[str, Tensor]``. ``n_views`` views are needed.

    A *batch-level* objective (``batch_level = True``: negatives, batch statistics, a batch-norm
    projector) sees the views only through their pooled embeddings, in ``score(z, labels)``
    with ``z (V, B, D_enc)``; the model calls it once on the global batch, gathered over ranks
    and, when accumulating, over micro-batches (:mod:`omnipatch.train.accumulate`). The others are
    per-sample: their value on a batch is the mean of their values on its parts.
    """

    n_views: int = 1
    batch_level: bool = False

    def forward(self, model: nn.Module, views: list[View]) -> dict[str, Tensor]:  # pragma: no cover
        if self.batch_level:
            return self.score(torch.stack([v.pooled for v in views]), views[0].labels)
        raise NotImplementedError

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:  # pragma: no cover
        """Batch-level terms from pooled embeddings ``z (V, B, D_enc)`` and labels ``(B,)``."""
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


# -- joint-embedding objectives ---------------------------------------------------------------
class _Projected(Objective):
    """Base: a projector on pooled latents; ``project(z (V, B, D_enc))`` -> ``(V, B, proj_dim)``;
    batch-level (``score`` runs on the global batch)."""

    n_views = 2
    batch_level = True

    def __init__(self, enc_dim: int, proj_hidden: int, proj_dim: int, n_views: int = 2):
        super().__init__()
        if n_views < 2:
            raise OmnipatchError(f"{type(self).__name__} needs n_views >= 2, got {n_views}")
        self.n_views = int(n_views)
        self.projector = ProjectionHead(enc_dim, proj_hidden, proj_dim)

    def project(self, z: Tensor) -> Tensor:
        """Pooled ``(V, B, D_enc)`` -> ``(n_views, B, proj_dim)``."""
        if len(z) < self.n_views:
            raise OmnipatchError(f"{type(self).__name__} needs {self.n_views} views per batch, got {len(z)}")
        # one projector pass per view, as the papers do: BatchNorm statistics stay per view
        return torch.stack([self.projector(v.float()) for v in z[: self.n_views]])


@OBJECTIVES.register("contrastive", "NT-Xent between two masked, augmented views (SimCLR)")
class ContrastiveObjective(_Projected):
    """InfoNCE between projector outputs of two views of each sample.

    Args:
        temperature: softmax temperature.
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, temperature: float = 0.2, proj_hidden: int = 512, proj_dim: int = 128):
        super().__init__(enc_dim, proj_hidden, proj_dim)
        self.loss = NTXentLoss(temperature)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        z = self.project(z)
        return {"contrastive": self.loss(z[0], z[1])}


@OBJECTIVES.register("clip", "symmetric InfoNCE across two views/modalities, learnable temperature (CLIP)")
class CLIPObjective(_Projected):
    """CLIP's symmetric cross-entropy between projections of two views; negatives are
    cross-view only and the temperature is learnt (``logit_scale``).

    Args:
        init_temperature: starting temperature (CLIP: 0.07).
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, init_temperature: float = 0.07, proj_hidden: int = 512, proj_dim: int = 128):
        super().__init__(enc_dim, proj_hidden, proj_dim)
        self.loss = CLIPLoss(init_temperature)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        z = self.project(z)
        return {"clip": self.loss(z[0], z[1])}


@OBJECTIVES.register("barlow", "Barlow Twins: cross-correlation of two views to identity (Zbontar et al., 2021)")
class BarlowTwinsObjective(_Projected):
    """Barlow Twins on projections of two views; logs ``barlow_inv`` and ``barlow_red``.

    Args:
        lambda_param: redundancy weight (paper: 5e-3).
        proj_hidden, proj_dim: projector widths. Barlow Twins wants wide projectors (paper:
            8192). Measured on the digits (examples/objectives.py, 100 steps, kNN): 1024 wide
            with lambda 5e-3 0.75; 256 wide 0.62-0.65; 2048 wide 0.68.
    """

    def __init__(self, enc_dim: int, lambda_param: float = 5e-3, proj_hidden: int = 1024, proj_dim: int = 1024):
        super().__init__(enc_dim, proj_hidden, proj_dim)
        self.loss = BarlowTwinsLoss(lambda_param)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        z = self.project(z)
        c = self.loss.components(z[0], z[1])
        return {"barlow_inv": c["invariance"], "barlow_red": c["redundancy"]}


@OBJECTIVES.register("vicreg", "VICReg: invariance + variance + covariance of two views (Bardes et al., 2022)")
class VICRegObjective(_Projected):
    """VICReg on projections of two views; logs ``vicreg_inv``, ``vicreg_var``, ``vicreg_cov``
    (already weighted; they sum to the loss).

    Args:
        lambda_param, mu_param, nu_param: term weights (paper: 25, 25, 1).
        proj_hidden, proj_dim: projector widths (paper: 8192). Measured on the digits
            (examples/objectives.py, 100 steps, kNN): 1024 wide 0.86, 256 wide 0.80.
    """

    def __init__(self, enc_dim: int, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 proj_hidden: int = 1024, proj_dim: int = 1024):
        super().__init__(enc_dim, proj_hidden, proj_dim)
        self.loss = VICRegLoss(lambda_param, mu_param, nu_param)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        z = self.project(z)
        c = self.loss.components(z[0], z[1])
        return {"vicreg_inv": c["invariance"], "vicreg_var": c["variance"], "vicreg_cov": c["covariance"]}


@OBJECTIVES.register("sigreg", "LeJEPA: SIGReg isotropic-Gaussian test + prediction of the views' mean "
                               "(Balestriero & LeCun, 2025)")
class SIGRegObjective(_Projected):
    """LeJEPA on projections of ``n_views`` views (all global); logs ``sigreg`` and
    ``lejepa_pred`` (weighted by ``lambda_param`` and ``1 - lambda_param``). With
    ``lambda_param=1`` it is SIGReg alone, a collapse guard to add to MAE.

    Args:
        lambda_param: SIGReg weight (paper: 0.01-0.1).
        num_slices: random 1-D projections per step.
        n_views: views per sample (authors' minimal recipe: 4).
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, lambda_param: float = 0.05, num_slices: int = 256, n_views: int = 2,
                 proj_hidden: int = 512, proj_dim: int = 64):
        super().__init__(enc_dim, proj_hidden, proj_dim, n_views)
        self.loss = LeJEPALoss(lambda_param, num_slices=num_slices)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        c = self.loss.components(self.project(z))
        return {"sigreg": c["sigreg"], "lejepa_pred": c["prediction"]}


@OBJECTIVES.register("mv_infonce", "multi-view InfoNCE: one term aligning all views of a sample "
                                   "(Koromilas et al., 2025)")
class MVInfoNCEObjective(_Projected):
    """MV-InfoNCE over ``n_views`` views.

    Args:
        temperature: softmax temperature.
        n_views: views per sample (>= 2).
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, temperature: float = 0.2, n_views: int = 4, proj_hidden: int = 512,
                 proj_dim: int = 128):
        super().__init__(enc_dim, proj_hidden, proj_dim, n_views)
        self.loss = MVInfoNCELoss(temperature)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        return {"mv_infonce": self.loss(self.project(z))}


@OBJECTIVES.register("dhel", "MV-DHEL: multi-view contrastive loss, alignment decoupled from uniformity "
                             "(Koromilas et al., 2025)")
class MVDHELObjective(_Projected):
    """MV-DHEL over ``n_views`` views.

    Args:
        temperature: softmax temperature.
        n_views: views per sample (>= 2; the authors see gains up to 5+).
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, temperature: float = 0.2, n_views: int = 4, proj_hidden: int = 512,
                 proj_dim: int = 128):
        super().__init__(enc_dim, proj_hidden, proj_dim, n_views)
        self.loss = MVDHELLoss(temperature)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        return {"dhel": self.loss(self.project(z))}


@OBJECTIVES.register("supcon", "supervised contrastive: same-label samples are positives; needs labels "
                               "(Khosla et al., 2020)")
class SupConObjective(_Projected):
    """SupCon over ``n_views`` views using the batch labels (``View.labels``).

    Args:
        temperature: softmax temperature (paper: 0.1).
        n_views: views per sample.
        proj_hidden, proj_dim: projector widths.
    """

    def __init__(self, enc_dim: int, temperature: float = 0.1, n_views: int = 2, proj_hidden: int = 512,
                 proj_dim: int = 128):
        super().__init__(enc_dim, proj_hidden, proj_dim, n_views)
        self.loss = SupConLoss(temperature)

    def score(self, z: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        if labels is None:
            raise OmnipatchError("objective 'supcon' needs labels: give the data a label column "
                                 "(manifest 'label') or use an unsupervised objective")
        return {"supcon": self.loss(self.project(z), labels)}
