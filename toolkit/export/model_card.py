"""The model card (``README.md``) of a Hugging Face export: what ``huggingface_hub`` shows.

``write_card(checkpoint, out, hf_cfg)`` writes ``out/README.md`` with the YAML front matter
the Hub reads (``library_name``, ``license``, ``tags``; ``pipeline_tag`` for a pretrained
encoder) and a body built only from what the run directory records:

- the modality and its data: the modality's own description, the source, its options and
  the scan's facts (``plan.json``);
- the recipe: the objective mix with weights, the mask (strategy, ratio), the augmentation
  strength, batch size, learning rate, and the steps trained (``metrics.jsonl``, with the
  final loss) against the steps asked for; for a fine-tuning directory also its task, mode
  and epochs (``metrics.json``);
- the figures when known: the linear / kNN probes of ``report.json`` (pretrained vs random
  init vs raw features, the verdict), or a fine-tuning run's validation / test metrics; the
  loss curve and embedding map are copied beside the card;
- provenance: omnipatch version and the SHA-256 of the exported checkpoint's weights.

Nothing is uploaded: the folder is ready for ``huggingface_hub.upload_folder``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from omnipatch import __version__
from omnipatch.runspec import RunSpec
from omnipatch.train import checkpoint as ckpt

#: pictures of the run copied beside the card when present, with their captions
PICTURES = {"loss_curve.png": "training loss", "report_map.png": "held-out embeddings (PCA), omnipatch report"}
DEFAULT_LICENSE = "apache-2.0"  # omnipatch's own; the weights' terms are the user's to set


def _json(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _run_root(checkpoint) -> Path:
    """The run (or fine-tuning) directory holding the checkpoint folder."""
    found = ckpt.find(checkpoint)
    return found.parent if found.name in (ckpt.CKPT, ckpt.CKPT + ".old") else found


def _steps(root: Path) -> tuple[int | None, float | None]:
    """Last logged step and its loss (``metrics.jsonl``), or None."""
    from omnipatch.train.engine import read_metrics

    try:
        recs = read_metrics(root / "metrics.jsonl")
    except Exception:
        return None, None
    if not recs:
        return None, None
    last = max(recs, key=lambda r: r["step"])
    return int(last["step"]), last.get("loss")


def _description(modality: str) -> str | None:
    try:
        from omnipatch.modality import MODALITIES

        return MODALITIES.get(modality).description or None
    except Exception:  # a plugin modality that is not installed here
        return None


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _objectives(spec: RunSpec, cfg: dict) -> str:
    objs = spec.objectives  # an old record without them has the model config's (runspec.migrate)
    parts = []
    for name, o in objs.items():
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in (o or {}).items() if k != "weight")
        parts.append(f"{name} (weight {_fmt((o or {}).get('weight', 1.0))}{', ' + extra if extra else ''})")
    if cfg["model"].get("cross"):
        parts.append(f"cross-modal contrastive (weight {_fmt(spec.model.cross_weight)})")
    return " + ".join(parts) or "none recorded"


def card_facts(checkpoint, hf_cfg, license: str = DEFAULT_LICENSE) -> dict:
    """Everything the card says, as a dict (the front matter under ``"meta"``)."""
    cfg = ckpt.load_config(checkpoint)
    root = _run_root(checkpoint)
    spec = RunSpec.from_checkpoint(cfg)
    run, names = spec.to_config(), spec.modalities
    ft = cfg.get("finetune")
    masks = cfg["model"].get("masks") or {}
    mask = masks.get(hf_cfg.modality) or next(iter(masks.values()), None)
    steps, loss = _steps(root if ft is None else Path(cfg.get("pretrained_from", root)))
    plan = _json(root / "plan.json") or {}
    objectives = list(spec.objectives)
    tags = ["omnipatch", "self-supervised", *names, *objectives] + ([ft["task"], "fine-tuned"] if ft else [])
    meta = {"library_name": "omnipatch", "license": license, "tags": list(dict.fromkeys(tags))}
    if ft is None:
        meta["pipeline_tag"] = "feature-extraction"
    return {
        "meta": meta, "modality": ", ".join(names), "kind": "pretrained encoder" if ft is None else
        f"fine-tuned {ft['task']} model", "description": {m: _description(m) for m in names},
        "source": spec.source, "options": run.data.options or {},
        "facts": plan.get("facts") or {}, "objectives": _objectives(spec, cfg),
        "mask": mask, "augment_strength": spec.augment_strength,
        "train": run.to_dict()["train"], "steps": steps, "loss": loss,
        "finetune": ft, "finetune_result": _json(root / "metrics.json") if ft else None,
        "pretrained_from": cfg.get("pretrained_from"), "report": _json(root / "report.json"),
        "encoder": hf_cfg.omni_model["encoder"], "version": __version__,
        "sha256": ckpt.content_hash(checkpoint), "pictures": [p for p in PICTURES if (root / p).is_file()],
        "root": root,
    }


def _recipe(f: dict) -> list[str]:
    t, m = f["train"], f["mask"]
    asked = int(t.get("steps") or 0)
    steps = (f"unknown (no metrics.jsonl; {asked:,} asked for)" if asked else "unknown") if f["steps"] is None \
        else f"{f['steps']:,}" + (
        f" (of {asked:,} asked for)" if asked and asked != f["steps"] else "")
    lines = [f"- objectives: {f['objectives']}",
             f"- mask: {m.get('strategy', '?')}, ratio {_fmt(m.get('ratio'))}" if m else "- mask: none recorded",
             f"- augmentation strength: {_fmt(f['augment_strength'])}",
             f"- steps: {steps}; batch size {t.get('batch_size')} x grad accumulation {t.get('grad_accum', 1)}; "
             f"lr {_fmt(t.get('lr'))}, weight decay {_fmt(t.get('weight_decay'))}, precision {t.get('precision')}"]
    if f["loss"] is not None:
        lines.append(f"- final training loss: {_fmt(float(f['loss']))}")
    if f["finetune"]:
        ft, res = f["finetune"], f["finetune_result"] or {}
        lines.append(f"- fine-tuning: task {ft['task']}, mode {ft['mode']}, lr {_fmt(ft['lr'])}, layer decay "
                     f"{_fmt(ft['layer_decay'])}, augmentation strength {_fmt(ft['augment_strength'])}, "
                     f"{res.get('epochs_run', '?')} of {ft['epochs']} epochs (best {res.get('best_epoch', '?')}); "
                     f"pretrained from `{f['pretrained_from']}`")
    return lines


def _figures(f: dict) -> list[str]:
    r, res = f["report"], f["finetune_result"]
    if res:
        rows = [f"| {split} | {k} | {_fmt(v)} |" for split in ("train", "val", "test")
                for k, v in (res.get(split) or {}).items() if isinstance(v, (int, float))]
        return ["| split | metric | value |", "|---|---|---|", *rows] if rows else ["No metrics recorded."]
    if not r:
        return ["Not measured: `omnipatch report RUN_DIR --labels LABELS.csv` probes the embeddings "
                "(linear and kNN, against random init and raw features) and a new export adds them here."]
    rows = [f"| {name} | {v['linear']:.3f} | {v['knn']:.3f} |" for name, v in r["probes"].items()]
    return [f"Held-out split: {r['split']}; {r['n_train']} train / {r['n_test']} test samples, "
            f"{r['classes']} labels.", "", "| representation | linear probe | kNN (k=20) |", "|---|---|---|", *rows,
            "", f"{r['verdict']}"] + ([
            "", "Health of the held-out embeddings: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["health"].items())]
            if r.get("health") else [])


def _licence(lic: str) -> str:
    if lic == DEFAULT_LICENSE:
        return (f"License: `{lic}`, omnipatch's own (`omnipatch export --license ID` sets another); check the "
                "terms of the training data before sharing the weights.")
    return f"License: `{lic}`."


def render(f: dict) -> str:
    enc = f["encoder"]
    data = [f"- modality: {f['modality']}"]
    data += [f"- {m}: {d}" for m, d in f["description"].items() if d]
    data += [f"- source: `{f['source']}`"]
    if f["options"]:
        data.append(f"- options: `{json.dumps(f['options'], sort_keys=True)}`")
    if f["facts"]:
        data.append("- scanned: " + ", ".join(f"{k} {v}" for k, v in f["facts"].items()))
    pics = [f"![{PICTURES[p]}]({p})" for p in f["pictures"]]
    body = [f"# omnipatch {f['kind']} ({f['modality']})", "",
            f"Encoder: {enc['depth']} blocks, width {enc['dim']}, {enc['num_heads']} heads, trained with "
            f"omnipatch {f['version']}. Exported by "
            f"`omnipatch export --format hf`.", "", "## Data", "", *data, "", "## Recipe", "", *_recipe(f), "",
            "## Evaluation", "", *_figures(f), "", *([*pics, ""] if pics else []), "## Use", "",
            "```python\nimport omnipatch.export\nomnipatch.export.register()\n"
            "from transformers import AutoModel\nmodel = AutoModel.from_pretrained(\"PATH\")\n"
            "out = model(x)  # x as omnipatch's reader produces it, batched\n"
            "out.pooler_output  # (B, D) embeddings" + ("" if f["finetune"] is None else "; out.logits the head")
            + "\n```", "", "## Provenance", "",
            f"omnipatch {f['version']}; checkpoint weights SHA-256 `{f['sha256']}`.", "", _licence(f['meta']['license']),
            ""]
    front = yaml.safe_dump(f["meta"], sort_keys=False)
    return f"---\n{front}---\n\n" + "\n".join(body)


def write_card(checkpoint, out, hf_cfg, license: str = DEFAULT_LICENSE) -> Path:
    """Write ``out/README.md`` (and copy the run's pictures beside it); returns its path."""
    f = card_facts(checkpoint, hf_cfg, license)
    out = Path(out)
    for p in f["pictures"]:
        shutil.copyfile(f["root"] / p, out / p)
    path = out / "README.md"
    path.write_text(render(f))
    return path


__all__ = ["card_facts", "render", "write_card"]
