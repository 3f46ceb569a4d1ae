"""Start from a pretrained checkpoint: ``init_model(model, SOURCE)`` (``--init SOURCE``).

The model is rebuilt with the checkpoint's encoder (and MAE decoder, when it has one), then:

- the trunk (``blocks.*``, ``norm.*``, ``cls_token``) loads with no key mapping: the encoder
  speaks timm (:mod:`omnipatch.encoder`);
- each adapter maps what it can (:meth:`ModalityAdapter.init_from`): grid adapters adapt the
  patch embedding and positions by the rules of :mod:`omnipatch.init.adapt`; adapters with
  no patch embedding (point clouds, tables, climate variables) start new and the trunk alone
  transfers;
- an MAE decoder loads by name; the decoder's position projection is fitted (least squares)
  so that it reproduces the checkpoint's decoder positions over its grid; each modality's
  output projection loads when its shape fits;
- an omnipatch run's adapters and output projections load by name when the modality and
  shapes match (continued pretraining on new data).

Sources: :mod:`omnipatch.init.source`. Every tensor gets a row in an
:class:`~omnipatch.init.report.InitReport`.
"""

from __future__ import annotations

import torch
from torch import nn

from omnipatch.errors import OmnipatchError
from omnipatch.init.report import InitReport
from omnipatch.init.source import SourceWeights, read_source

POS_CHOICES = ("auto", "learned", "sincos")


def init_model(model, source: str | SourceWeights, pos: str = "auto", strict: bool = False,
               seed: int = 0) -> tuple[nn.Module, InitReport]:
    """``model`` (an :class:`~omnipatch.model.OmniModel`) rebuilt with ``source``'s
    architecture and weights, and the report.

    Args:
        model: the model the run would train from scratch (adapters fitted to the data).
        source: a source string (:func:`~omnipatch.init.source.read_source`) or weights.
        pos: ``auto`` (the checkpoint's learned positions when they fit), ``learned`` or
            ``sincos`` (fixed N-d sin-cos positions).
        strict: raise when a trunk tensor of the model is missing from the checkpoint.
        seed: seeds the tensors that start new.
    """
    from omnipatch.model import OmniModel

    if pos not in POS_CHOICES:
        raise OmnipatchError(f"init positions must be one of {', '.join(POS_CHOICES)}, got {pos!r}")
    src = read_source(source) if not isinstance(source, SourceWeights) else source
    cfg = model.config()
    cfg["encoder"] = dict(src.encoder)
    if src.decoder is not None:
        cfg["decoder"] = dict(src.decoder)
    for m, a in model.adapters.items():
        cfg["adapters"][m]["kwargs"] = a.init_kwargs(src.for_modality(m), pos)
    torch.manual_seed(seed)
    new = OmniModel.from_config(cfg)
    report = InitReport(src.description)
    with torch.no_grad():
        _apply(new, src, report, strict)
    return new, report


def _apply(model, src: SourceWeights, report: InitReport, strict: bool) -> None:
    done: set[str] = set()

    def mark(name, status, detail=""):
        report.add(name, status, model.state_dict()[name].shape if name in model.state_dict() else None, detail)
        done.add(name)

    # trunk: timm keys, no mapping
    trunk = {k: v for k, v in src.state.items() if k.startswith(("blocks.", "norm.")) or k == "cls_token"}
    encoders = {"encoder": model.encoder} if model.encoder is not None else {
        f"encoders.{m}": e for m, e in model.encoders.items()}
    missing_trunk = []
    for prefix, enc in encoders.items():
        own = enc.state_dict()
        for k, v in own.items():
            if k in trunk and tuple(trunk[k].shape) == tuple(v.shape):
                v.copy_(trunk[k])
                mark(f"{prefix}.{k}", "loaded")
            elif k in trunk:
                raise OmnipatchError(f"{src.description}: {k} is {tuple(trunk[k].shape)}, the encoder's is "
                                     f"{tuple(v.shape)}")
            else:
                missing_trunk.append(k)
                mark(f"{prefix}.{k}", "new", "not in the checkpoint")
    if strict and missing_trunk:
        raise OmnipatchError(f"{src.description}: trunk tensors missing from the checkpoint: "
                             f"{', '.join(sorted(set(missing_trunk))[:6])} (drop --init-strict to start them new)")
    # adapters (+ an omnipatch run's output projections by name)
    omni_state = src.omni["state"] if src.omni else {}
    mapped = bool(src.omni)  # did an adapter take the patch embedding?
    for m, a in model.adapters.items():
        own = {f"adapters.{m}.{k}": v for k, v in a.state_dict().items()}
        if own and all(k in omni_state and omni_state[k].shape == v.shape for k, v in own.items()):
            for k, v in own.items():
                v.copy_(omni_state[k])
                mark(k, "loaded")
        else:
            for k, status, detail in a.init_from(src.for_modality(m)):
                mark(f"adapters.{m}.{k}", status, detail)
                mapped |= status in ("loaded", "resampled")
    # MAE decoder
    dec_src = {k[len("decoder."):]: v for k, v in src.state.items() if k.startswith("decoder.")}
    if dec_src:
        own = model.decoder.state_dict()
        for k, v in own.items():
            if k in dec_src and dec_src[k].shape == v.shape:
                v.copy_(dec_src[k])
                mark(f"decoder.{k}", "loaded")
        if "pos_embed" in dec_src and "pos_proj.weight" not in done:
            _fit_decoder_positions(model, src, dec_src["pos_embed"], mark, report)
        for m, head in model.pred.items():
            key = f"pred.{m}"
            for t in ("weight", "bias"):
                w = omni_state.get(f"{key}.{t}", dec_src.get(f"pred.{t}"))
                if w is not None and w.shape == getattr(head, t).shape:
                    getattr(head, t).copy_(w)
                    mark(f"{key}.{t}", "loaded")
    for k, v in model.state_dict().items():
        if k not in done and k in omni_state and omni_state[k].shape == v.shape:  # objective heads of a run
            v.copy_(omni_state[k])
            mark(k, "loaded")
        elif k not in done:
            mark(k, "new", "not in the checkpoint")
    used = {"cls_token"} | set(trunk) | ({"patch_embed.proj.weight", "patch_embed.proj.bias"} if mapped else set())
    if any(a.export_init()["state"].get("pos_embed") is not None for a in model.adapters.values()):
        used.add("pos_embed")
    used |= {f"decoder.{k}" for k in dec_src}
    for k in sorted(set(src.state) - used):
        report.add(k, "ignored", src.state[k].shape, "not used by this model")
    for k, shape in src.ignored.items():
        report.add(k, "ignored", shape, "not used by this model")


def _fit_decoder_positions(model, src, table, mark, report) -> None:
    """``pos_proj`` such that ``pos_proj(encoder positions) = decoder positions`` over the
    checkpoint's grid (exact when the encoder table spans the grid's functions)."""
    from omnipatch.init.adapt import fit_linear

    for m, a in model.adapters.items():  # the first adapter holding the checkpoint's position table
        enc_pos = a.export_init()["state"].get("pos_embed")
        if enc_pos is not None and enc_pos.shape[1] == table.shape[1]:
            break
    else:
        report.notes.append("decoder positions: the encoder uses sin-cos positions, so the decoder's position "
                            "projection starts new")
        return
    W, b, res = fit_linear(enc_pos[0], table[0])
    model.decoder.pos_proj.weight.copy_(W)
    model.decoder.pos_proj.bias.copy_(b)
    detail = f"fitted to the checkpoint's decoder positions over grid {list(src.pos_grid)} (max residual {res:.1e})"
    mark("decoder.pos_proj.weight", "resampled", detail)
    mark("decoder.pos_proj.bias", "resampled", detail)


__all__ = ["init_model", "InitReport", "SourceWeights", "read_source", "POS_CHOICES"]
