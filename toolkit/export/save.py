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
:func:`register` does, and :func:`install_import_hook` arranges for it to happen the moment
anything imports ``transformers``, so ``AutoModel.from_pretrained`` needs no extra line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

from omnipatch.errors import OmnipatchError
from omnipatch.export.model_card import DEFAULT_LICENSE, write_card
from omnipatch.train import checkpoint as ckpt

FORMATS = ("hf",)


def register():
    """Register ``omnipatch`` with ``AutoConfig`` / ``AutoModel``; returns the two classes."""
    from omnipatch.export.hf import OmnipatchConfig, OmnipatchModel

    return OmnipatchConfig, OmnipatchModel


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``transformers`` with the normal machinery, then registers once it has loaded."""

    def find_spec(self, name, path, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; the real finder resolves the package
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        spec.loader = self._loader  # leave the real loader behind for reloads and introspection
        self._loader.exec_module(module)
        if "omnipatch.export.hf" in sys.modules:  # transformers was imported by omnipatch.export.hf, which registers itself
            return
        try:
            register()
        except Exception as e:  # never break `import transformers` for the user
            print(f"omnipatch: could not register with transformers ({type(e).__name__}: {e})", file=sys.stderr)


def install_import_hook() -> None:
    """Register with ``transformers`` now if it is loaded, else as soon as it is imported."""
    if "transformers" in sys.modules:
        register()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


def hf_config_dict(cfg: dict) -> dict:
    """``OmnipatchConfig`` kwargs from an omnipatch checkpoint config (pretraining run or
    fine-tuning directory)."""
    model_cfg = dict(cfg["model"])
    names = [m.strip() for m in cfg["modality"].split(",") if m.strip()]
    out = {"modality": names[0], "hidden_size": int(model_cfg["encoder"]["dim"]), "head": None, "classes": None}
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


__all__ = ["export_hf", "register", "install_import_hook", "hf_config_dict", "FORMATS"]
