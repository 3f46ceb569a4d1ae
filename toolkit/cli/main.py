"""The ``omnipatch`` command. Thin: parse, build a config, call the library.

User mistakes print one line ``omnipatch: error: ...`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from omnipatch.dataflags import add_data_flags
from omnipatch.errors import OmnipatchError

#: modules with ``add_commands(subparsers)``; each keeps its command next to its library code
COMMAND_MODULES: list[str] = ["omnipatch.eval.retrieval", "omnipatch.finetune.run", "omnipatch.export.save"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        raise OmnipatchError(f"{self.prog}: {message}")


def add_init_args(s) -> None:
    """``--init SOURCE`` / ``--init-pos`` / ``--init-strict`` (pretrain and finetune)."""
    s.add_argument("--init", metavar="SOURCE", help="start from a checkpoint: an omnipatch run directory, "
                   "timm:NAME=FILE.safetensors, or a Hugging Face save_pretrained folder (ViT, ViTMAE, DINOv2, VideoMAE)")
    s.add_argument("--init-pos", choices=["auto", "learned", "sincos"], default="auto",
                   help="positions: the checkpoint's learned table (resampled) or sin-cos; auto: the table when it fits")
    s.add_argument("--init-strict", action="store_true", help="fail when trunk tensors are missing from --init")


def _pretrain(a) -> None:
    from omnipatch.config import Config, apply_keys, load_yaml_dict, parse_duration, parse_objectives, set_key
    from omnipatch.dataflags import data_options
    from omnipatch.modality import MODALITIES
    from omnipatch.train.pretrain import pretrain

    given = load_yaml_dict(a.config) if a.config else {}
    modality = a.modality or (given.get("data") or {}).get("modality") or Config().data.modality
    cfg = Config()
    names = [m.strip() for m in str(modality).split(",") if m.strip()]
    recipe = MODALITIES.get(names[0]).recipe if len(names) == 1 and not a.resume else {}
    apply_keys(cfg, recipe)  # the modality's measured recipe, under everything the user gives
    cfg = Config.from_dict(given, base=cfg)
    for flag, key in (("modality", "data.modality"), ("data", "data.source"), ("preset", "model.preset"),
                      ("steps", "train.steps"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("on_bad_sample", "data.on_bad_sample"), ("seed", "train.seed")):
        v = getattr(a, flag)
        if v is not None:
            set_key(cfg, key, v)
    if a.budget:
        cfg.train.budget = parse_duration(a.budget)
    if a.objective:
        cfg.objectives = parse_objectives(a.objective)
    cfg.data.options.update(data_options(a, sets_only_data=False))  # --variables, --id-column, ...
    for kv in a.set or []:
        k, eq, v = kv.partition("=")
        if not eq:
            raise OmnipatchError(f"--set expects key=value, got {kv!r}")
        set_key(cfg, k.strip(), v.strip())
    if recipe and not a.quiet:
        objs = "+".join(f"{n}:{o.get('weight', 1.0):g}" for n, o in cfg.objectives.items())
        print(f"recipe for {names[0]}: objectives {objs}, augment_strength {cfg.data.augment_strength:g}, "
              f"mask_ratio {cfg.model.mask_ratio:g}, lr {cfg.train.lr:g} (the modality's measured default; "
              f"--objective / --set override)")
    if a.resume:
        _check_resume_flags(a, cfg)
    summary = pretrain(cfg, a.out, resume=a.resume, quiet=a.quiet, labels=a.labels, init=a.init,
                       init_pos=a.init_pos, init_strict=a.init_strict, overwrite=a.overwrite)
    last = summary["last"]
    if summary["steps"] == 0:
        print("pretrained 0 steps: wrote the initial (random-init) checkpoint")
    else:
        print(f"pretrained {summary['steps']} steps: " + ", ".join(
            f"{k} {v:.4f}" for k, v in last.items() if k not in ("step", "lr", "samples_per_s", "grad_norm")
            and not k.startswith("health/")))
    logged = "".join(f", {n}/" for n in summary.get("train_config", {}).get("loggers", []) if n != "jsonl")
    print(f"run directory: {summary['run_dir']} (checkpoint/, plan.json, metrics.jsonl, loss_curve.png, "
          f"reconstruction.png{', report.md' if summary.get('report') else ''}{logged})")
    if summary.get("report"):
        print(summary["report_summary"])


def _check_resume_flags(a, cfg) -> None:
    """``--resume`` continues the run exactly: a flag that would change what it trains on is refused."""
    from omnipatch.train import checkpoint as ckpt

    saved = ckpt.load_config(a.out)["run"]
    given = {"--data": (a.data, cfg.data.source, saved["data"]["source"]),
             "--modality": (a.modality, cfg.data.modality, saved["data"]["modality"]),
             "--batch-size": (a.batch_size, cfg.train.batch_size, saved["train"]["batch_size"]),
             "--objective": (a.objective, cfg.objectives, saved["objectives"])}
    for flag, (raw, now, was) in given.items():
        if raw is None:
            continue
        same = (str(Path(now).resolve()) == str(Path(was).resolve())) if flag == "--data" else now == was
        if flag == "--objective" and not same:
            same = {k: v.get("weight") for k, v in now.items()} == {k: v.get("weight") for k, v in was.items()}
        if not same:
            raise OmnipatchError(f"--resume continues the run in {a.out} exactly: {flag} {raw} differs from the "
                                 f"run's {was!r}; drop {flag}, or start a new run (--init {a.out} to continue "
                                 f"from its weights)")


def _embed(a) -> None:
    from omnipatch.api import load, skipped_path, write_skipped
    from omnipatch.config import check_range
    from omnipatch.dataflags import data_options
    from omnipatch.modality import MODALITIES
    from omnipatch.outputs import check_format, write

    check_range("--batch-size", a.batch_size, "int", 1)
    pre = load(a.checkpoint, random_init=a.random_init)
    spec = MODALITIES.get(pre.modality_name(a.modality))
    check_format(spec, a.level, a.out)  # a format the modality cannot write fails before any data is read
    ds = pre.open(a.data, a.on_bad_sample, modality=a.modality, options=data_options(a))
    skipped: list = []
    sk = skipped_path(a.out)
    sk.unlink(missing_ok=True)  # a fresh listing per run, never an old one
    emb = pre.embeddings(ds, a.level, batch_size=a.batch_size, modality=a.modality, on_bad_sample=a.on_bad_sample,
                         skipped=skipped)
    emb.provenance["data_source"] = str(a.data)
    paths = write(spec, emb, a.out)
    what = "token embeddings" if a.level == "patch" else "embeddings"
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files ({paths[0]} ...)"
    print(f"wrote {len(emb.ids)} {what if a.level == 'sample' else 'samples of ' + what} of width "
          f"{emb.features.shape[-1]} to {where}")
    if write_skipped(sk, skipped):
        print(f"skipped {len(skipped)} sample(s), listed in {sk}")


def _inspect(a) -> None:
    from omnipatch.dataflags import data_options
    from omnipatch.modality import MODALITIES
    from omnipatch.train.plan import fit_batch_size, scan

    spec = MODALITIES.get(a.modality)
    opts = data_options(a)
    plan = scan(spec, a.data, opts)
    from omnipatch.train.pretrain import open_data

    ds = open_data(spec, a.data, {**plan.options(), **opts}, "skip")
    plan.facts.setdefault("samples", len(ds))
    fit_batch_size(plan, a.batch_size or 0, len(ds))
    if a.out:
        plan.save(a.out)
    print(json.dumps({"facts": plan.facts, "fits": plan.fits}, default=str) if a.json else "\n".join(plan.lines()))


def _report(a) -> None:
    from omnipatch.eval.report import report

    res = report(a.run, labels=a.labels, data=a.data, out=a.out, seed=a.seed, test_data=a.test_data)
    print(res["summary"])
    print(f"report: {res['path']}")


def _read_labels(path: str) -> dict[str, str]:
    from omnipatch.eval.report import read_label_file

    return read_label_file(path)[0]


def _labelled(emb_path: str, labels: dict[str, str]):
    import numpy as np

    from omnipatch.api import read_embeddings

    ids, x = read_embeddings(emb_path)
    keep = [i for i, id_ in enumerate(ids) if id_ in labels]
    if not keep:
        raise OmnipatchError(f"{emb_path}: no embedding id appears in the labels file")
    return x[keep], np.array([labels[ids[i]] for i in keep])


def _eval(a) -> None:
    from omnipatch.config import check_range
    from omnipatch.eval import cross_val_accuracy, knn_accuracy, linear_accuracy
    from omnipatch.plots import save_embedding_map

    check_range("--k", a.k, "int", 1)

    labels = _read_labels(a.labels)
    x, y = _labelled(a.embeddings, labels)
    if a.test_embeddings:
        tx, ty = _labelled(a.test_embeddings, labels)
        acc = (knn_accuracy(x, y, tx, ty, a.k) if a.method == "knn" else linear_accuracy(x, y, tx, ty))
        how = f"train {len(y)} / test {len(ty)}"
    else:
        acc = cross_val_accuracy(x, y, a.method)
        how = f"stratified cross-validation (up to 5 folds) over {len(y)}"
    plot = Path(a.plot) if a.plot else Path(a.embeddings).with_suffix(".map.png")
    save_embedding_map(x, y, plot, title=f"{Path(a.embeddings).name} ({a.method} acc {acc:.3f})")
    result = {"method": a.method, "accuracy": acc, "protocol": how, "map": str(plot)}
    print(json.dumps(result) if a.json else f"{a.method} accuracy {acc:.4f} ({how}); map: {plot}")


def _list(a) -> None:
    from omnipatch.encoder import PRESETS
    from omnipatch.masking import MASKS
    from omnipatch.modality import ADAPTERS, MODALITIES
    from omnipatch.objectives import OBJECTIVES

    for title, reg in (("modalities", MODALITIES), ("adapters", ADAPTERS), ("objectives", OBJECTIVES),
                       ("masks", MASKS), ("presets", PRESETS)):
        print(f"{title}:")
        for name, desc in reg.describe().items():
            print(f"  {name:<14} {desc}")


def _demo(a) -> None:
    from omnipatch.cli.demo import run_demo

    run_demo(a.out, steps=a.steps, quiet=a.quiet)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="omnipatch", description="Self-supervised pretraining for scientific data of any modality.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("pretrain", help="pretrain an encoder on your files")
    s.add_argument("config", nargs="?", help="YAML config (sections data/model/objectives/train)")
    s.add_argument("--modality")
    s.add_argument("--data", help="folder, glob or manifest CSV/Parquet")
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument("--objective", help="e.g. mae, contrastive, mae+contrastive:0.5")
    s.add_argument("--preset")
    s.add_argument("--steps", type=int)
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--budget", help="wall-clock budget (90s, 10m, 1.5h): steps are sized to it on this machine")
    s.add_argument("--on-bad-sample", choices=["raise", "skip"])
    add_data_flags(s, with_set=False)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key")
    s.add_argument("--labels", help="CSV id,label: end with the 'did pretraining help?' report (report.md); "
                                    "a manifest's label column does the same")
    s.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out (default: refuse "
                                                             "a non-empty --out)")
    add_init_args(s)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_pretrain)

    s = sub.add_parser("embed", help="embed files with a pretrained encoder")
    s.add_argument("--checkpoint", required=True, help="run directory")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="embeddings file; its suffix picks the format: .parquet (id, "
                   "embedding) for every modality, and the modality's own (climate .nc/.zarr, volume .nii.gz, "
                   "image .npy/.tif, ...)")
    s.add_argument("--level", choices=["sample", "patch"], default="sample",
                   help="one vector per sample (pooled), or one per token with its coordinates")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--on-bad-sample", choices=["raise", "skip"], default="raise")
    s.add_argument("--random-init", action="store_true", help="same architecture, untrained (baseline)")
    s.add_argument("--modality", help="paired runs: which modality --data holds (default: the first)")
    add_data_flags(s)
    s.set_defaults(func=_embed)

    s = sub.add_parser("inspect", help="scan a data source: what it holds and the defaults it fits")
    s.add_argument("data", help="folder, glob, manifest or file(s)")
    s.add_argument("--modality", required=True)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--out", help="write the plan as JSON")
    s.add_argument("--json", action="store_true")
    add_data_flags(s)
    s.add_argument("--option", action="append", metavar="KEY=VALUE", help="a data option")
    s.set_defaults(func=_inspect)

    s = sub.add_parser("report", help="did pretraining help? pretrained vs random init vs raw features")
    s.add_argument("run", help="run directory")
    s.add_argument("--labels", help="CSV with id,label (default: the data's own labels)")
    s.add_argument("--data", help="data source (default: the run's)")
    s.add_argument("--test-data", help="a held-out source of its own (default: a split of --data)")
    s.add_argument("--out", help="report folder (default: the run directory)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_report)

    s = sub.add_parser("eval", help="kNN or linear probe on embeddings")
    s.add_argument("method", choices=["knn", "linear"])
    s.add_argument("--embeddings", required=True)
    s.add_argument("--labels", required=True, help="CSV with id,label")
    s.add_argument("--test-embeddings")
    s.add_argument("--k", type=int, default=20)
    s.add_argument("--plot", help="where to write the 2-D embedding map (PNG)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_eval)

    s = sub.add_parser("list", help="registered modalities, adapters, objectives, masks, presets")
    s.set_defaults(func=_list)

    for module in COMMAND_MODULES:  # finetune, export, retrieve ...: each adds its own subcommands
        importlib.import_module(module).add_commands(sub)

    s = sub.add_parser("demo", help="pretrain on bundled handwritten digits and compare with a random encoder")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except OmnipatchError as e:
        print(f"omnipatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("omnipatch: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the disk, not the program: full, read-only, a file where a folder goes
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                           errno.EISDIR, errno.EEXIST):
            raise
        what = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e.strerror
        print(f"omnipatch: error: {e.filename or ''}{': ' if e.filename else ''}{what}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
