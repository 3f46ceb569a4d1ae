"""Tabular adapter in the FT-Transformer style (Gorishniy et al., 2021, "Revisiting Deep
Learning Models for Tabular Data"): one token per column.

A row ``x (B, F)`` (numeric values and categorical codes, see
:mod:`omnipatch.modalities.tabular`) becomes ``F`` tokens:

- numeric column j: ``z * w_j + b_j`` with ``z`` the value standardised by the column's
  mean / std (stored in the config, hence in the checkpoint); optionally
  (``numeric_embedding="periodic"``) plus ``ReLU(W [sin, cos](2 pi c_j z))``, the PLR-lite
  embedding of Gorishniy et al. (2022, "On Embeddings for Numerical Features");
- categorical column j: an embedding of the category's index in the column's vocabulary
  (stored in the config); index 0 is "unseen category", shared by everything not in it;
- plus a learned column embedding (the token's position) and the modality embedding.

Missing cells (``x_mask``, or NaN when no mask is given) are padding tokens: the encoder
never sees them, masking never shows or scores them. Targets are ``(B, F, P)``: a numeric
cell's ``z`` in slot 0, a categorical cell's one-hot index over ``P = max vocabulary + 1``
slots; the loss is MSE for numeric and cross-entropy for categorical cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modalities.tabular import CATEGORICAL, NUMERIC, category_code
from omnipatch.modality import ADAPTERS
from omnipatch.tokens import PatchTokens

_CODE_BITS = 48  # category codes are < 2**48 (exact in float64); the column goes above


@ADAPTERS.register("tabular", "one token per column: numeric value x weight + bias, categorical embedding")
class TabularAdapter(ModalityAdapter):
    """Args:
        dim: token width (the encoder's).
        columns: feature column names, in sample order (F).
        kinds: ``numeric`` or ``categorical`` per column.
        mean, std: per-column statistics (used for numeric columns); identity when omitted.
        vocab: per column, its categories' texts (``[]`` for numeric columns).
        modality: modality name this adapter serves.
        numeric_embedding: ``linear`` (FT-Transformer) or ``periodic`` (linear + PLR-lite).
        frequencies, sigma: periodic embedding: frequencies per column, their init scale.
    """

    registry_name = "tabular"

    def __init__(self, dim: int, columns: list[str], kinds: list[str], mean: list[float] | None = None,
                 std: list[float] | None = None, vocab: list[list[str]] | None = None, modality: str = "tabular",
                 numeric_embedding: str = "linear", frequencies: int = 16, sigma: float = 1.0):
        super().__init__()
        n = len(columns)
        if n == 0 or len(kinds) != n:
            raise OmnipatchError(f"{modality}: need one kind per column, got {n} columns and {len(kinds)} kinds")
        bad = sorted({k for k in kinds if k not in (NUMERIC, CATEGORICAL)})
        if bad:
            raise OmnipatchError(f"{modality}: unknown column kind(s) {bad} (known: {NUMERIC}, {CATEGORICAL})")
        mean = [0.0] * n if mean is None else [float(v) for v in mean]
        std = [1.0] * n if std is None else [float(v) for v in std]
        vocab = [[] for _ in range(n)] if vocab is None else [[str(t) for t in v] for v in vocab]
        if not len(mean) == len(std) == len(vocab) == n:
            raise OmnipatchError(f"{modality}: mean/std/vocab need {n} entries each")
        self.modality, self.dim = modality, dim
        self.columns, self.kinds, self.vocab = list(columns), list(kinds), vocab
        self._mean, self._std = mean, std
        num = [j for j, k in enumerate(kinds) if k == NUMERIC]
        cat = [j for j, k in enumerate(kinds) if k == CATEGORICAL]
        sizes = [len(vocab[j]) + 1 for j in cat]  # + "unseen" at index 0
        self.target_dim = max([1] + sizes)
        self.register_buffer("num_idx", torch.tensor(num, dtype=torch.long), persistent=False)
        self.register_buffer("cat_idx", torch.tensor(cat, dtype=torch.long), persistent=False)
        self.register_buffer("is_cat", torch.tensor([k == CATEGORICAL for k in kinds]), persistent=False)
        self.register_buffer("order", torch.argsort(torch.tensor(num + cat, dtype=torch.long)), persistent=False)
        self.register_buffer("num_mean", torch.tensor([mean[j] for j in num], dtype=torch.float32), persistent=False)
        self.register_buffer("num_std", torch.tensor([std[j] for j in num], dtype=torch.float32).clamp_min(1e-8),
                             persistent=False)
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        self.register_buffer("cat_offsets", torch.tensor(offsets[: len(cat)], dtype=torch.long), persistent=False)
        valid = torch.zeros(n, self.target_dim, dtype=torch.bool)
        valid[:, 0] = True
        for j, s in zip(cat, sizes):
            valid[j, :s] = True
        self.register_buffer("class_valid", valid, persistent=False)
        # one sorted lookup over (categorical column, code) -> index in that column's vocabulary
        keys, vals = [], []
        for c, j in enumerate(cat):
            for i, text in enumerate(vocab[j]):
                keys.append((c << _CODE_BITS) + category_code(text))
                vals.append(i + 1)
        keys_t = torch.tensor(keys, dtype=torch.long)
        srt = torch.argsort(keys_t)
        self.register_buffer("lookup_keys", keys_t[srt], persistent=False)
        self.register_buffer("lookup_vals", torch.tensor(vals, dtype=torch.long)[srt], persistent=False)
        bound = 1 / math.sqrt(dim)  # FT-Transformer's uniform init of the feature tokenizer
        if numeric_embedding not in ("linear", "periodic"):
            raise OmnipatchError(f"{modality}: numeric_embedding must be 'linear' or 'periodic', got {numeric_embedding!r}")
        self.numeric_embedding, self.frequencies, self.sigma = numeric_embedding, int(frequencies), float(sigma)
        self.num_weight = nn.Parameter(torch.empty(len(num), dim).uniform_(-bound, bound)) if num else None
        self.num_bias = nn.Parameter(torch.empty(len(num), dim).uniform_(-bound, bound)) if num else None
        self.num_freq = self.num_mix = None
        if num and numeric_embedding == "periodic":  # PLR-lite (Gorishniy et al., 2022)
            self.num_freq = nn.Parameter(torch.randn(len(num), self.frequencies) * self.sigma)
            self.num_mix = nn.Linear(2 * self.frequencies, dim)
        self.cat_embed = nn.Embedding(sum(sizes), dim) if cat else None
        if self.cat_embed is not None:
            nn.init.uniform_(self.cat_embed.weight, -bound, bound)
        self.column_embed = nn.Parameter(torch.zeros(1, n, dim))
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.column_embed, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)

    def config(self) -> dict:
        return {"dim": self.dim, "columns": self.columns, "kinds": self.kinds, "mean": self._mean,
                "std": self._std, "vocab": self.vocab, "modality": self.modality,
                "numeric_embedding": self.numeric_embedding, "frequencies": self.frequencies, "sigma": self.sigma}

    # -- values -----------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != len(self.columns):
            raise OmnipatchError(f"{self.modality}: expected rows (B, {len(self.columns)}) for columns "
                                 f"{self.columns[:5]}{'...' if len(self.columns) > 5 else ''}, got {tuple(x.shape)}")

    def missing(self, batch: Batch) -> Tensor:
        """``(B, F)`` bool: the batch's ``x_mask`` or, without one, the NaN cells."""
        nan = torch.isnan(batch.x)
        return nan if batch.x_mask is None else batch.x_mask.bool() | nan

    def category_index(self, codes: Tensor) -> Tensor:
        """``codes (B, Fc)`` (float64 category codes of the categorical columns) -> index in
        each column's vocabulary, 0 for unseen categories."""
        if self.lookup_keys.numel() == 0:
            return torch.zeros(codes.shape, dtype=torch.long, device=codes.device)
        col = torch.arange(codes.shape[1], device=codes.device) << _CODE_BITS
        keys = col + codes.double().round().long()
        pos = torch.searchsorted(self.lookup_keys, keys).clamp_max(self.lookup_keys.numel() - 1)
        hit = self.lookup_keys[pos] == keys
        return torch.where(hit, self.lookup_vals[pos], torch.zeros_like(pos))

    def normalize(self, x: Tensor) -> Tensor:
        """Raw rows ``(B, F)`` -> ``(B, F)`` float32: numeric z-scores, categorical indices.
        NaN cells become 0 (they are padding)."""
        self._check(x)
        x = torch.nan_to_num(x, nan=0.0)
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        if self.num_idx.numel():
            z = (x[:, self.num_idx].float() - self.num_mean) / self.num_std
            out[:, self.num_idx] = z
        if self.cat_idx.numel():
            out[:, self.cat_idx] = self.category_index(x[:, self.cat_idx]).float()
        return out

    def patchify(self, x: Tensor) -> Tensor:
        """Normalised rows ``(B, F)`` -> targets ``(B, F, P)`` (z in slot 0 / one-hot index)."""
        P = self.target_dim
        onehot = F.one_hot(x.round().long().clamp(0, P - 1), P).to(x.dtype)
        num = F.pad(x.unsqueeze(-1), (0, P - 1))
        return torch.where(self.is_cat.view(1, -1, 1), onehot, num)

    def unpatchify(self, patches: Tensor, grid=None) -> Tensor:
        """``(B, F, P)`` -> normalised rows ``(B, F)``: slot 0 for numeric columns, the most
        likely category index (within each column's vocabulary) for categorical ones."""
        logits = patches.float().masked_fill(~self.class_valid, float("-inf"))
        idx = logits.argmax(-1).to(patches.dtype)
        return torch.where(self.is_cat.view(1, -1), idx, patches[..., 0])

    # -- tokens -----------------------------------------------------------------------------
    def tokenize(self, batch: Batch) -> PatchTokens:
        self._check(batch.x)
        missing = self.missing(batch)
        xn = self.normalize(batch.x)
        parts = []
        if self.num_weight is not None:
            z = xn[:, self.num_idx].unsqueeze(-1)  # (B, Fn, 1)
            tok = z * self.num_weight + self.num_bias
            if self.num_mix is not None:  # + ReLU(Linear([sin, cos](2 pi c_j z)))
                angle = 2 * math.pi * z * self.num_freq
                tok = tok + torch.relu(self.num_mix(torch.cat([angle.sin(), angle.cos()], -1)))
            parts.append(tok)
        if self.cat_embed is not None:
            parts.append(self.cat_embed(xn[:, self.cat_idx].long() + self.cat_offsets))
        values = torch.cat(parts, 1)[:, self.order]  # back to column order, (B, F, D)
        pos = self.column_embed + self.modality_embed
        F_ = len(self.columns)
        return PatchTokens(tokens=values + pos, pos=pos, targets=self.patchify(xn),
                           padding_mask=missing if bool(missing.any()) else None,
                           groups=torch.arange(F_, device=xn.device), modality=self.modality)

    def reconstruction_loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Mean over scored cells of squared error (numeric) or cross-entropy (categorical).

        Args:
            pred: ``(B, F, P)`` decoder outputs (slot 0 for numeric, logits for categorical).
            target: ``(B, F, P)`` from :meth:`patchify`.
            mask: ``(B, F)``, 1 where a cell is hidden and present.
        """
        pred, target = pred.float(), target.float()
        per_cell = (pred[..., 0] - target[..., 0]).pow(2)
        if self.cat_idx.numel():
            logp = pred.masked_fill(~self.class_valid, float("-inf")).log_softmax(-1)
            ce = -(logp.masked_fill(~self.class_valid, 0.0) * target).sum(-1)
            per_cell = torch.where(self.is_cat.view(1, -1), ce, per_cell)
        m = mask.to(per_cell.dtype)
        return (per_cell * m).sum() / m.sum().clamp_min(1.0)

    @torch.no_grad()
    def reconstruct(self, pred: Tensor, tokens: PatchTokens, mask: Tensor) -> dict[str, Tensor]:
        """Rows as ``(B, 1, 1, F)`` strips (normalised values / category indices): original,
        with hidden cells zeroed, and with hidden cells predicted."""
        orig = self.unpatchify(tokens.targets)
        hidden = mask > 0.5
        if tokens.padding_mask is not None:
            orig = orig.masked_fill(tokens.padding_mask, 0.0)
        recon = torch.where(hidden, self.unpatchify(pred.to(tokens.targets.dtype)), orig)
        strip = lambda t: t.float().unsqueeze(1).unsqueeze(1)
        return {"original": strip(orig), "masked": strip(orig.masked_fill(hidden, 0.0)), "reconstruction": strip(recon)}
