"""Python API mirroring the CLI: ``omnipatch.load(RUN_DIR).embed(...)``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modality import MODALITIES
from omnipatch.model import OmniModel
from omnipatch.runspec import RunSpec
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.engine import resolve_device


@dataclass
class Pretrained:
    """A loaded run: the model, its saved config, and the modality it was trained on."""

    model: OmniModel
    config: dict
    modalities: list[str]
    run_dir: str | None = None

    @cached_property
    def spec(self) -> RunSpec:
        """The run record (:class:`~omnipatch.runspec.RunSpec`) of the loaded checkpoint (a
        config built in memory without modality names has this object's)."""
        cfg = self.config if self.config.get("modality") else {**self.config, "modality": ",".join(self.modalities)}
        return RunSpec.from_checkpoint(cfg)

    @property
    def modality(self) -> str:
        """The (first) modality the run was trained on."""
        return self.modalities[0]

    def modality_name(self, modality: str | None = None) -> str:
        """``modality``, checked against the run's modalities, or the run's first one when None."""
        m = modality or self.modality
        if m not in self.modalities:
            raise OmnipatchError(f"this run was trained on {', '.join(self.modalities)}, not {m!r}")
        return m

    def open(self, source, on_bad_sample: str = "raise", modality: str | None = None, options: dict | None = None):
        """Dataset of ``source`` read with the same options as pretraining, updated by
        ``options`` (those the model was built from must not change; see
        :func:`omnipatch.train.build.merge_checked`)."""
        from omnipatch.train.build import merge_checked, open_data

        m = self.modality_name(modality)
        spec = MODALITIES.get(m)
        return open_data(spec, source, merge_checked(spec, self.spec.options_for(m), options or {}), on_bad_sample)

    @torch.no_grad()
    def embed(self, data, batch_size: int = 256, bf16: bool = True, modality: str | None = None,
              space: str = "encoder", on_bad_sample: str = "raise", skipped: list | None = None,
              level: str = "sample", readout: str = "modality"):
        """Embeddings ``(N, D)`` and ids for a source (folder/glob/manifest), a list of paths,
        a dataset, or a tensor batch in the modality's layout.

        ``space="cross"`` (paired runs) gives the shared cross-modal space used for retrieval.
        A non-finite embedding (NaN / Inf, e.g. from extreme input values) never comes back:
        ``on_bad_sample="raise"`` names the samples, ``"skip"`` drops them; dropped samples and
        files the dataset skipped are appended to ``skipped`` (``Skipped`` records).

        ``level="patch"``: one vector per token, labelled with its coordinates by the
        modality (:attr:`~omnipatch.modality.ModalitySpec.outputs`): an ``xarray.DataArray``
        for grids (climate ``(time, lat, lon, feature)``, volumes and images on their patch
        grid), a ``pandas.DataFrame`` for point groups (``x, y, z``) and table columns; a
        modality that declares no labels gives the :class:`~omnipatch.outputs.Embeddings` record.

        ``readout``: how tokens become one sample vector: ``"modality"`` (default) is the
        modality's own (:attr:`~omnipatch.modality.ModalitySpec.readout`, e.g. coarse regions
        for volumes), ``"mean"`` the mean of the tokens.
        """
        m = self.modality_name(modality)
        if isinstance(data, Tensor) and level == "sample":
            model = self.model.eval()
            device = next(model.parameters()).device
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = sample_embedding(model, Batch(x=data.to(device)), m, space, readout).float()
            return [str(i) for i in range(len(data))], out.cpu()
        emb = self.embeddings(data, level, batch_size, bf16, m, space, on_bad_sample, skipped, readout)
        if level == "patch":
            from omnipatch.outputs import label

            return label(MODALITIES.get(m), emb)
        return emb.ids, torch.from_numpy(emb.features)

    @torch.no_grad()
    def embeddings(self, data, level: str = "sample", batch_size: int = 256, bf16: bool = True,
                   modality: str | None = None, space: str = "encoder", on_bad_sample: str = "raise",
                   skipped: list | None = None, readout: str = "modality"):
        """The unlabelled :class:`~omnipatch.outputs.Embeddings` record of :meth:`embed` (ids,
        dataset positions, features, token padding and coordinates, provenance): what the
        modality's writers turn into files (:func:`omnipatch.outputs.write`)."""
        from omnipatch.batch import Sample, Skipped, collate
        from omnipatch.outputs import LEVELS, Embeddings, provenance

        if level not in LEVELS:
            raise OmnipatchError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if level == "patch" and space != "encoder":
            raise OmnipatchError("level='patch' gives encoder tokens; the cross-modal space is per sample only")
        m = self.modality_name(modality)
        model = self.model.eval()
        device = next(model.parameters()).device
        ac = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        if isinstance(data, Tensor):
            dataset = [Sample(x=x, id=str(i)) for i, x in enumerate(data)]
        elif hasattr(data, "__getitem__") and not isinstance(data, (str, list)):
            dataset = data
        else:
            dataset = self.open(data, modality=m)
        ids, index, feats, pads, coords, grids = [], [], [], [], [], set()
        skipped = skipped if skipped is not None else []
        skipped.extend(getattr(dataset, "skipped_files", []))  # files passed over when opening
        for lo in range(0, len(dataset), batch_size):  # in order, as eval_loader without workers
            items = [(i, dataset[i]) for i in range(lo, min(len(dataset), lo + batch_size))]
            skipped.extend(s for _, s in items if not isinstance(s, Sample))
            good = [(i, s) for i, s in items if isinstance(s, Sample)]
            if not good:
                continue
            batch = collate([s for _, s in good]).to(device)
            with ac:
                if level == "sample":
                    e, pad, c = sample_embedding(model, batch, m, space, readout).float().cpu(), None, None
                else:
                    t, out = model.forward_tokens(batch, m)
                    e, pad = out.float().cpu(), None if t.padding_mask is None else t.padding_mask.cpu()
                    c = None if t.coords is None else t.coords.float().cpu()
                    grids.add(t.grid)
            flat = e if pad is None else e.masked_fill(pad.unsqueeze(-1), 0.0)
            ok = torch.isfinite(flat.flatten(1)).all(dim=1)
            if not bool(ok.all()):
                names = [str(batch.ids[i]) for i in torch.nonzero(~ok).flatten().tolist()]
                if on_bad_sample != "skip":
                    raise OmnipatchError(f"non-finite embedding (NaN/Inf) for {len(names)} sample(s): "
                                         f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} (extreme input "
                                         f"values?); --on-bad-sample skip leaves them out and lists them")
                skipped.extend(Skipped(n, "non-finite embedding (NaN/Inf); extreme input values?") for n in names)
            keep = ok.tolist()
            ids += [i for i, k in zip(batch.ids, keep) if k]
            index += [i for (i, _), k in zip(good, keep) if k]
            feats.append(e[ok])
            pads.append(None if pad is None else pad[ok])
            coords.append(None if c is None else c[ok])
        if not ids:
            raise OmnipatchError("no readable samples to embed" + (f" ({len(skipped)} skipped, first: "
                                 f"{skipped[0].source}: {skipped[0].reason})" if skipped else ""))
        padding, feats = _pad_tokens(feats, pads) if level == "patch" else (None, torch.cat(feats))
        if level == "patch" and all(c is not None for c in coords):
            coords = _pad_tokens(coords, [None] * len(coords))[1].numpy()
        else:
            coords = None
        grid = next(iter(grids)) if len(grids) == 1 else None
        return Embeddings(level, m, ids, index, feats.numpy(), padding, coords, grid, dataset,
                          self.model.adapters[m], provenance(self.run_dir, self.config, data, m, level))


READOUTS = ("modality", "mean")


def sample_embedding(model: OmniModel, batch: Batch, modality: str, space: str = "encoder",
                     readout: str = "modality") -> Tensor:
    """One vector per sample, as ``embed`` gives it: the modality's readout of the encoder
    tokens (:attr:`~omnipatch.modality.ModalitySpec.readout`) or, without one or with
    ``readout="mean"``, their mean; ``space="cross"``: the paired run's shared space."""
    if readout not in READOUTS:
        raise OmnipatchError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    fn = MODALITIES.get(modality).readout if readout == "modality" else None
    if space != "encoder" or fn is None:
        return model.embed(batch, modality, space)
    t, z = model.forward_tokens(batch, modality)
    return fn(t, z)


def load(run_dir: str | Path | None = None, device: str = "auto", random_init: bool = False, seed: int = 0, *,
         init: str | None = None, modality: str | None = None, data=None, options: dict | None = None,
         init_pos: str = "auto", init_strict: bool = False, quiet: bool = True) -> Pretrained:
    """Load a pretrained run (or, with ``random_init``, the same architecture freshly
    initialised: the baseline every probe should be compared with).

    With ``init`` (an omnipatch run, ``timm:NAME=FILE`` or a Hugging Face folder,
    :mod:`omnipatch.init`) the weights come from that checkpoint: into the architecture of
    ``run_dir`` when given, else into a model for ``modality`` whose adapter is fitted to
    ``data`` (channels, statistics; ``options`` are its dataset options).
    """
    if init is not None and run_dir is None:
        from omnipatch.init.run import build_initialised

        model, cfg = build_initialised(init, modality or MODALITIES.default(), data, options, init_pos, init_strict, seed,
                                       quiet=quiet)
        return Pretrained(model.to(resolve_device(device)).eval(), cfg, [cfg["modality"]])
    if run_dir is None:
        raise OmnipatchError("omnipatch.load needs a run directory or init=SOURCE")
    cfg = ckpt.load_config(run_dir)
    torch.manual_seed(seed)
    model = OmniModel.from_config(cfg["model"])
    if init is not None:
        from omnipatch.init.run import init_for_run

        model, cfg["init"] = init_for_run(model, init, None, init_pos, init_strict, seed, quiet)
        cfg["model"] = model.config()
    elif not random_init:
        ckpt.load_weights(run_dir, model)
    return Pretrained(model.to(resolve_device(device)).eval(), cfg, RunSpec.from_checkpoint(cfg).modalities,
                      None if random_init or init is not None else str(Path(run_dir).resolve()))


def _pad_tokens(parts: list[Tensor], pads: list[Tensor | None]) -> tuple[np.ndarray | None, Tensor]:
    """Batches of ``(b, L_i, ...)`` (ragged L between batches) -> padding ``(N, L)`` and ``(N, L, ...)``."""
    L = max(p.shape[1] for p in parts)
    out, mask = [], []
    for p, m in zip(parts, pads):
        extra = L - p.shape[1]
        m = torch.zeros(p.shape[:2], dtype=torch.bool) if m is None else m
        out.append(torch.cat([p, p.new_zeros(p.shape[0], extra, *p.shape[2:])], 1) if extra else p)
        mask.append(torch.cat([m, torch.ones(m.shape[0], extra, dtype=torch.bool)], 1) if extra else m)
    padding = torch.cat(mask).numpy()
    return (padding if padding.any() else None), torch.cat(out)


def write_skipped(path: str | Path, skipped: list, **extra) -> Path | None:
    """Append ``skipped`` records (``.source``, ``.reason``) to a JSONL file, one per line."""
    import json

    if not skipped:
        return None
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        for b in skipped:
            f.write(json.dumps({**extra, "source": str(b.source), "reason": str(b.reason)}) + "\n")
    return p


def skipped_path(out: str | Path) -> Path:
    """Where a command writing the file ``out`` lists what it skipped: ``OUT.skipped.jsonl``."""
    p = Path(out)
    return p.with_name(p.stem + ".skipped.jsonl")


def write_embeddings(path: str | Path, ids: list[str], emb: Tensor | np.ndarray) -> Path:
    """Parquet with columns ``id`` (str) and ``embedding`` (list of float32) (``omnipatch
    embed`` writes the same through :func:`omnipatch.outputs.write`, with the provenance)."""
    from omnipatch.outputs import sample_frame

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sample_frame(ids, emb).to_parquet(path, index=False)
    return Path(path)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise OmnipatchError(f"{path}: embeddings file not found")
    try:
        df = pd.read_parquet(p)
    except Exception as e:
        raise OmnipatchError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
    if not {"id", "embedding"} <= set(df.columns):
        raise OmnipatchError(f"{path}: needs columns 'id' and 'embedding' (has {list(df.columns)})")
    return df["id"].astype(str).tolist(), np.stack(df["embedding"].to_numpy()).astype(np.float32)
