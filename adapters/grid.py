"""A dimension-generic grid adapter: N-d arrays ``(B, C, *S)`` <-> non-overlapping patches.

One class serves 2-D images and spectrograms, 3-D volumes and (t, h, w) video tubelets:
a patch of ``prod(patch_size) * C`` values is embedded by one linear map (equivalent to a
strided convolution), then a fixed N-d sin-cos position and a learned modality embedding are
added. Inputs are standardised with per-channel statistics stored in the adapter's config,
so a checkpoint carries its dataset's normalisation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.layers import sincos_nd
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens


@ADAPTERS.register("grid", "N-d array patches (images, spectrograms, volumes, video tubelets)")
class GridAdapter(ModalityAdapter):
    """Args:
        modality: modality name this adapter serves.
        in_chans: channels C.
        patch_size: patch edge per spatial axis (len = number of spatial dims).
        dim: token width (the encoder's).
        mean, std: per-channel input statistics (length C); identity when omitted.
        pos_grid: learned positions: a table ``pos_table (1, prod(pos_grid), D)`` over this
            grid (a pretrained ViT's), resampled to other grids on use
            (:func:`omnipatch.init.adapt.resample_pos`); None: fixed N-d sin-cos.
    """

    registry_name = "grid"
    channels_kwarg = "in_chans"

    def __init__(self, modality: str, in_chans: int, patch_size: list[int], dim: int,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 pos_grid: list[int] | None = None):
        super().__init__()
        self.modality = modality
        self.in_chans = int(in_chans)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.dim = dim
        self.target_dim = self.in_chans * math.prod(self.patch_size)
        self.proj = nn.Linear(self.target_dim, dim)
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        mean = [0.0] * self.in_chans if mean is None else list(mean)
        std = [1.0] * self.in_chans if std is None else list(std)
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise OmnipatchError(f"{modality}: mean/std need {self.in_chans} values, got {len(mean)}/{len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-8), persistent=False)
        self._pos_cache: dict[tuple, Tensor] = {}
        self.pos_grid = tuple(int(g) for g in pos_grid) if pos_grid else None
        if self.pos_grid is not None:
            if len(self.pos_grid) != self.spatial_dims:
                raise OmnipatchError(f"{modality}: pos_grid {list(self.pos_grid)} needs {self.spatial_dims} axes")
            self.pos_table = nn.Parameter(sincos_nd(dim, self.pos_grid).unsqueeze(0))

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    @property
    def dense_patch(self) -> tuple[int, ...]:
        return self.patch_size

    def reset_cache(self) -> None:
        self._pos_cache.clear()

    def config(self) -> dict:
        cfg = {"modality": self.modality, "in_chans": self.in_chans, "patch_size": list(self.patch_size),
               "dim": self.dim, "mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.pos_grid is not None:
            cfg["pos_grid"] = list(self.pos_grid)
        return cfg

    def grid(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(s // p for s, p in zip(spatial, self.patch_size))

    def _check(self, x: Tensor) -> None:
        n = self.spatial_dims
        if x.dim() != n + 2 or x.shape[1] != self.in_chans:
            raise OmnipatchError(
                f"{self.modality}: expected input (B, {self.in_chans}, {n} spatial dims), got {tuple(x.shape)}")
        bad = [(s, p) for s, p in zip(x.shape[2:], self.patch_size) if s % p]
        if bad:
            raise OmnipatchError(f"{self.modality}: size {tuple(x.shape[2:])} is not a multiple of patch {self.patch_size}")

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, C, s1..sn)`` -> ``(B, L, p1*..*pn*C)``; patch values ordered (p1..pn, C) as MAE."""
        self._check(x)
        B, C, *S = x.shape
        n = len(S)
        g = self.grid(tuple(S))
        shape = [B, C]
        for gi, pi in zip(g, self.patch_size):
            shape += [gi, pi]
        x = x.reshape(shape)  # (B, C, g1, p1, ..., gn, pn)
        perm = [0] + [2 + 2 * i for i in range(n)] + [3 + 2 * i for i in range(n)] + [1]
        return x.permute(perm).reshape(B, math.prod(g), self.target_dim)

    def unpatchify(self, patches: Tensor, grid: tuple[int, ...] | None = None) -> Tensor:
        """``(B, L, P)`` -> ``(B, C, s1..sn)``; ``grid`` defaults to a cube/square grid."""
        B, L, _ = patches.shape
        n = self.spatial_dims
        if grid is None:
            side = round(L ** (1.0 / n))
            if side**n != L:
                raise ValueError(f"cannot infer a {n}-d grid from L={L}; pass grid=")
            grid = (side,) * n
        x = patches.reshape(B, *grid, *self.patch_size, self.in_chans)
        perm = [0, 2 * n + 1]
        for i in range(n):
            perm += [1 + i, 1 + n + i]
        x = x.permute(perm)
        return x.reshape(B, self.in_chans, *[gi * pi for gi, pi in zip(grid, self.patch_size)])

    def pos_embed(self, grid: tuple[int, ...], device) -> Tensor:
        if self.pos_grid is not None:
            from omnipatch.init.adapt import resample_pos

            return resample_pos(self.pos_table, self.pos_grid, tuple(grid))
        key = (grid, str(device))
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_nd(self.dim, grid, device).unsqueeze(0)
        return self._pos_cache[key]

    def normalize(self, x: Tensor) -> Tensor:
        shape = (1, self.in_chans) + (1,) * self.spatial_dims
        return (x.float() - self.mean.view(shape)) / self.std.view(shape)

    def tokenize(self, batch: Batch) -> PatchTokens:
        self._check(batch.x)  # before normalising: broadcasting would hide a channel mismatch
        x = self.normalize(batch.x)
        patches = self.patchify(x)
        grid = self.grid(tuple(x.shape[2:]))
        pos = self.pos_embed(grid, x.device) + self.modality_embed
        tokens = self.proj(patches) + pos
        padding = None
        if batch.x_mask is not None:  # (B, *S) True = padding; a patch is padding if all of it is
            m = batch.x_mask.unsqueeze(1).to(x.dtype).expand(-1, self.in_chans, *batch.x_mask.shape[1:])
            padding = self.patchify(m).bool().all(dim=-1)
        return PatchTokens(tokens=tokens, pos=pos, targets=patches, padding_mask=padding, grid=grid,
                           modality=self.modality)

    # -- initialisation from a pretrained checkpoint (rules: omnipatch.init.adapt) ------------
    def init_kwargs(self, src, pos: str = "auto") -> dict:
        """Learned positions (the checkpoint's table) when it has a table with as many axes as
        this adapter's grid and ``pos`` is ``auto`` or ``learned``; sin-cos otherwise."""
        kw = {**self.config(), "dim": int(src.encoder["dim"])}
        kw.pop("pos_grid", None)
        fits = "pos_embed" in src.state and src.pos_grid is not None and len(src.pos_grid) == self.spatial_dims
        if pos == "learned" and not fits:
            raise OmnipatchError(f"{src.description}: no {self.spatial_dims}-d position table to learn from "
                                 f"(use --init-pos sincos)")
        if pos in ("auto", "learned") and fits:
            kw["pos_grid"] = list(src.pos_grid)
        elif pos not in ("auto", "learned", "sincos"):
            raise OmnipatchError(f"init positions must be auto, learned or sincos, got {pos!r}")
        return kw

    @torch.no_grad()
    def init_from(self, src, pos: str = "auto") -> list[tuple[str, str, str]]:
        from omnipatch.init.adapt import adapt_patch_embed, to_linear

        rows = []
        w = src.state.get("patch_embed.proj.weight")
        if w is None:
            rows += [(k, "new", "the source has no patch embedding") for k in ("proj.weight", "proj.bias")]
        else:
            try:
                w2, notes = adapt_patch_embed(w.float(), self.in_chans, self.patch_size)
            except OmnipatchError as e:
                w2, notes = None, [str(e)]
            if w2 is None:
                rows += [(k, "new", notes[0]) for k in ("proj.weight", "proj.bias")]
            else:
                self.proj.weight.copy_(to_linear(w2))
                rows.append(("proj.weight", "resampled" if notes else "loaded", "; ".join(notes)))
                b = src.state.get("patch_embed.proj.bias")
                if b is not None:
                    self.proj.bias.copy_(b)
                    rows.append(("proj.bias", "loaded", ""))
                else:
                    self.proj.bias.zero_()
                    rows.append(("proj.bias", "new", "zero: the source has no bias"))
        self.modality_embed.zero_()
        rows.append(("modality_embed", "new", "zero: pretrained positions are kept as they are"))
        if self.pos_grid is not None:
            self.pos_table.copy_(src.state["pos_embed"])
            rows.append(("pos_table", "loaded", f"learned over grid {list(self.pos_grid)}; resampled to each "
                         "input grid on use"))
        return rows

    def export_init(self) -> dict:
        from omnipatch.init.adapt import from_linear

        state = {"patch_embed.proj.weight": from_linear(self.proj.weight.detach(), self.in_chans, self.patch_size),
                 "patch_embed.proj.bias": self.proj.bias.detach()}
        if self.pos_grid is not None:
            state["pos_embed"] = self.pos_table.detach()
        return {"state": state, "grid": self.pos_grid}

    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor) -> dict[str, Tensor]:
        out = {}
        t = tokens.targets
        m = mask.unsqueeze(-1).to(t.dtype)
        for k, v in {"original": t, "masked": t * (1 - m), "reconstruction": pred * m + t * (1 - m)}.items():
            out[k] = self.unpatchify(v, tokens.grid)
        return out
