"""Export to Hugging Face ``transformers``: the library behind ``omnipatch export --format hf``.

``export_hf(RUN_DIR, HF_DIR)`` writes a folder that ``transformers`` loads::

    import omnipatch.export                      # registers model_type "omnipatch"
    omnipatch.export.register()                  # (or: import omnipatch.export.hf)
    from transformers import AutoModel
    model = AutoModel.from_pretrained(HF_DIR)    # an omnipatch.export.hf.OmnipatchModel
    out = model(x)                               # x in the modality's layout, e.g. (B, C, H, W)
    out.pooler_output                            # (B, D) == omnipatch.load(RUN_DIR).embed(x)

The folder holds ``config.json`` (:class:`omnipatch.export.hf.OmnipatchConfig`) and
``model.safetensors`` (adapter(s), encoder and, for a fine-tuning directory, the head; the
same parameter names and bits as the omnipatch checkpoint). Normalisation statistics travel
in the config, so the exported model takes the raw values omnipatch's readers produce.

This module never imports ``transformers`` at import time (the CLI imports it):
:func:`~omnipatch.export.hook.register` does, when an export needs it (:mod:`omnipatch.export.hook`).
"""

from __future__ import annotations

from pathlib import Path

from omnipatch.errors import OmnipatchError
from omnipatch.export.hook import register
from omnipatch.export.model_card import DEFAULT_LICENSE, write_card
from omnipatch.train import checkpoint as ckpt

FORMATS = ("hf",)


def hf_config_dict(cfg: dict) -> dict:
    """``OmnipatchConfig`` kwargs from an omnipatch checkpoint config (pretraining run or
    fine-tuning directory)."""
    from omnipatch.runspec import RunSpec

    model_cfg = dict(cfg["model"])
    out = {"modality": RunSpec.from_checkpoint(cfg).modality, "hidden_size": int(model_cfg["encoder"]["dim"]), "head": None, "classes": None}
    if "finetune" in cfg:
        m = cfg["modality"]
        model_cfg["adapters"] = {m: model_cfg["adapters"][m]}
        ft = cfg["finetune"]
        out["head"] = {**cfg["head"], "task": ft["task"], "multi_label": ft.get("multi_label", False),
                       "target_scale": cfg.get("target_scale")}
        out["classes"] = cfg.get("classes")
        if out["classes"] and ft["task"] == "classification":
            out["id2label"] = dict(enumerate(out["classes"]))
            out["label2id"] = {c: i for i, c in enumerate(out["classes"])}
    if model_cfg.get("separate_encoders"):  # one encoder per modality: export the first modality's
        model_cfg["adapters"] = {out["modality"]: model_cfg["adapters"][out["modality"]]}
    out["omni_model"] = {k: model_cfg[k] for k in ("adapters", "encoder")}
    if model_cfg.get("cross") and "finetune" not in cfg:  # paired run: keep the shared retrieval space
        out["omni_model"]["cross"] = model_cfg["cross"]
    return out


def _exported_state(checkpoint, model_keys: set[str], encoder_prefix: str = "encoder.") -> dict:
    from safetensors.torch import load_file

    path = ckpt.find(checkpoint) / "model.safetensors"
    try:
        state = load_file(str(path))
    except Exception as e:
        raise OmnipatchError(f"{path}: cannot read weights ({e})") from None
    if encoder_prefix != "encoder.":  # a separate-encoder run: its modality's encoder is the encoder
        state = {("encoder." + k[len(encoder_prefix):] if k.startswith(encoder_prefix) else k): v
                 for k, v in state.items()}
    picked = {k: v for k, v in state.items() if k in model_keys}
    missing = sorted(model_keys - set(picked))
    if missing:
        raise OmnipatchError(f"{path}: weights missing for the export ({missing[:5]})")
    return picked


def export_hf(checkpoint, out, verify: bool = True, license: str = DEFAULT_LICENSE) -> Path:
    """Write ``out`` (``config.json`` + ``model.safetensors`` + the model card ``README.md``,
    :mod:`omnipatch.export.model_card`) for ``transformers`` and the Hugging Face Hub; nothing is uploaded.

    Args:
        checkpoint: a pretraining run or a fine-tuning directory.
        out: the export folder.
        verify: reload the folder and check every exported tensor is bit-equal.
        license: the card's ``license`` (a Hub licence id; omnipatch's own by default).
    """
    import torch

    cfg = ckpt.load_config(checkpoint)
    OmnipatchConfig, OmnipatchModel = register()
    hf_cfg = OmnipatchConfig(**hf_config_dict(cfg))
    torch.manual_seed(0)
    model = OmnipatchModel(hf_cfg)
    separate = bool(cfg["model"].get("separate_encoders")) and "finetune" not in cfg
    prefix = f"encoders.{hf_cfg.modality}." if separate else "encoder."
    state = _exported_state(checkpoint, set(model.state_dict()), prefix)
    model.load_state_dict(state, strict=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    write_card(checkpoint, out, hf_cfg, license)
    if verify:
        back = OmnipatchModel.from_pretrained(out)
        for k, v in back.state_dict().items():
            if k in state and not torch.equal(v, state[k]):
                raise OmnipatchError(f"export check failed: {k} differs after reloading {out}")
    return out


__all__ = ["export_hf", "hf_config_dict", "FORMATS"]
