"""The composed model: adapters (by modality) -> masking -> shared encoder -> objectives.

Reads top to bottom like MAE's reference: ``forward`` tokenizes each view, masks it,
encodes the visible tokens, then each weighted objective scores the views.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import torch
from torch import Tensor, nn

from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Batch
from omnipatch.encoder import Encoder, EncoderConfig, pool
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig, MAEDecoder
from omnipatch.losses.distributed import gather, global_batch
from omnipatch.masking import MaskResult, MaskSpec, gather_tokens, mask_tokens, random_mask
from omnipatch.modality import ADAPTERS
from omnipatch.objectives import OBJECTIVES, View
from omnipatch.tokens import PatchTokens
from omnipatch.train.accumulate import merge_terms


class OmniModel(nn.Module):
    """Args:
        adapters: ``{modality: adapter}``, all with width ``encoder.dim``.
        encoder: encoder config.
        decoder: MAE decoder config (built only when an objective decodes).
        objectives: ``{name: {"weight": w, **kwargs}}``.
        masks: ``{modality: MaskSpec}``; missing modalities use random 0.75.
        cross: cross-modal head kwargs (``proj_dim``, ``temperature``, ``weight``, ``views``,
            ``augment``) for paired training of two or more modalities in one embedding space;
            None otherwise.
        separate_encoders: one encoder per modality (same config) instead of the shared one;
            paired runs then meet only in the cross-modal space.
    """

    def __init__(self, adapters: dict[str, ModalityAdapter], encoder: EncoderConfig,
                 decoder: DecoderConfig, objectives: dict[str, dict], masks: dict[str, MaskSpec],
                 cross: dict | None = None, separate_encoders: bool = False):
        super().__init__()
        for m, a in adapters.items():
            if a.dim != encoder.dim:
                raise OmnipatchError(f"adapter {m!r} is {a.dim} wide but the encoder is {encoder.dim}")
        if not objectives:
            raise OmnipatchError("at least one objective is needed (e.g. 'mae')")
        self.adapters = nn.ModuleDict(adapters)
        self.separate_encoders = bool(separate_encoders)
        if self.separate_encoders:
            self.encoder = None
            self.encoders = nn.ModuleDict({m: Encoder(encoder) for m in adapters})
        else:
            self.encoder = Encoder(encoder)
            self.encoders = None
        self._encoder_cfg = encoder
        self.decoder = MAEDecoder(encoder.dim, decoder)
        self.pred = nn.ModuleDict({m: nn.Linear(decoder.dim, a.target_dim) for m, a in adapters.items()})
        self.weights = {n: float(o.get("weight", 1.0)) for n, o in objectives.items()}
        self.objectives = nn.ModuleDict({
            n: OBJECTIVES.get(n)(encoder.dim, **{k: v for k, v in o.items() if k != "weight"})
            for n, o in objectives.items()
        })
        self.masks = dict(masks)
        self._objective_cfg = {n: dict(o) for n, o in objectives.items()}
        self.cross = CrossModalHead(list(adapters), encoder.dim, **cross) if cross else None
        self._cross_cfg = dict(cross or {})

    @property
    def n_views(self) -> int:
        return max(o.n_views for o in self.objectives.values())

    # -- encoding ---------------------------------------------------------------------------
    def encoder_for(self, modality: str) -> Encoder:
        """The encoder that serves ``modality`` (the shared one unless ``separate_encoders``)."""
        return self.encoder if self.encoders is None else self.encoders[modality]

    def encode_view(self, batch: Batch, modality: str, generator: torch.Generator | None = None,
                    mask: Callable[[PatchTokens], MaskResult] | None = None) -> View:
        """Tokenize, mask (``self.masks[modality]``, or ``mask(tokens)`` when given: a chosen
        mask, e.g. whole variables) and encode the visible tokens."""
        tokens = self.adapters[modality].tokenize(batch)
        if mask is None:
            visible, mask = mask_tokens(tokens, self.masks.get(modality, MaskSpec()), generator)  # fused on CUDA
        else:
            mask = mask(tokens)
            visible = gather_tokens(tokens.tokens, mask.idx_keep)
        enc = self.encoder_for(modality)
        if not enc.num_prefix_tokens:
            latent, prefix = enc(visible, ~mask.keep_valid), None
        else:  # a class token (ViT / MAE checkpoints): the decoder reads it too
            out = enc.forward_features(visible, ~mask.keep_valid, keep_prefix=True)
            prefix, latent = out[:, :enc.num_prefix_tokens], out[:, enc.num_prefix_tokens:]
        return View(tokens, mask, latent, pool(latent, mask.keep_valid), batch.labels, prefix)

    def decode(self, view: View) -> Tensor:
        """MAE decoder + this modality's output projection: ``(B, L, P)`` predictions."""
        t = view.tokens
        h = self.decoder(view.latent, view.mask, t.pos, t.padding_mask, view.prefix)
        return self.pred[t.modality](h)

    def embed(self, batch: Batch, modality: str, space: str = "encoder") -> Tensor:
        """Pooled embedding of whole samples, no masking: ``(B, D)``.

        ``space="cross"`` returns the shared cross-modal space of a paired model (the
        projection used for retrieval).
        """
        t = self.adapters[modality].tokenize(batch)
        valid = None if t.padding_mask is None else ~t.padding_mask
        z = pool(self.encoder_for(modality)(t.tokens, t.padding_mask), valid)
        if space == "cross":
            if self.cross is None:
                raise OmnipatchError("this model was not trained on paired modalities (no cross-modal space)")
            return self.cross.project(z, modality)
        return z

    def forward_tokens(self, batch: Batch, modality: str) -> tuple[PatchTokens, Tensor]:
        """All tokens through the encoder: ``(PatchTokens, (B, L, D))`` for dense heads."""
        t = self.adapters[modality].tokenize(batch)
        return t, self.encoder_for(modality)(t.tokens, t.padding_mask)

    # -- training ---------------------------------------------------------------------------
    def forward(self, views: list[Batch], modality: str, generator: torch.Generator | None = None,
                return_views: bool = False) -> dict[str, Tensor] | tuple[dict[str, Tensor], list[View]]:
        """Loss terms for views of one batch; ``"loss"`` is the weighted sum.

        With ``return_views`` the encoded views come back too (cross-modal objectives reuse
        their pooled embeddings instead of encoding again).
        """
        encoded = [self.encode_view(v, modality, generator) for v in views]
        terms = self.sample_terms(encoded)
        if self.batch_level:
            terms = merge_terms(terms, self.batch_terms(torch.stack([v.pooled for v in encoded]), encoded[0].labels))
        return (terms, encoded) if return_views else terms

    @property
    def batch_level(self) -> bool:
        """True when an objective needs the whole batch (see :class:`~omnipatch.objectives.Objective`)."""
        return any(o.batch_level for o in self.objectives.values())

    def sample_terms(self, encoded: list[View]) -> dict[str, Tensor]:
        """The per-sample objectives' terms on encoded views; ``"loss"``: their weighted sum."""
        terms: dict[str, Tensor] = {}
        total = 0.0
        for name, obj in self.objectives.items():
            if not obj.batch_level:
                out = obj(self, encoded)
                terms.update(out)
                total = total + self.weights[name] * sum(out.values())
        terms["loss"] = total
        return terms

    def batch_terms(self, pooled: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """The batch-level objectives' terms on pooled embeddings ``(V, B, D)`` of any
        number of rows (one micro-batch, or all of a step's); ``"loss"``: their weighted sum.

        Under DDP / FSDP the rows of every rank are gathered first (with gradients), so the
        projectors' batch norm and the losses see the global batch on every rank.
        """
        z = gather(pooled, dim=1)
        labels = None if labels is None else gather(labels.to(z.device))
        terms: dict[str, Tensor] = {}
        total = 0.0
        with global_batch():
            for name, obj in self.objectives.items():
                if obj.batch_level:
                    out = obj.score(z, labels)
                    terms.update(out)
                    total = total + self.weights[name] * sum(out.values())
        terms["loss"] = total
        return terms

    @torch.no_grad()
    def reconstruct(self, batch: Batch, modality: str, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Original / masked / reconstructed samples (input layout) for pictures."""
        view = self.encode_view(batch, modality, generator)
        pred = self.decode(view).float()
        mae = self.objectives["mae"] if "mae" in self.objectives else None
        tgt = view.tokens.targets.float()
        if mae is not None and mae.norm_targets:  # undo per-patch normalisation
            mu, sd = tgt.mean(-1, keepdim=True), (tgt.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
            pred = pred * sd + mu
        return self.adapters[modality].reconstruct(pred, view.tokens, view.mask.loss_mask)

    @torch.no_grad()
    def predict(self, batch: Batch, modality: str, mask: Callable[[PatchTokens], MaskResult]) -> tuple[View, Tensor]:
        """``(view, pred)``: the hidden tokens of ``mask(tokens)`` predicted from the visible
        ones (``pred (B, L, P)`` in normalised target units), for adapters that answer
        questions such as "predict these variables from the others"."""
        view = self.encode_view(batch, modality, mask=mask)
        return view, self.decode(view).float()

    # -- (de)serialisation ------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "adapters": {m: {"name": type(a).registry_name, "kwargs": a.config()} for m, a in self.adapters.items()},
            "encoder": asdict(self._encoder_cfg),
            "separate_encoders": self.separate_encoders,
            "decoder": asdict(self.decoder.cfg),
            "objectives": self._objective_cfg,
            "masks": {m: asdict(s) for m, s in self.masks.items()},
            "cross": self._cross_cfg or None,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> "OmniModel":
        adapters = {m: ADAPTERS.get(a["name"])(**a["kwargs"]) for m, a in cfg["adapters"].items()}
        return cls(adapters, EncoderConfig(**cfg["encoder"]), DecoderConfig(**cfg["decoder"]),
                   cfg["objectives"], {m: MaskSpec(**s) for m, s in cfg["masks"].items()}, cfg.get("cross"),
                   cfg.get("separate_encoders", False))


class CrossModalHead(nn.Module):
    """One projection head per modality into a shared space + the CLIP loss (Radford et al.,
    2021) between paired samples.

    The head is SimCLR's Linear-BN-ReLU-Linear (:class:`~omnipatch.heads.ProjectionHead`),
    not CLIP's single linear map: at initialisation the pooled embeddings of a small encoder
    differ by ~0.1 % between samples (cosine 0.999, the position and modality embeddings
    dominate the mean), and a linear projection kept the CLIP loss at exactly ``ln B`` for
    hundreds of steps. Batch norm removes the shared component, so the loss moves at once.

    Args:
        modalities: modality names.
        enc_dim: encoder width.
        proj_dim: shared space width.
        temperature: initial CLIP temperature (learnable).
        weight: weight of the cross-modal term in the total loss.
        hidden_dim: hidden width of each projection head.
        views: ``"full"``: the CLIP term encodes each sample again without masking, as
            retrieval will; ``"masked"``: it reuses the pooled masked view (FLIP; cheaper).
        augment: strength of the modality's augmentation on the CLIP term's full views (0:
            none). Mild by design: at the contrastive objectives' strength 1.0 the
            image <-> speech example's CLIP loss stayed at chance for 60 steps; at 0.3 it
            reached held-out class-level recall@1 0.89 / 0.76 in 150.
    """

    def __init__(self, modalities: list[str], enc_dim: int, proj_dim: int = 128, temperature: float = 0.07,
                 weight: float = 1.0, hidden_dim: int = 512, views: str = "full", augment: float = 0.3):
        super().__init__()
        from omnipatch.heads.projection import ProjectionHead
        from omnipatch.losses.clip import CLIPLoss

        if views not in ("full", "masked"):
            raise OmnipatchError(f"cross-modal views must be 'full' or 'masked', got {views!r}")
        self.weight, self.views, self.augment = weight, views, float(augment)
        self.proj = nn.ModuleDict({m: ProjectionHead(enc_dim, hidden_dim, proj_dim) for m in modalities})
        self.loss = CLIPLoss(init_temperature=temperature)

    def project(self, pooled: Tensor, modality: str) -> Tensor:
        return self.proj[modality](pooled.float())

    def forward(self, pooled: dict[str, Tensor]) -> Tensor:
        """``pooled``: ``{modality: (P, D)}`` for the P pairs present in every modality."""
        names = list(pooled)
        z = {m: self.project(gather(pooled[m]), m) for m in names}  # global batch: batch norm and negatives
        with global_batch():
            losses = [self.loss(z[a], z[b]) for i, a in enumerate(names) for b in names[i + 1:]]
        return torch.stack(losses).mean()


__all__ = ["OmniModel", "View", "MaskResult", "random_mask"]
