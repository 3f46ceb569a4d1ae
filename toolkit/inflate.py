"""Load a checkpoint into a model whose input has a different channel count.

Fine-tuning often meets data with other channels than pretraining (1-channel CT -> 4-channel
MRI, RGB -> 13-band Sentinel-2). Grid adapters embed a patch of ``prod(patch_size) * C``
values, ordered ``(p1, ..., pn, C)``, with one linear map ``proj`` (``(D, prod(p) * C)``), so
only that map (and, for continued pretraining, the MAE output projection ``pred.<m>``)
depends on ``C``. Everything else loads unchanged.

**The rule** (``C`` = pretraining channels, ``C'`` = new channels, ``w[..., c]`` = the
input weights of channel ``c`` at every patch position; for RGB weights it is timm's
``adapt_input_conv`` whenever ``C' = 1`` or ``C' > 3``):

- ``C' > C`` (inflate): ``w'[..., j] = w[..., j mod C] * C / C'`` -- channels repeat
  cyclically, scaled so that an input equal in every channel keeps its embedding exactly
  when ``C`` divides ``C'`` (e.g. 1 -> 4, 3 -> 12) and approximately otherwise (3 -> 13).
- ``C' < C`` (fold): ``w'[..., j] = sum_{c mod C' = j} w[..., c]`` -- channels that share a
  residue are summed (``C' = 1``: the sum over all channels), so an input equal in every
  channel keeps its embedding exactly.
- ``proj.bias``, position / modality embeddings and the encoder are unchanged.
- MAE output rows (``pred.<m>``, ``(P, Ddec)`` with ``P = prod(p) * C``): new channel ``j``
  copies old channel ``j mod C`` (inflate) or averages its residue class (fold).
- The new adapter's per-channel ``mean`` / ``std`` come from the new data (the rule acts on
  standardised inputs); without them, the identity ``0 / 1`` is used.

What cannot be adapted raises :class:`~omnipatch.errors.OmnipatchError`: adapters without
the grid patch layout (point clouds, tables, climate variables: their inputs are not
interchangeable channels), a different patch size or number of spatial axes.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from omnipatch.errors import OmnipatchError
from omnipatch.train import checkpoint as ckpt


def inflate_channels(w: Tensor, c_old: int, c_new: int, scale: bool = True) -> Tensor:
    """Apply the module's rule along the last axis of ``w (..., c_old)`` -> ``(..., c_new)``.

    Args:
        w: weights whose last axis indexes channels.
        scale: inflate with the ``C / C'`` factor and fold by summing (input weights); with
            ``False`` inflate copies and fold averages (output rows).
    """
    if c_new < 1:
        raise OmnipatchError(f"cannot adapt to {c_new} input channels")
    if c_new == c_old:
        return w.clone()
    if c_new > c_old:
        idx = torch.arange(c_new, device=w.device) % c_old
        out = w[..., idx]
        return out * (c_old / c_new) if scale else out
    groups = torch.arange(c_old, device=w.device) % c_new
    out = w.new_zeros(*w.shape[:-1], c_new).index_add_(w.dim() - 1, groups, w)
    if not scale:
        out = out / torch.bincount(groups, minlength=c_new).to(w.dtype)
    return out


def _grid_kwargs(model_cfg: dict, modality: str) -> dict:
    adapters = model_cfg["adapters"]
    if modality not in adapters:
        raise OmnipatchError(f"the checkpoint has no adapter for modality {modality!r} (has {list(adapters)})")
    a = adapters[modality]
    kw = a["kwargs"]
    if channels_kwarg(a["name"]) is None or "patch_size" not in kw:
        raise OmnipatchError(f"cannot change the input channels of the {a['name']!r} adapter: only grid adapters "
                             "(image, volume, video, audio, grid) have a channel-inflation rule")
    return kw


def channels_kwarg(adapter_name: str) -> str | None:
    """The registered adapter's :attr:`~omnipatch.adapter.ModalityAdapter.channels_kwarg`: the
    constructor kwarg this module's rule rewrites, or None (channels cannot change)."""
    from omnipatch.modality import ADAPTERS

    return ADAPTERS.get(adapter_name).channels_kwarg


def adapt_state_dict(state: dict[str, Tensor], model_cfg: dict, modality: str, in_chans: int,
                     mean: list[float] | None = None, std: list[float] | None = None,
                     patch_size: list[int] | None = None) -> tuple[dict[str, Tensor], dict]:
    """Weights and architecture config for ``in_chans`` input channels (see the module rule).

    Args:
        state: the checkpoint's state dict (keys ``adapters.<m>.proj.weight``, ...).
        model_cfg: ``OmniModel.config()`` of the checkpoint.
        modality: the adapter to adapt.
        in_chans: the new channel count ``C'``.
        mean, std: per-channel statistics of the new data (length ``C'``).
        patch_size: the new data's patch size, if known; must equal the checkpoint's.
    Returns:
        ``(state, model_cfg)`` with only the channel-dependent entries changed.
    """
    kw = _grid_kwargs(model_cfg, modality)
    ck = channels_kwarg(model_cfg["adapters"][modality]["name"])
    c_old, ps = int(kw[ck]), [int(p) for p in kw["patch_size"]]
    if patch_size is not None:
        new_ps = [int(p) for p in ([patch_size] * len(ps) if isinstance(patch_size, int) else patch_size)]
        if new_ps != ps:
            raise OmnipatchError(f"cannot adapt patch size {ps} of the checkpoint to {new_ps}: "
                                 "fine-tune with the pretraining patch size")
    n = math.prod(ps)
    key = f"adapters.{modality}.proj.weight"
    if key not in state:
        raise OmnipatchError(f"cannot adapt channels: the checkpoint has no {key}")
    w = state[key]
    if w.shape[1] != n * c_old:
        raise OmnipatchError(f"cannot adapt channels: {key} is {tuple(w.shape)}, not (D, {n} x {c_old})")
    for name, vals in (("mean", mean), ("std", std)):
        if vals is not None and len(vals) != in_chans:
            raise OmnipatchError(f"{name} needs {in_chans} values (one per channel), got {len(vals)}")
    out = dict(state)
    D = w.shape[0]
    out[key] = inflate_channels(w.reshape(D, n, c_old), c_old, in_chans).reshape(D, n * in_chans).contiguous()
    for suffix in ("weight", "bias"):  # MAE output rows (continued pretraining)
        k = f"pred.{modality}.{suffix}"
        if k in state:
            t = state[k]
            rows = t.reshape(n, c_old, -1).movedim(1, -1)  # (n, rest, C)
            new = inflate_channels(rows, c_old, in_chans, scale=False).movedim(-1, 1)
            out[k] = new.reshape(n * in_chans, *t.shape[1:]).contiguous()
    cfg = copy.deepcopy(model_cfg)
    new_kw = cfg["adapters"][modality]["kwargs"]
    new_kw[ck] = int(in_chans)
    new_kw["mean"] = [0.0] * in_chans if mean is None else [float(v) for v in mean]
    new_kw["std"] = [1.0] * in_chans if std is None else [float(v) for v in std]
    return out, cfg


def load_adapted(run_dir, in_chans: int, mean: list[float] | None = None, std: list[float] | None = None,
                 modality: str | None = None):
    """The run's :class:`~omnipatch.model.OmniModel` rebuilt for ``in_chans`` channels, with
    the pretrained weights adapted by the module's rule (strict load: no key left out)."""
    from safetensors.torch import load_file

    from omnipatch.model import OmniModel
    from omnipatch.runspec import RunSpec

    cfg = ckpt.load_config(run_dir)
    m = modality or RunSpec.from_checkpoint(cfg).modality
    state = load_file(str(ckpt.find(run_dir) / "model.safetensors"))
    state, model_cfg = adapt_state_dict(state, cfg["model"], m, in_chans, mean, std)
    model = OmniModel.from_config(model_cfg)
    model.load_state_dict(state, strict=True)
    return model


__all__ = ["inflate_channels", "adapt_state_dict", "load_adapted"]
