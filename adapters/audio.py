"""Audio adapter: time x frequency patches of log-mel spectrograms on the grid adapter
(AudioMAE, Huang et al., 2022), for clips of any length.

Input is the audio modality's layout ``x (B, T, C, F)`` (time first, so ragged clips collate)
with an optional ``x_mask (B, T)`` marking padded frames. Internally the grid adapter sees
``(B, C, T, F)``: tokens are ``pt x pf`` patches in row-major (time, frequency) order.
T is padded up to a multiple of ``pt`` (marked as padding); a token whose frames are all
padding is a padding token (never visible, never scored). Targets are the patches of the
normalised spectrogram (padding frames set to the mean, 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.adapters.grid import GridAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens

NORMS = ("global", "utterance")


@ADAPTERS.register("audio", "log-mel time x frequency patches (AudioMAE), ragged clips padded")
class AudioAdapter(GridAdapter):
    """Args:
        in_chans: audio channels C (1 for mono).
        patch_size: ``[pt, pf]`` frames x mel bands per patch (an int means square).
        dim: token width (the encoder's).
        mean, std: per-channel dB statistics of the data set (length C).
        modality: modality name.
        norm: ``"global"`` standardises with the data set's statistics; ``"utterance"``
            standardises each clip's mel bands by their own mean and std over its real frames
            (cepstral mean and variance normalisation in the mel domain), which removes a
            recording's channel colour and loudness and part of a speaker's timbre.
    """

    registry_name = "audio"

    def __init__(self, in_chans: int = 1, patch_size: int | list[int] = (4, 16), dim: int = 192,
                 mean: list[float] | None = None, std: list[float] | None = None, modality: str = "audio",
                 pos_grid: list[int] | None = None, norm: str = "global"):
        ps = [patch_size, patch_size] if isinstance(patch_size, int) else list(patch_size)
        if len(ps) != 2:
            raise OmnipatchError(f"audio patch_size is [time, frequency], got {patch_size}")
        if norm not in NORMS:
            raise OmnipatchError(f"audio option norm must be one of {NORMS}, got {norm!r}")
        super().__init__(modality, in_chans, ps, dim, mean, std, pos_grid)
        self.norm = norm

    def config(self) -> dict:
        cfg = super().config()
        if self.norm != "global":  # older checkpoints have no key: global
            cfg["norm"] = self.norm
        return cfg

    def _check_layout(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[2] != self.in_chans:
            raise OmnipatchError(f"{self.modality}: expected a log-mel batch (B, T, C={self.in_chans}, F), "
                                 f"got {tuple(x.shape)}")
        if x.shape[3] % self.patch_size[1]:
            raise OmnipatchError(f"{self.modality}: {x.shape[3]} mel bands are not a multiple of the "
                                 f"frequency patch {self.patch_size[1]}")

    def normalize(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, T, C, F)`` dB -> standardised with the per-channel statistics, or (``norm=
        "utterance"``) per clip and band over the frames ``mask (B, T)`` does not mark."""
        if self.norm == "global":
            shape = (1, 1, self.in_chans, 1)
            return (x.float() - self.mean.view(shape)) / self.std.view(shape)
        x = x.float()
        w = (torch.ones(x.shape[:2], device=x.device) if mask is None else (~mask).float())[:, :, None, None]
        n = w.sum(1, keepdim=True).clamp_min(1.0)
        mean = (x * w).sum(1, keepdim=True) / n
        var = (((x - mean) * w) ** 2).sum(1, keepdim=True) / n
        return (x - mean) / var.sqrt().clamp_min(1e-3)

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, T, C, F)`` -> ``(B, L, pt*pf*C)``, L = (T/pt) * (F/pf), time-major."""
        self._check_layout(x)
        return super().patchify(x.transpose(1, 2))

    def unpatchify(self, patches: Tensor, grid: tuple[int, ...] | None = None) -> Tensor:
        """``(B, L, P)`` -> ``(B, T, C, F)``; ``grid`` is ``(T/pt, F/pf)``."""
        return super().unpatchify(patches, grid).transpose(1, 2)

    def tokenize(self, batch: Batch) -> PatchTokens:
        x = batch.x
        self._check_layout(x)
        B, T, _, nF = x.shape
        pt = self.patch_size[0]
        mask = batch.x_mask
        pad = (-T) % pt
        if pad:  # pad time to whole patches and mark the new frames as padding
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
            old = mask if mask is not None else torch.zeros(B, T, dtype=torch.bool, device=x.device)
            mask = torch.cat([old, torch.ones(B, pad, dtype=torch.bool, device=x.device)], 1)
        x = self.normalize(x, mask)
        if mask is not None:
            x = x.masked_fill(mask[:, :, None, None], 0.0)
        patches = self.patchify(x)
        grid = (x.shape[1] // pt, nF // self.patch_size[1])
        pos = self.pos_embed(grid, x.device) + self.modality_embed
        tokens = self.proj(patches) + pos
        padding = None
        if mask is not None:  # a token is padding when all its frames are
            padding = mask.view(B, grid[0], pt).all(-1)[:, :, None].expand(B, *grid).reshape(B, -1)
        groups = torch.arange(grid[0], device=x.device).repeat_interleave(grid[1])  # time step per token
        return PatchTokens(tokens=tokens, pos=pos, targets=patches, padding_mask=padding, grid=grid,
                           groups=groups, modality=self.modality)

    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor) -> dict[str, Tensor]:
        """Spectrogram pictures ``(B, C, F, T)``: frequency up (low at the bottom), time right."""
        return {k: v.permute(0, 2, 3, 1).flip(2) for k, v in super().reconstruct(pred, tokens, mask).items()}
