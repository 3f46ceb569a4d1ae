"""Point-cloud adapter in the Point-MAE style (Pang et al., 2022, "Masked Autoencoders for
Point Cloud Self-supervised Learning").

A cloud ``x (B, N, C)`` (xyz first, then extra channels; padding marked in ``x_mask``)
becomes ``G`` tokens: farthest-point sampling picks ``G`` group centres, each centre's ``k``
nearest points form a group, a small shared PointNet embeds the centred group, and an MLP
of the centre coordinates gives the position. The reconstruction target of a token is its
group's ``k`` centred xyz points, scored with the Chamfer distance (the order of points in
a group carries no meaning).

Small clouds still work: centres beyond a cloud's point count are padding tokens, and
groups of a cloud with fewer than ``k`` points repeat the nearest point.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnipatch.adapter import ModalityAdapter
from omnipatch.adapters.point_ops import (
    chamfer_l2,
    farthest_point_sample,
    gather_points,
    knn,
    spatial_block_mask,
)
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.masking import MASKS, MaskResult, MaskSpec
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens


@MASKS.register("spatial_block", "hide the tokens nearest a random token in space (Point-MAE block)")
def _spatial_block(t: PatchTokens, spec: MaskSpec, g) -> MaskResult:
    if t.coords is None:
        raise OmnipatchError(f"spatial_block masking needs token coordinates; modality {t.modality!r} has none")
    return spatial_block_mask(t.coords, spec.ratio, t.padding_mask, g)


class MiniPointNet(nn.Module):
    """Point-MAE's group encoder: a shared point-wise MLP, max-pooled; the pooled feature is
    concatenated back to every point for a second shared MLP, max-pooled again, then
    projected to the token width. LayerNorm in place of BatchNorm (a token never depends on
    the rest of the batch); the last projection after the pooling keeps the per-point work
    at ``2 * hidden`` channels (CPU-friendly; Point-MAE projects before pooling).

    ``(B, G, k, C)`` -> ``(B, G, D)``.
    """

    def __init__(self, in_chans: int, dim: int, hidden: int = 64):
        super().__init__()
        self.first = nn.Sequential(nn.Linear(in_chans, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                   nn.Linear(hidden, 2 * hidden))
        self.second = nn.Sequential(nn.Linear(4 * hidden, 2 * hidden), nn.LayerNorm(2 * hidden), nn.GELU(),
                                    nn.Linear(2 * hidden, 2 * hidden))
        self.out = nn.Linear(2 * hidden, dim)

    def forward(self, groups: Tensor) -> Tensor:
        h = self.first(groups)  # (B, G, k, 2h)
        pooled = h.max(dim=2, keepdim=True).values.expand_as(h)
        h = self.second(torch.cat([pooled, h], -1))  # (B, G, k, 2h)
        return self.out(h.max(dim=2).values)  # (B, G, D)


@ADAPTERS.register("pointcloud", "farthest-point groups + kNN neighbourhoods, mini-PointNet (Point-MAE)")
class PointCloudAdapter(ModalityAdapter):
    """Args:
        dim: token width (the encoder's).
        in_chans: channels C of the input (3 xyz + extras).
        num_groups: tokens G per cloud (FPS centres).
        group_size: points k per group (kNN of each centre).
        hidden: width of the mini-PointNet's first layer.
        mean, std: statistics of the extra channels (length ``C - 3``), stored in the
            checkpoint; xyz is already in the unit sphere.
        modality: modality name this adapter serves.
    """

    registry_name = "pointcloud"
    exact_roundtrip = False  # targets are overlapping centred kNN groups, a subset of the points

    def __init__(self, dim: int, in_chans: int = 3, num_groups: int = 64, group_size: int = 32,
                 hidden: int = 64, mean: list[float] | None = None, std: list[float] | None = None,
                 modality: str = "pointcloud"):
        super().__init__()
        if in_chans < 3:
            raise OmnipatchError(f"{modality}: points need at least 3 channels (xyz), got {in_chans}")
        if num_groups < 1 or group_size < 1:
            raise OmnipatchError(f"{modality}: num_groups and group_size must be >= 1")
        self.modality, self.dim = modality, dim
        self.in_chans, self.num_groups, self.group_size, self.hidden = in_chans, num_groups, group_size, hidden
        self.target_dim = 3 * group_size
        extra = in_chans - 3
        mean = [0.0] * extra if mean is None else list(mean)
        std = [1.0] * extra if std is None else list(std)
        if len(mean) != extra or len(std) != extra:
            raise OmnipatchError(f"{modality}: mean/std need {extra} values (extra channels), got {len(mean)}/{len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-8), persistent=False)
        self.point_encoder = MiniPointNet(in_chans, dim, hidden)
        self.pos_mlp = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)

    def config(self) -> dict:
        return {"dim": self.dim, "in_chans": self.in_chans, "num_groups": self.num_groups,
                "group_size": self.group_size, "hidden": self.hidden, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "modality": self.modality}

    # -- grouping ---------------------------------------------------------------------------
    def _check(self, x: Tensor, x_mask: Tensor | None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_chans:
            raise OmnipatchError(f"{self.modality}: expected points (B, N, {self.in_chans}), got {tuple(x.shape)}")
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if x_mask is None else ~x_mask
        empty = (~valid.any(1)).nonzero().flatten().tolist()
        if empty or x.shape[1] == 0:
            raise OmnipatchError(f"{self.modality}: cloud(s) {empty or 'all'} of the batch have no points")
        return valid

    def group(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x (B, N, C)`` -> centres ``(B, G, 3)``, groups ``(B, G, k, C)`` (xyz centred on
        their centre), centre validity ``(B, G)``."""
        xyz = x[..., :3].float()
        idx, centre_ok = farthest_point_sample(xyz.detach(), self.num_groups, valid)
        centres = gather_points(xyz, idx)
        nbr = knn(centres.detach(), xyz.detach(), self.group_size, valid)
        groups = gather_points(x.float(), nbr)  # (B, G, k, C)
        rel = groups[..., :3] - centres.unsqueeze(2)
        return centres, torch.cat([rel, groups[..., 3:]], -1), centre_ok

    def patchify(self, x: Tensor, x_mask: Tensor | None = None) -> Tensor:
        """``(B, N, C)`` -> ``(B, G, 3k)``: each group's centred xyz, points nearest first."""
        valid = self._check(x, x_mask)
        _, groups, _ = self.group(x, valid)
        return groups[..., :3].flatten(2)

    def unpatchify(self, patches: Tensor, centres: Tensor | None = None) -> Tensor:
        """``(B, G, 3k)`` -> ``(B, G*k, 3)`` points, moved back onto ``centres (B, G, 3)``."""
        B, G, _ = patches.shape
        pts = patches.float().reshape(B, G, -1, 3)
        if centres is not None:
            pts = pts + centres.float().unsqueeze(2)
        return pts.reshape(B, -1, 3)

    # -- tokens -----------------------------------------------------------------------------
    def tokenize(self, batch: Batch) -> PatchTokens:
        valid = self._check(batch.x, batch.x_mask)
        centres, groups, centre_ok = self.group(batch.x, valid)
        feats = groups
        if self.in_chans > 3:
            feats = torch.cat([groups[..., :3], (groups[..., 3:] - self.mean) / self.std], -1)
        pos = self.pos_mlp(centres) + self.modality_embed  # (B, G, D)
        tokens = self.point_encoder(feats) + pos
        padding = None if bool(centre_ok.all()) else ~centre_ok
        return PatchTokens(tokens=tokens, pos=pos, targets=groups[..., :3].flatten(2), padding_mask=padding,
                           coords=centres, modality=self.modality)

    def reconstruction_loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Chamfer-L2 between predicted and true groups, mean over scored groups.

        Args:
            pred, target: ``(B, G, 3k)`` (k points x 3 per group).
            mask: ``(B, G)``, 1 where a group is hidden and scored.
        """
        B, G, P = target.shape
        cd = chamfer_l2(pred.float().reshape(B, G, P // 3, 3), target.float().reshape(B, G, P // 3, 3))
        m = mask.to(cd.dtype)
        return (cd * m).sum() / m.sum().clamp_min(1.0)

    @torch.no_grad()
    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor, size: int = 48) -> dict[str, Tensor]:
        """Top-down (x, y) occupancy pictures ``(B, 1, size, size)`` of all groups, the
        visible groups only, and visible + predicted groups."""
        c, t = tokens.coords, tokens.targets
        data = torch.ones_like(t[..., :1], dtype=torch.bool)
        if tokens.padding_mask is not None:
            data = ~tokens.padding_mask.unsqueeze(-1)
        keep = (mask < 0.5).unsqueeze(-1) & data
        clouds = {"original": (t, data), "masked": (t, keep),
                  "reconstruction": (torch.where(keep, t, pred.to(t.dtype)), data)}
        return {k: _raster(self.unpatchify(p, c), w.expand(-1, -1, self.group_size).flatten(1), size)
                for k, (p, w) in clouds.items()}


def _raster(points: Tensor, weight: Tensor, size: int) -> Tensor:
    """``points (B, M, 3)`` in the unit sphere, ``weight (B, M)`` -> ``(B, 1, size, size)``."""
    B = points.shape[0]
    ij = ((points[..., :2].clamp(-1, 1) + 1) / 2 * (size - 1)).round().long()
    flat = (size - 1 - ij[..., 1]) * size + ij[..., 0]
    img = torch.zeros(B, size * size, device=points.device)
    img.scatter_add_(1, flat, weight.float())
    return (img > 0).float().reshape(B, 1, size, size)
