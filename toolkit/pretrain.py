"""Build a run from a :class:`Config` and pretrain: the library behind ``omnipatch pretrain``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from omnipatch import checkpoint as ckpt
from omnipatch.config import Config
from omnipatch.data import CachedDataset
from omnipatch.encoder import PRESETS
from omnipatch.engine import fit, single_modality_step
from omnipatch.errors import OmnipatchError
from omnipatch.heads import DecoderConfig
from omnipatch.masking import MASKS, MaskSpec
from omnipatch.modality import ADAPTERS, MODALITIES, ModalitySpec, load_builtin
from omnipatch.model import OmniModel
from omnipatch.objectives import OBJECTIVES


def open_data(spec: ModalitySpec, source, options: dict, on_bad_sample: str = "raise"):
    """The modality's dataset with its default options updated by ``options``."""
    if not source:
        raise OmnipatchError("no data source given (--data SRC)")
    unknown = set(options) - set(spec.options) - {"patch_size"}
    if unknown:
        raise OmnipatchError(f"unknown option(s) {sorted(unknown)} for modality {spec.name!r} "
                             f"(known: {', '.join(sorted(spec.options))})")
    return spec.open_dataset(source, on_bad_sample=on_bad_sample, **{**spec.options, **options})


def check_names(cfg: Config, spec: ModalitySpec) -> MaskSpec:
    """Fail fast, before reading any data, on unknown preset / objective / mask names."""
    PRESETS.get(cfg.model.preset)
    for name in cfg.objectives:
        OBJECTIVES.get(name)
    mask = MaskSpec(cfg.model.mask or spec.default_mask, cfg.model.mask_ratio, cfg.model.block_size)
    MASKS.get(mask.strategy)
    return mask


def build_model(cfg: Config, spec: ModalitySpec, dataset) -> OmniModel:
    """Adapter (stats inferred from ``dataset``) + encoder preset + objectives, seeded."""
    enc = PRESETS.get(cfg.model.preset)
    mask = check_names(cfg, spec)
    kwargs = spec.adapter_kwargs(dataset, {**spec.options, **cfg.data.options})
    torch.manual_seed(cfg.train.seed)
    adapter = ADAPTERS.get(spec.adapter)(dim=enc.dim, **kwargs)
    dec = DecoderConfig(cfg.model.decoder_dim, cfg.model.decoder_depth, cfg.model.decoder_heads)
    return OmniModel({spec.name: adapter}, enc, dec, cfg.objectives, {spec.name: mask})


def pretrain(cfg: Config, out: str | Path, resume: bool = False, quiet: bool = False) -> dict:
    """Pretrain on ``cfg.data`` and write ``out/`` (checkpoint, metrics, pictures).

    With ``resume=True`` the architecture (including normalisation statistics) comes from the
    checkpoint in ``out``; ``cfg.train.steps`` may be raised to train longer.
    """
    load_builtin()
    out = Path(out)
    if resume:
        saved = ckpt.load_config(out)
        model = OmniModel.from_config(saved["model"])
        run = Config.from_dict(saved["run"])
        run.train.steps = max(run.train.steps, cfg.train.steps) if cfg.train.epochs == 0 else run.train.steps
        cfg = run
        spec = MODALITIES.get(cfg.data.modality)
        dataset = open_data(spec, cfg.data.source, cfg.data.options, cfg.data.on_bad_sample)
    else:
        spec = MODALITIES.get(cfg.data.modality)
        check_names(cfg, spec)
        dataset = open_data(spec, cfg.data.source, cfg.data.options, cfg.data.on_bad_sample)
        model = build_model(cfg, spec, dataset)
    if cfg.data.cache and cfg.data.num_workers == 0:
        dataset = CachedDataset(dataset)
    config = {"run": cfg.to_dict(), "model": model.config(), "modality": spec.name,
              "classes": getattr(dataset, "classes", None)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    compute = single_modality_step(model, spec.name, spec.augment, cfg.data.augment_strength)
    summary = fit(model, dataset, compute=compute, cfg=cfg.train, run_dir=out, config=config,
                  resume=resume, num_workers=cfg.data.num_workers, quiet=quiet)
    summary["reconstruction"] = str(save_reconstruction_picture(model, dataset, spec.name, out))
    summary["run_dir"] = str(out)
    return summary


def save_reconstruction_picture(model: OmniModel, dataset, modality: str, out: Path, n: int = 8) -> Path:
    """Original / masked / reconstructed for the first ``n`` readable samples."""
    from omnipatch.batch import Sample, collate
    from omnipatch.plots import save_reconstruction

    samples = [s for s in (dataset[i] for i in range(min(len(dataset), 4 * n))) if isinstance(s, Sample)][:n]
    device = next(model.parameters()).device
    model.eval()
    pics = model.reconstruct(collate(samples).to(device), modality, torch.Generator().manual_seed(0))
    return save_reconstruction({k: v.cpu() for k, v in pics.items()}, out / "reconstruction.png", n)
