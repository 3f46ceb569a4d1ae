"""Climate adapter: per-variable tokenisation in the spirit of ClimaX (Nguyen et al., 2023,
"ClimaX: A foundation model for weather and climate").

Input ``x (B, V + 2, T, H, W)`` from :mod:`omnipatch.modalities.climate`: V variables, then
latitude and longitude (degrees) of every cell. Each variable's field is cut into
``time_patch x p x p`` patches, and every patch of every variable is one token:

``token = Linear(patch values) + variable embedding[name] + sincos(lat, lon, t) + modality``

- The patch projection is shared and the variable embeddings are keyed by **name**, so a
  checkpoint can be fine-tuned on another variable set (:meth:`ClimateAdapter.set_variables`
  keeps the embeddings of known names and adds fresh ones).
- Positions come from the patch centres' real latitude / longitude, so random crops of
  the domain keep a consistent geography; ``PatchTokens.coords`` holds ``(lat, lon, t)``.
- ``PatchTokens.groups`` is the variable index of each token: the ``group`` mask hides whole
  variables ("predict one variable from the others"); ``random`` and ``block`` work too
  (``grid = (V, T / time_patch, H / p, W / p)``).
- NaN cells (land in ocean fields, fill values) are zero-filled inputs; a token whose cells
  are all NaN is padding (``padding_mask``); partly missing patches score only their data
  cells. H and W need not be multiples of ``p``: the edge is padded with missing cells.
- Targets carry their own loss weights: ``targets (B, L, 2P)`` = ``[values | weights]`` with
  ``weights = valid * cos(lat) / mean(cos(lat))`` per cell, and :meth:`reconstruction_loss`
  is the latitude-weighted MSE of ClimaX over data cells of hidden tokens. (The MAE
  objective's ``norm_targets`` must stay off for this adapter.)
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.layers.pos_embed import sincos_1d
from omnipatch.masking import MaskResult
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens


def _key(name: str) -> str:
    """A state-dict-safe key for a variable name (no dots)."""
    return "v_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


@ADAPTERS.register("climate", "per-variable patches + variable embeddings by name (ClimaX), lat-weighted MSE")
class ClimateAdapter(ModalityAdapter):
    """Args:
        variables: variable names, in the channel order of the input.
        patch_size: spatial patch edge (int) or ``[ph, pw]``.
        dim: token width (the encoder's).
        mean, std: per-variable statistics (same order as ``variables``).
        time_patch: time steps per token (1: every step of a window has its own tokens).
        lat_weighted: weight the loss by cos(latitude) (ClimaX); False = plain masked MSE
            over data cells.
    """

    registry_name = "climate"

    def __init__(self, variables: list[str], patch_size: int | list[int], dim: int,
                 mean: list[float] | None = None, std: list[float] | None = None, time_patch: int = 1,
                 lat_weighted: bool = True, modality: str = "climate"):
        super().__init__()
        if not variables:
            raise OmnipatchError("climate adapter needs at least one variable")
        self.modality = modality
        ps = [patch_size] * 2 if isinstance(patch_size, int) else list(patch_size)
        if len(ps) != 2:
            raise OmnipatchError(f"climate: patch_size needs 1 or 2 values, got {patch_size}")
        self.patch_size = (int(ps[0]), int(ps[1]))
        self.time_patch = int(time_patch)
        self.dim = dim
        self.lat_weighted = bool(lat_weighted)
        self.values_per_patch = self.time_patch * self.patch_size[0] * self.patch_size[1]
        self.target_dim = 2 * self.values_per_patch  # values | per-cell loss weights
        self.proj = nn.Linear(self.values_per_patch, dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.var_embed = nn.ParameterDict()
        self.variables: list[str] = []
        self.set_variables(variables, mean, std)

    # -- variables ----------------------------------------------------------------------------
    def set_variables(self, variables: list[str], mean: list[float] | None = None,
                      std: list[float] | None = None) -> None:
        """Switch to another variable set (fine-tuning on new variables): embeddings of names
        already known are kept, new names get fresh ones, others are dropped."""
        variables = list(variables)
        if len(set(variables)) != len(variables):
            raise OmnipatchError(f"climate: duplicate variable names in {variables}")
        mean = [0.0] * len(variables) if mean is None else [float(m) for m in mean]
        std = [1.0] * len(variables) if std is None else [float(s) for s in std]
        if len(mean) != len(variables) or len(std) != len(variables):
            raise OmnipatchError(f"climate: mean/std need {len(variables)} values, got {len(mean)}/{len(std)}")
        keep = {_key(v) for v in variables}
        for k in [k for k in self.var_embed if k not in keep]:
            del self.var_embed[k]
        for v in variables:
            if _key(v) not in self.var_embed:
                p = nn.Parameter(torch.zeros(self.dim, device=self.proj.weight.device))
                nn.init.trunc_normal_(p, std=0.02)
                self.var_embed[_key(v)] = p
        self.variables = variables
        dev = self.proj.weight.device
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32, device=dev), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32, device=dev).clamp_min(1e-8),
                             persistent=False)

    def config(self) -> dict:
        return {"variables": list(self.variables), "patch_size": list(self.patch_size), "dim": self.dim,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "time_patch": self.time_patch,
                "lat_weighted": self.lat_weighted, "modality": self.modality}

    # -- layout -------------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        V = len(self.variables)
        if x.dim() != 5 or x.shape[1] != V + 2:
            raise OmnipatchError(f"{self.modality}: expected input (B, {V} variables + lat + lon, T, H, W), "
                                 f"got {tuple(x.shape)}")
        if x.shape[2] % self.time_patch:
            raise OmnipatchError(f"{self.modality}: {x.shape[2]} time steps is not a multiple of "
                                 f"time_patch {self.time_patch}")

    def normalize(self, x: Tensor) -> Tensor:
        """``(B, V + 2, T, H, W)`` -> standardised variables ``(B, V, T, H, W)`` (NaN kept)."""
        V = len(self.variables)
        return (x[:, :V].float() - self.mean.view(1, V, 1, 1, 1)) / self.std.view(1, V, 1, 1, 1)

    def grid(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """``(V, T, H, W)`` -> token grid ``(V, T / tp, ceil(H / ph), ceil(W / pw))``."""
        V, T, H, W = shape
        return (V, T // self.time_patch, -(-H // self.patch_size[0]), -(-W // self.patch_size[1]))

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, V, T, H, W)`` (H, W multiples of the patch) -> ``(B, V*gt*gh*gw, tp*ph*pw)``,
        tokens ordered (variable, t, h, w), values (tp, ph, pw)."""
        B, V, T, H, W = x.shape
        tp, (ph, pw) = self.time_patch, self.patch_size
        if T % tp or H % ph or W % pw:
            raise OmnipatchError(f"{self.modality}: size {(T, H, W)} is not a multiple of patch {(tp, ph, pw)}")
        x = x.reshape(B, V, T // tp, tp, H // ph, ph, W // pw, pw)
        x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)
        return x.reshape(B, V * (T // tp) * (H // ph) * (W // pw), tp * ph * pw)

    def unpatchify(self, patches: Tensor, grid: tuple[int, ...] | None = None) -> Tensor:
        """Inverse of :meth:`patchify`. ``patches (B, L, P)`` or targets ``(B, L, 2P)`` (then
        cells with zero weight come back as NaN). ``grid = (V, gt, gh, gw)``."""
        B, L, P2 = patches.shape
        P = self.values_per_patch
        if P2 == 2 * P:
            vals, w = patches[..., :P], patches[..., P:]
            patches = torch.where(w > 0, vals, torch.full_like(vals, float("nan")))
        if grid is None:
            V = len(self.variables)
            side = round(math.sqrt(L // V))
            if V * side * side != L:
                raise ValueError(f"cannot infer the grid from L={L}; pass grid=")
            grid = (V, 1, side, side)
        V, gt, gh, gw = grid
        tp, (ph, pw) = self.time_patch, self.patch_size
        x = patches.reshape(B, V, gt, gh, gw, tp, ph, pw).permute(0, 1, 2, 5, 3, 6, 4, 7)
        return x.reshape(B, V, gt * tp, gh * ph, gw * pw)

    # -- tokens -------------------------------------------------------------------------------
    def _pos(self, lat: Tensor, lon: Tensor, t: Tensor) -> Tensor:
        """sin-cos of patch-centre latitude, longitude (degrees) and time index -> ``(..., D)``."""
        per = (self.dim // 3) // 2 * 2
        parts = [sincos_1d(per, c.reshape(-1)).reshape(*c.shape, per) for c in (lat, lon, t)]
        emb = torch.cat(parts, -1)
        if emb.shape[-1] < self.dim:
            emb = F.pad(emb, (0, self.dim - emb.shape[-1]))
        return emb

    def tokenize(self, batch: Batch) -> PatchTokens:
        x = batch.x
        self._check(x)
        B, C, T, H, W = x.shape
        V = C - 2
        ph, pw = self.patch_size
        v = self.normalize(x)
        lat, lon = x[:, V, 0].float(), x[:, V + 1, 0].float()  # (B, H, W)
        Hp, Wp = -(-H // ph) * ph, -(-W // pw) * pw
        if (Hp, Wp) != (H, W):  # edge cells become missing data, coordinates extend by replication
            v = F.pad(v, (0, Wp - W, 0, Hp - H), value=float("nan"))
            lat = F.pad(lat[:, None], (0, Wp - W, 0, Hp - H), mode="replicate")[:, 0]
            lon = F.pad(lon[:, None], (0, Wp - W, 0, Hp - H), mode="replicate")[:, 0]
        valid = torch.isfinite(v)
        patches = self.patchify(torch.where(valid, v, torch.zeros_like(v)))
        grid = self.grid((V, T, Hp, Wp))
        _, gt, gh, gw = grid
        # cos(lat) is 0 at the poles: a floor keeps "weight > 0" equivalent to "data cell"
        cell_w = torch.cos(torch.deg2rad(lat)).clamp_min(1e-6) if self.lat_weighted else torch.ones_like(lat)
        cell_w = cell_w / cell_w.mean(dim=(1, 2), keepdim=True)
        w = valid.float() * cell_w[:, None, None]
        weights = self.patchify(w)
        padding = ~(weights > 0).any(-1)  # (B, L) every cell of the token missing

        # patch centres (B, gh, gw) -> (B, V, gt, gh, gw) -> (B, L)
        c_lat = F.avg_pool2d(lat[:, None], (ph, pw))[:, 0]
        c_lon = F.avg_pool2d(lon[:, None], (ph, pw))[:, 0]
        c_t = torch.arange(gt, device=x.device, dtype=torch.float32) * self.time_patch + (self.time_patch - 1) / 2
        shape = (B, V, gt, gh, gw)
        coords = torch.stack([c_lat[:, None, None].expand(shape), c_lon[:, None, None].expand(shape),
                              c_t.view(1, 1, gt, 1, 1).expand(shape)], -1).reshape(B, -1, 3)
        var = torch.stack([self.var_embed[_key(n)] for n in self.variables])  # (V, D)
        var_tok = var[:, None, :].expand(V, gt * gh * gw, self.dim).reshape(1, -1, self.dim)
        pos = self._pos(coords[..., 0], coords[..., 1], coords[..., 2]).to(var.dtype) + var_tok + self.modality_embed
        tokens = self.proj(patches) + pos
        groups = torch.arange(V, device=x.device).repeat_interleave(gt * gh * gw)
        return PatchTokens(tokens=tokens, pos=pos, targets=torch.cat([patches, weights], -1),
                           padding_mask=padding if bool(padding.any()) else None, grid=grid, groups=groups,
                           coords=coords, modality=self.modality)

    # -- loss and pictures --------------------------------------------------------------------
    def reconstruction_loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Latitude-weighted MSE over data cells of hidden tokens.

        Args:
            pred: ``(B, L, 2P)`` decoder output (only the first P values are used).
            target: ``(B, L, 2P)`` ``[values | weights]`` from :meth:`tokenize`.
            mask: ``(B, L)`` 1 where a token is hidden and scored.
        """
        P = self.values_per_patch
        val, w = target[..., :P].float(), target[..., P:].float()
        w = w * mask.unsqueeze(-1).to(w.dtype)
        err = (pred[..., :P].float() - val).pow(2)
        return (err * w).sum() / w.sum().clamp_min(1e-6)

    @torch.no_grad()
    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor) -> dict[str, Tensor]:
        """Original / masked / reconstruction ``(B, V, T, H', W')`` in standardised units;
        missing cells and hidden tokens are 0 (the variable's mean) so generic plots work;
        :meth:`maps` keeps them as NaN."""
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in self.maps(pred, tokens, mask).items()}

    @torch.no_grad()
    def maps(self, pred: Tensor, tokens: PatchTokens, mask: Tensor, physical: bool = False) -> dict[str, Tensor]:
        """Like :meth:`reconstruct` with NaN for missing cells (and for hidden tokens in
        ``"masked"``); ``physical=True`` undoes the standardisation (variables' units)."""
        P = self.values_per_patch
        t = tokens.targets
        vals, w = t[..., :P], t[..., P:]
        m = mask.unsqueeze(-1).to(vals.dtype)
        nan = torch.full_like(vals, float("nan"))
        rec = pred[..., :P].to(vals.dtype) * m + vals * (1 - m)
        out = {"original": torch.where(w > 0, vals, nan),
               "masked": torch.where((w > 0) & (m == 0), vals, nan),
               "reconstruction": torch.where(w > 0, rec, nan)}
        out = {k: self.unpatchify(v, tokens.grid) for k, v in out.items()}
        if physical:
            V = tokens.grid[0]
            out = {k: v * self.std.view(1, V, 1, 1, 1) + self.mean.view(1, V, 1, 1, 1) for k, v in out.items()}
        return out


def variable_mask(tokens: PatchTokens, hide: list[int]) -> MaskResult:
    """A mask that hides every token of the variables ``hide`` (indices) and shows the rest:
    "predict these variables from the others". Padding stays hidden and unscored."""
    from omnipatch.masking import select

    B, L, _ = tokens.shape
    groups = tokens.groups.expand(B, L) if tokens.groups.dim() == 1 else tokens.groups
    hidden = torch.isin(groups, torch.as_tensor(list(hide), device=groups.device))
    pad = tokens.padding_mask if tokens.padding_mask is not None else torch.zeros_like(hidden)
    keys = hidden.float().masked_fill(pad, float("inf"))
    return select(keys, (~hidden & ~pad).sum(1), tokens.padding_mask)


@torch.no_grad()
def predict_variables(model, batch: Batch, hide: list[str], modality: str = "climate") -> dict[str, Tensor]:
    """Hide whole variables (by name), let the model reconstruct them from the others.

    Args:
        model: an :class:`~omnipatch.model.OmniModel` with a climate adapter.
        batch: ``x (B, V + 2, T, H, W)`` in the adapter's variable order.
        hide: names of the variables to hide.
    Returns:
        :meth:`ClimateAdapter.maps` in physical units (``original``, ``masked``,
        ``reconstruction``: ``(B, V, T, H', W')``, NaN where data is missing).
    """
    adapter = model.adapters[modality]
    unknown = [h for h in hide if h not in adapter.variables]
    if unknown:
        raise OmnipatchError(f"unknown variable(s) {unknown}; the model knows {adapter.variables}")
    hidden = [adapter.variables.index(h) for h in hide]
    view, pred = model.predict(batch, modality, lambda t: variable_mask(t, hidden))
    return adapter.maps(pred, view.tokens, view.mask.loss_mask, physical=True)


def save_maps(pictures: dict[str, Tensor], out: str | Path, variables: list[str], sample: int = 0,
              step: int = 0, title: str = "") -> Path:
    """Rows: variables; columns: truth / masked / reconstruction (NaN cells blank).

    Args:
        pictures: ``{"original", "masked", "reconstruction": (B, V, T, H, W)}`` from
            :meth:`ClimateAdapter.maps`; rows are drawn with latitude increasing upwards
            when the data is stored north-to-south it appears flipped (``origin="lower"``).
        variables: names for the row labels.
        sample, step: which sample of the batch and which time step to draw.
    """
    from omnipatch.plots import finish, pyplot

    plt = pyplot()
    cols = [k for k in ("original", "masked", "reconstruction") if k in pictures]
    V = pictures[cols[0]].shape[1]
    fig, axes = plt.subplots(V, len(cols), figsize=(3.2 * len(cols), 2.4 * V), squeeze=False)
    for i in range(V):
        ref = pictures[cols[0]][sample, i, step].float().cpu()
        fin = ref[torch.isfinite(ref)]
        lo, hi = (float(fin.min()), float(fin.max())) if fin.numel() else (0.0, 1.0)
        for j, c in enumerate(cols):
            ax = axes[i, j]
            im = ax.imshow(pictures[c][sample, i, step].float().cpu().numpy(), origin="lower", cmap="RdBu_r",
                           vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title({"original": "truth"}.get(c, c), fontsize=9)
            if j == 0:
                ax.set_ylabel(variables[i] if i < len(variables) else f"var {i}", fontsize=9)
        fig.colorbar(im, ax=list(axes[i]), shrink=0.8)
    return finish(fig, out, title, tight=False)
