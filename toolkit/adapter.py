"""The contract every modality adapter implements (concrete adapters live in ``adapters/``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from omnipatch.batch import Batch
from omnipatch.losses.masked_mse import masked_mse
from omnipatch.tokens import PatchTokens


class ModalityAdapter(nn.Module, ABC):
    """Learnable tokenizer: a batch of one modality <-> :class:`PatchTokens`.

    Subclasses set ``modality`` (registered name), ``dim`` (token width D) and
    ``target_dim`` (P, values per reconstruction target), and implement ``tokenize``,
    ``patchify`` and ``unpatchify``. ``config()`` returns the constructor kwargs so the
    adapter can be rebuilt from a checkpoint.

    What the core would otherwise guess is declared here (the defaults suit an adapter with
    no regular patch grid, such as point groups or table columns):

    Attributes:
        channels_kwarg: the constructor kwarg holding the input channel count when the
            adapter can be rebuilt for another channel count by :mod:`omnipatch.inflate`'s
            rule (such an adapter also takes ``patch_size``, ``mean`` and ``std`` and embeds
            ``prod(patch_size) x C`` channel-last values with ``proj``, a linear layer);
            None: the channels of a trained model cannot change.
        exact_roundtrip: ``unpatchify(patchify(x)) == x`` bit for bit (False where targets
            are not a re-arrangement of the input, e.g. overlapping point groups).
    """

    modality: str = ""
    dim: int
    target_dim: int
    channels_kwarg: str | None = None
    exact_roundtrip: bool = True

    @property
    def dense_patch(self) -> tuple[int, ...] | None:
        """The patch size of a regular grid whose tokens tile the input's spatial axes (what
        dense heads upsample to per-cell outputs); None: no such grid (no segmentation)."""
        return None

    def reset_cache(self) -> None:
        """Drop values cached from buffers or parameters (e.g. position tables per grid); called
        after weights or buffers are replaced in place. Default: nothing cached."""

    @abstractmethod
    def tokenize(self, batch: Batch) -> PatchTokens:
        """Embed a batch into ``PatchTokens`` with ``targets`` filled."""

    @abstractmethod
    def patchify(self, x: Tensor) -> Tensor:
        """``x`` in the modality's layout -> ``(B, L, P)`` raw per-patch values."""

    @abstractmethod
    def unpatchify(self, patches: Tensor, **kwargs) -> Tensor:
        """Inverse of ``patchify``."""

    @abstractmethod
    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable) that rebuild this adapter."""

    def reconstruction_loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Masked MSE: mean over patches where ``mask`` (B, L) is 1.

        Args:
            pred: ``(B, L, P)`` decoder predictions.
            target: ``(B, L, P)`` targets (already normalised if requested).
            mask: ``(B, L)`` float/bool, 1 where a patch is masked and scored.
        """
        return masked_mse(pred, target, mask)

    # -- initialisation from a pretrained checkpoint (omnipatch.init) --------------------------
    def init_kwargs(self, src, pos: str = "auto") -> dict:
        """Constructor kwargs of this adapter rebuilt for ``src``
        (:class:`~omnipatch.init.source.SourceWeights`): by default the same, at the
        checkpoint's width."""
        return {**self.config(), "dim": int(src.encoder["dim"])}

    def init_from(self, src, pos: str = "auto") -> list[tuple[str, str, str]]:
        """Load what maps from ``src`` into this adapter; rows ``(name, status, detail)``.

        Default, for adapters without a patch embedding to map (point clouds, tables,
        climate variables): nothing; the trunk alone transfers (as AST / AudioMAE did with
        ImageNet weights).
        """
        return [(k, "new", "no patch embedding to map: the trunk alone transfers") for k in self.state_dict()]

    def export_init(self) -> dict:
        """This adapter's tensors in the neutral (timm) form for another model's
        :meth:`init_from`: ``{"state": {...}, "grid": position-table grid or None}``."""
        return {"state": {}, "grid": None}

    @torch.no_grad()
    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor) -> dict[str, Tensor]:
        """Pictures for humans: original / masked / reconstruction in the input layout.

        ``pred`` must be in raw target units (de-normalised by the caller).
        """
        target = tokens.targets
        m = mask.unsqueeze(-1).to(target.dtype)
        return {
            "original": self.unpatchify(target),
            "masked": self.unpatchify(target * (1 - m)),
            "reconstruction": self.unpatchify(pred * m + target * (1 - m)),
        }
