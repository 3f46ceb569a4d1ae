"""Read a pretrained checkpoint into one neutral form, :class:`SourceWeights` (timm's keys).

Sources (nothing downloads):

- an omnipatch run directory (``RUN_DIR`` or ``RUN_DIR/checkpoint``);
- ``timm:NAME=FILE`` (``.safetensors``, or ``.pth`` / ``.bin`` read with
  ``weights_only=True``) or ``timm:NAME`` from the local Hugging Face cache;
- a Hugging Face ``save_pretrained`` folder (``config.json`` + weights), or a hub cache folder
  ``models--ORG--NAME``, of ``ViTModel`` / ``ViTForImageClassification``, ``ViTMAEModel`` /
  ``ViTMAEForPreTraining`` (with its decoder), ``Dinov2Model`` or ``VideoMAEModel`` /
  ``VideoMAEForPreTraining`` (with its decoder).

The neutral form holds the trunk under timm's ``VisionTransformer`` keys (``blocks.N.*``,
``norm.*``), ``cls_token`` with its position folded in (``cls_token + pos_embed[:, :1]``),
``patch_embed.proj.weight`` ``(D, C, *k)``, ``pos_embed`` ``(1, N, D)`` over the patch grid
only, and an MAE decoder under :class:`~omnipatch.heads.MAEDecoder`'s keys (``decoder.*``)
with ``decoder.pos_embed`` ``(1, N, Dd)`` and ``decoder.pred.*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from omnipatch.errors import OmnipatchError

HF_TYPES = ("vit", "vit_mae", "dinov2", "videomae")


@dataclass
class SourceWeights:
    """A checkpoint in timm's keys (see the module docs).

    Attributes:
        description: one line naming the source (for the report).
        state: tensors in the neutral keys.
        encoder: :class:`~omnipatch.encoder.EncoderConfig` kwargs.
        decoder: :class:`~omnipatch.heads.DecoderConfig` kwargs, or None without a decoder.
        pos_grid: the grid of ``pos_embed`` (and ``decoder.pos_embed``), or None.
        ignored: source tensors not used (classifier heads, poolers, mask tokens ...).
        omni: for omnipatch runs, ``{"config": ..., "state": ...}`` (adapters and output
            projections load by name when the modality matches); None otherwise.
        per_modality: for omnipatch runs, each source adapter's own neutral tensors.
    """

    description: str
    state: dict[str, Tensor]
    encoder: dict
    decoder: dict | None = None
    pos_grid: tuple[int, ...] | None = None
    ignored: dict[str, tuple] = field(default_factory=dict)
    omni: dict | None = None
    per_modality: dict[str, dict] = field(default_factory=dict)

    def for_modality(self, modality: str) -> "SourceWeights":
        """The view an adapter of ``modality`` adapts from: that modality's patch embedding in an
        omnipatch run with several (or the first one that has one)."""
        if not self.per_modality:
            return self
        pick = self.per_modality.get(modality) or next((v for v in self.per_modality.values() if v["state"]), None)
        if pick is None:
            return self
        state = {k: v for k, v in self.state.items() if not k.startswith(("patch_embed.", "pos_embed"))}
        return SourceWeights(self.description, {**state, **pick["state"]}, self.encoder, self.decoder,
                             pick.get("grid"), self.ignored, self.omni, {})


# -- entry point --------------------------------------------------------------------------------
def read_source(source: str | Path) -> SourceWeights:
    """Parse ``source`` (see the module docs) and read its weights."""
    s = str(source)
    if s.startswith("timm:"):
        name, eq, path = s[5:].partition("=")
        return read_timm(name.strip(), path.strip() if eq else None)
    p = Path(s[3:] if s.startswith("hf:") else s).expanduser()
    if not p.exists():
        raise OmnipatchError(f"{s}: init source not found (give an omnipatch run directory, "
                             "timm:NAME=/path/model.safetensors, or a Hugging Face save_pretrained folder)")
    p = _hub_snapshot(p)
    cfg_path = p / "config.json"
    if cfg_path.is_file():
        cfg = _json(cfg_path)
        if "model_type" in cfg:
            return read_hf(p, cfg)
    from omnipatch.train import checkpoint as ckpt

    try:
        ckpt.find(p)
    except OmnipatchError:
        raise OmnipatchError(f"{p}: neither an omnipatch run (no checkpoint/model.safetensors) nor a Hugging Face "
                             "folder (no config.json with model_type)") from None
    return read_omnipatch(p)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise OmnipatchError(f"{path}: corrupt JSON ({e})") from None


def _hub_snapshot(p: Path) -> Path:
    """``models--ORG--NAME`` (a hub cache entry) -> its ``snapshots/<rev>`` folder."""
    snaps = p / "snapshots"
    if not p.name.startswith("models--") or not snaps.is_dir():
        return p
    ref = p / "refs" / "main"
    if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
        return snaps / ref.read_text().strip()
    revs = sorted(d for d in snaps.iterdir() if (d / "config.json").is_file())
    if not revs:
        raise OmnipatchError(f"{p}: hub cache entry without a downloaded snapshot (no snapshots/*/config.json)")
    return revs[-1]


def load_tensors(path: Path) -> dict[str, Tensor]:
    """A weights file: safetensors, or a torch file loaded with ``weights_only=True``."""
    if not path.is_file():
        raise OmnipatchError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        from omnipatch.train.checkpoint import safe_torch_load

        sd = safe_torch_load(path)  # weights_only=True; refusals and corruption are one line
    except OmnipatchError:
        raise
    except Exception as e:
        raise OmnipatchError(f"{path}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise OmnipatchError(f"{path}: not a state dict of tensors")
    return sd


def _fold_cls(cls: Tensor, pos: Tensor | None, has_cls_pos: bool) -> tuple[Tensor, Tensor | None]:
    """``(cls + pos[:, :1], pos[:, 1:])``: the class token carries its own position."""
    if pos is None:
        return cls, None
    if has_cls_pos:
        return cls + pos[:, :1], pos[:, 1:]
    return cls, pos


# -- timm -----------------------------------------------------------------------------------------
def read_timm(name: str, path: str | None) -> SourceWeights:
    """``timm:NAME=FILE``: the architecture from timm (built on the meta device, no weights)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception as e:
        raise OmnipatchError(f"timm:{name}: timm cannot build this model ({e})") from None
    if not isinstance(model, VisionTransformer):
        raise OmnipatchError(f"timm:{name}: only timm VisionTransformer models load (this is {type(model).__name__})")
    file = Path(path).expanduser() if path else _timm_cached(name, model)
    if not file.is_file():
        raise OmnipatchError(f"{file}: weights file not found (download it, e.g. `hf download timm/{name} "
                             f"model.safetensors`, and pass timm:{name}=/path/model.safetensors)")
    sd = load_tensors(file)
    if "blocks.0.norm1.weight" not in sd:  # an original (non-timm) layout: timm's own converter
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:
            sd = checkpoint_filter_fn(sd, model)
        except Exception as e:
            raise OmnipatchError(f"{file}: not a timm {name} state dict ({type(e).__name__}: {e})") from None
    blk = model.blocks[0]
    _check_timm_supported(name, model)
    enc = dict(dim=model.embed_dim, depth=len(model.blocks), num_heads=blk.attn.num_heads,
               mlp_ratio=blk.mlp.fc1.out_features / model.embed_dim, qkv_bias=blk.attn.qkv.bias is not None,
               init_values=1e-5 if "blocks.0.ls1.gamma" in sd else None, norm_eps=blk.norm1.eps,
               class_token=model.cls_token is not None, final_norm=not isinstance(model.norm, nn.Identity))
    state = {k: v for k, v in sd.items() if k.startswith(("blocks.", "norm."))}
    pos = sd.get("pos_embed")
    if model.cls_token is not None:
        has_cls_pos = not model.no_embed_class and pos is not None
        state["cls_token"], pos = _fold_cls(sd["cls_token"], pos, has_cls_pos)
    elif pos is not None and not model.no_embed_class:
        pos = pos[:, model.num_prefix_tokens:]
    if pos is not None:
        state["pos_embed"] = pos
    state["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"]
    if "patch_embed.proj.bias" in sd:
        state["patch_embed.proj.bias"] = sd["patch_embed.proj.bias"]
    used = set(state) | {"cls_token", "pos_embed"}
    return SourceWeights(f"timm {name} ({file})", state, enc, None, tuple(model.patch_embed.grid_size),
                         {k: tuple(sd[k].shape) for k in sorted(sd) if k not in used})


def _check_timm_supported(name: str, model) -> None:
    from torch import nn

    blk = model.blocks[0]
    why = None
    if not isinstance(model.norm_pre, nn.Identity):
        why = "a pre-norm before the blocks (norm_pre)"
    elif not isinstance(getattr(blk.attn, "q_norm", nn.Identity()), nn.Identity):
        why = "q/k normalisation"
    elif not isinstance(getattr(blk.mlp, "act", None), nn.GELU) or blk.mlp.act.approximate != "none":
        why = f"MLP {type(blk.mlp).__name__} with activation {type(getattr(blk.mlp, 'act', None)).__name__}"
    elif getattr(model, "reg_token", None) is not None:
        why = "register tokens"
    elif getattr(model.patch_embed, "norm", None) is not None and not isinstance(model.patch_embed.norm, nn.Identity):
        why = "a normalised patch embedding"
    if why:
        raise OmnipatchError(f"timm:{name}: not supported: the model has {why}; omnipatch's blocks are plain "
                             "pre-norm ViT blocks (GELU MLP, optional layer scale)")


def _timm_cached(name: str, model) -> Path:
    hub_id = (getattr(model, "pretrained_cfg", None) or {}).get("hf_hub_id") or f"timm/{name}"
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(hub_id, "model.safetensors")
    except Exception:
        hit = None
    if isinstance(hit, str):
        return Path(hit)
    raise OmnipatchError(f"timm:{name}: no weights file given and none in the local Hugging Face cache "
                         f"({hub_id}); download it (`hf download {hub_id} model.safetensors`) and pass "
                         f"timm:{name}=/path/model.safetensors")


# -- omnipatch ------------------------------------------------------------------------------------
def read_omnipatch(run_dir: Path) -> SourceWeights:
    """An omnipatch run: encoder + decoder keep their names; each grid adapter exports its
    patch embedding (and position table) in the neutral form."""
    from omnipatch.model import OmniModel
    from omnipatch.train import checkpoint as ckpt

    cfg = ckpt.load_config(run_dir)
    if "model" not in cfg or "finetune" in cfg:
        raise OmnipatchError(f"{run_dir}: not a pretraining run (initialise from the pretraining run directory)")
    state = ckpt.load_state(run_dir)
    model = OmniModel.from_config(cfg["model"])
    model.load_state_dict(state, strict=False)
    if model.encoders is not None:
        raise OmnipatchError(f"{run_dir}: a run with separate encoders per modality cannot initialise one encoder")
    neutral = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    neutral.update({k: v for k, v in state.items() if k.startswith("decoder.")})
    per = {m: a.export_init() for m, a in model.adapters.items()}
    return SourceWeights(f"omnipatch run {run_dir}", neutral, dict(cfg["model"]["encoder"]),
                         dict(cfg["model"]["decoder"]), None, {}, {"config": cfg, "state": state}, per)


# -- Hugging Face ---------------------------------------------------------------------------------
def _hf_weights(folder: Path) -> dict[str, Tensor]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_tensors(folder / name)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        out: dict[str, Tensor] = {}
        for shard in sorted(set(_json(index)["weight_map"].values())):
            out.update(load_tensors(folder / shard))
        return out
    raise OmnipatchError(f"{folder}: no weights (model.safetensors or pytorch_model.bin); save the model with "
                         "save_pretrained(), or download it with `hf download ORG/NAME --local-dir DIR`")


def _hf_layers(sd: dict, prefix: str, out_prefix: str, depth: int, style: str) -> dict[str, Tensor]:
    """HF ViT-family layers -> timm block keys (``style``: vit / dinov2 / videomae)."""
    out = {}
    for i in range(depth):
        p, o = f"{prefix}{i}.", f"{out_prefix}{i}."
        a = p + "attention.attention."
        q, k, v = (sd[a + n + ".weight"] for n in ("query", "key", "value"))
        out[o + "attn.qkv.weight"] = torch.cat([q, k, v])
        if style == "videomae":
            if a + "q_bias" in sd:
                out[o + "attn.qkv.bias"] = torch.cat([sd[a + "q_bias"], torch.zeros_like(sd[a + "q_bias"]),
                                                      sd[a + "v_bias"]])
        elif a + "query.bias" in sd:
            out[o + "attn.qkv.bias"] = torch.cat([sd[a + n + ".bias"] for n in ("query", "key", "value")])
        for src, dst in [("attention.output.dense", "attn.proj")] + (
                [("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]
                if style == "dinov2" else
                [("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("intermediate.dense", "mlp.fc1"),
                 ("output.dense", "mlp.fc2")]):
            for t in ("weight", "bias"):
                if p + src + "." + t in sd:
                    out[o + dst + "." + t] = sd[p + src + "." + t]
        if style == "dinov2":
            out[o + "ls1.gamma"] = sd[p + "layer_scale1.lambda1"]
            out[o + "ls2.gamma"] = sd[p + "layer_scale2.lambda1"]
    return out


def read_hf(folder: Path, cfg: dict) -> SourceWeights:
    """A ``save_pretrained`` folder of a ViT-family model (see the module docs)."""
    kind = cfg["model_type"]
    if kind not in HF_TYPES:
        raise OmnipatchError(f"{folder}: Hugging Face model_type {kind!r} is not supported "
                             f"(supported: {', '.join(HF_TYPES)})")
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("use_swiglu_ffn"):
        raise OmnipatchError(f"{folder}: only GELU MLPs load (hidden_act {cfg.get('hidden_act')!r}, "
                             f"use_swiglu_ffn {cfg.get('use_swiglu_ffn', False)})")
    sd = _hf_weights(folder)
    base = {"vit": "vit.", "vit_mae": "vit.", "dinov2": "dinov2.", "videomae": "videomae."}[kind]
    enc_sd = {k[len(base):] if k.startswith(base) else k: v for k, v in sd.items()}
    D, depth = cfg["hidden_size"], cfg["num_hidden_layers"]
    style = kind if kind in ("dinov2", "videomae") else "vit"
    state = _hf_layers(enc_sd, "encoder.layer.", "blocks.", depth, style)
    if "layernorm.weight" in enc_sd:
        state["norm.weight"], state["norm.bias"] = enc_sd["layernorm.weight"], enc_sd["layernorm.bias"]
    state["patch_embed.proj.weight"] = enc_sd["embeddings.patch_embeddings.projection.weight"]
    if "embeddings.patch_embeddings.projection.bias" in enc_sd:
        state["patch_embed.proj.bias"] = enc_sd["embeddings.patch_embeddings.projection.bias"]
    p = cfg["patch_size"]
    img = cfg.get("image_size", 224)
    if kind == "videomae":
        grid = (cfg.get("num_frames", 16) // cfg.get("tubelet_size", 2), img // p, img // p)
        n = grid[0] * grid[1] * grid[2]
        from omnipatch.init.adapt import sinusoid_table

        state["pos_embed"] = sinusoid_table(n, D)
    else:
        grid = (img // p, img // p)
        state["cls_token"], state["pos_embed"] = _fold_cls(enc_sd["embeddings.cls_token"],
                                                           enc_sd.get("embeddings.position_embeddings"), True)
    enc = dict(dim=D, depth=depth, num_heads=cfg["num_attention_heads"],
               mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / D,  # Dinov2 ignores intermediate_size
               qkv_bias=bool(cfg.get("qv_bias", cfg.get("qkv_bias", True))),  # VideoMAE: qv_bias (transformers 5)
               init_values=float(cfg.get("layerscale_value", 1.0)) if kind == "dinov2" else None,
               norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), class_token=kind != "videomae",
               # VideoMAE with mean pooling (its default) has no final LayerNorm: the blocks' output
               # goes to the decoder (and to the classifier's fc_norm after pooling) as it is
               final_norm=not (kind == "videomae" and cfg.get("use_mean_pooling", True)))
    dec = None
    if kind in ("vit_mae", "videomae") and any(k.startswith("decoder.") for k in sd):
        dec, dec_state = _hf_decoder(sd, cfg, kind, grid)
        state.update(dec_state)
    used_prefix = ("encoder.layer.", "layernorm.", "embeddings.cls_token", "embeddings.position_embeddings",
                   "embeddings.patch_embeddings.", "decoder.", "encoder_to_decoder.", "mask_token")
    ignored = {k: tuple(v.shape) for k, v in sorted(enc_sd.items()) if not k.startswith(used_prefix)}
    return SourceWeights(f"Hugging Face {cfg.get('architectures', [kind])[0]} ({folder})", state, enc, dec,
                         grid, ignored)


def _hf_decoder(sd: dict, cfg: dict, kind: str, grid: tuple[int, ...]) -> tuple[dict, dict[str, Tensor]]:
    Dd = cfg["decoder_hidden_size"]
    dd = cfg["decoder_num_hidden_layers"]
    dec = dict(dim=Dd, depth=dd, num_heads=cfg["decoder_num_attention_heads"],
               mlp_ratio=cfg["decoder_intermediate_size"] / Dd, norm_eps=float(cfg.get("layer_norm_eps", 1e-12)))
    layers = next((p for p in ("decoder.decoder_layers.", "decoder.decoder_encoder.layer.")  # transformers 4 / 5
                   if any(k.startswith(p) for k in sd)), "decoder.decoder_layers.")
    out = _hf_layers(sd, layers, "decoder.blocks.", dd, "videomae" if kind == "videomae" else "vit")
    if kind == "vit_mae":
        emb, norm, pred = "decoder.decoder_embed", "decoder.decoder_norm", "decoder.decoder_pred"
        out["decoder.mask_token"] = sd["decoder.mask_token"].reshape(Dd)
        out["decoder.pos_embed"] = sd["decoder.decoder_pos_embed"][:, 1:]  # MAE's class position is zero
    else:
        emb, norm, pred = "encoder_to_decoder", "decoder.norm", "decoder.head"
        out["decoder.mask_token"] = sd["mask_token"].reshape(Dd)
        from omnipatch.init.adapt import sinusoid_table

        out["decoder.pos_embed"] = sinusoid_table(grid[0] * grid[1] * grid[2], Dd)
    out["decoder.embed.weight"] = sd[emb + ".weight"]
    out["decoder.embed.bias"] = sd.get(emb + ".bias", torch.zeros(Dd))
    out["decoder.norm.weight"], out["decoder.norm.bias"] = sd[norm + ".weight"], sd[norm + ".bias"]
    out["decoder.pred.weight"], out["decoder.pred.bias"] = sd[pred + ".weight"], sd[pred + ".bias"]
    return dec, out
