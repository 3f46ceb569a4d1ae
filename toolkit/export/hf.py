"""Hugging Face ``transformers`` classes for omnipatch encoders (imported on demand only).

This module imports ``transformers`` at the top, so nothing in ``omnipatch`` imports it at
module level: :mod:`omnipatch.export` loads it when an export or a ``from_pretrained`` needs
it. Importing it registers ``model_type="omnipatch"`` with ``AutoConfig`` and ``AutoModel``.

An exported folder holds ``config.json`` (an :class:`OmnipatchConfig`: the omnipatch
architecture config, the modality, the optional fine-tuned head) and ``model.safetensors``
with the adapter(s) and the encoder, parameter names unchanged from the omnipatch
checkpoint (``adapters.<m>.*``, ``encoder.*``, ``head.*``), and for a paired run the
cross-modal projection heads (``cross.proj.<m>.*``: the shared retrieval space). The MAE
decoder and the contrastive projector stay behind: they are pretraining machinery, not
features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from omnipatch.batch import Batch
from omnipatch.encoder import Encoder, EncoderConfig, pool
from omnipatch.errors import OmnipatchError


class OmnipatchConfig(PretrainedConfig):
    """Configuration of an exported omnipatch encoder.

    Attributes:
        omni_model: ``OmniModel.config()`` of the source run (adapters, encoder, ...).
        modality: the modality ``forward`` embeds by default.
        head: fine-tuned head spec (see :mod:`omnipatch.finetune`) or None.
        classes: class names of a classification head, in output order.
        hidden_size: encoder width D (informational; from ``omni_model``).
    """

    model_type = "omnipatch"

    omni_model: dict | None = None
    modality: str = ""
    head: dict | None = None
    classes: list | None = None
    hidden_size: int = 0


@dataclass
class OmnipatchOutput(ModelOutput):
    """``last_hidden_state (B, L, D)`` encoder tokens, ``pooler_output (B, D)`` mean of the
    valid tokens (what ``omnipatch.load(run).embed`` returns), ``logits`` when a fine-tuned
    head was exported (``(B, K)`` pooled or ``(B, K, *S)`` dense), ``cross_embeds (B, P)``
    for a paired run: the shared cross-modal space (``embed(..., space="cross")``)."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    logits: Tensor | None = None
    cross_embeds: Tensor | None = None


def _build_adapters(cfg: dict) -> nn.ModuleDict:
    from omnipatch.modality import ADAPTERS

    return nn.ModuleDict({m: ADAPTERS.get(a["name"])(**a["kwargs"]) for m, a in cfg["adapters"].items()})


class OmnipatchModel(PreTrainedModel):
    """Adapters + shared encoder (+ optional fine-tuned head) as a ``PreTrainedModel``.

    ``forward(x, x_mask=None, modality=None)`` takes a batch in the modality's layout (images
    ``(B, C, H, W)``, volumes ``(B, C, X, Y, Z)``, ...) exactly as omnipatch's datasets
    produce it, and returns an :class:`OmnipatchOutput`.
    """

    config_class = OmnipatchConfig
    base_model_prefix = "omnipatch"
    main_input_name = "x"

    def __init__(self, config: OmnipatchConfig):
        super().__init__(config)
        if not config.omni_model:
            raise OmnipatchError("OmnipatchConfig has no omni_model architecture (export a run with omnipatch export)")
        self.adapters = _build_adapters(config.omni_model)
        self.encoder = Encoder(EncoderConfig(**config.omni_model["encoder"]))
        self.head = None
        if config.head:
            from omnipatch.heads.task import build_head

            self.head = build_head(config.head, self.adapters[config.head["modality"]])
        self.cross = None
        cross = config.omni_model.get("cross")
        if cross:  # paired run: the projection heads into the shared space, named as in OmniModel
            from omnipatch.heads.projection import ProjectionHead

            dim = self.encoder.cfg.dim
            self.cross = nn.ModuleDict({"proj": nn.ModuleDict({
                m: ProjectionHead(dim, cross.get("hidden_dim", 512), cross.get("proj_dim", 128)) for m in self.adapters})})
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """omnipatch's constructors initialise every weight (xavier / trunc-normal, as MAE);
        transformers only reaches here for keys missing from a checkpoint, which
        :meth:`from_pretrained` refuses."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores the non-persistent buffers
        (per-channel mean / std of grid adapters, derived tables) from the config, since
        transformers leaves those uninitialised when it builds the model on the meta device."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if info.get("missing_keys") or info.get("mismatched_keys"):
            raise OmnipatchError(f"{args[0] if args else ''}: weights do not match the config "
                                 f"(missing {sorted(info['missing_keys'])[:5]}, "
                                 f"mismatched {list(info['mismatched_keys'])[:5]})")
        model._restore_buffers()
        return (model, info) if want_info else model

    @torch.no_grad()
    def _restore_buffers(self) -> None:
        fresh = dict(_build_adapters(self.config.omni_model).named_buffers(prefix="adapters"))
        for name, buf in self.named_buffers():
            if name in fresh:
                parent, _, leaf = name.rpartition(".")
                mod = self.get_submodule(parent)
                if leaf in mod._non_persistent_buffers_set:
                    mod.register_buffer(leaf, fresh[name].to(buf.device), persistent=False)
        for a in self.adapters.values():
            a.reset_cache()

    def forward(self, x: Tensor, x_mask: Tensor | None = None, modality: str | None = None,
                return_dict: bool = True) -> OmnipatchOutput | tuple:
        """Args:
            x: a batch in the modality's layout.
            x_mask: optional padding mask as omnipatch's collate makes it (True = padding).
            modality: which adapter to use (default ``config.modality``).
        """
        m = modality or self.config.modality
        if m not in self.adapters:
            raise OmnipatchError(f"no adapter for modality {m!r} (has {list(self.adapters)})")
        tokens = self.adapters[m].tokenize(Batch(x=x, x_mask=x_mask))
        hidden = self.encoder(tokens.tokens, tokens.padding_mask)
        valid = None if tokens.padding_mask is None else ~tokens.padding_mask
        pooled = pool(hidden, valid)
        logits = None
        if self.head is not None:
            logits = self.head(hidden, pooled, tokens.grid)
        cross = None if self.cross is None else self.cross["proj"][m](pooled.float())
        out = OmnipatchOutput(last_hidden_state=hidden, pooler_output=pooled, logits=logits, cross_embeds=cross)
        return out if return_dict else out.to_tuple()


AutoConfig.register("omnipatch", OmnipatchConfig, exist_ok=True)
AutoModel.register(OmnipatchConfig, OmnipatchModel, exist_ok=True)

__all__ = ["OmnipatchConfig", "OmnipatchModel", "OmnipatchOutput"]
