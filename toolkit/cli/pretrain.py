"""``omnipatch pretrain``: flags and YAML into a :class:`~omnipatch.config.Config`, then
:func:`omnipatch.train.pretrain.pretrain`."""

from __future__ import annotations

from pathlib import Path

from omnipatch.cli.dataflags import add_data_flags
from omnipatch.errors import OmnipatchError


def add_init_args(s) -> None:
    """``--init SOURCE`` / ``--init-pos`` / ``--init-strict`` (pretrain and finetune)."""
    s.add_argument("--init", metavar="SOURCE", help="start from a checkpoint: an omnipatch run directory, "
                   "timm:NAME=FILE.safetensors, or a Hugging Face save_pretrained folder (ViT, ViTMAE, DINOv2, VideoMAE)")
    s.add_argument("--init-pos", choices=["auto", "learned", "sincos"], default="auto",
                   help="positions: the checkpoint's learned table (resampled) or sin-cos; auto: the table when it fits")
    s.add_argument("--init-strict", action="store_true", help="fail when trunk tensors are missing from --init")


def run(a) -> None:
    from omnipatch.cli.dataflags import data_options
    from omnipatch.config import Config, apply_keys, load_yaml_dict, parse_duration, parse_objectives, set_key
    from omnipatch.modality import MODALITIES
    from omnipatch.runspec import modality_list
    from omnipatch.train.pretrain import pretrain

    given = load_yaml_dict(a.config) if a.config else {}
    modality = a.modality or (given.get("data") or {}).get("modality") or MODALITIES.default()
    cfg = Config()
    names = modality_list(str(modality))
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
    from omnipatch.runspec import RunSpec, modality_list

    saved = RunSpec.from_dir(a.out)
    given = {"--data": (a.data, cfg.data.source, saved.source),
             "--modality": (a.modality, cfg.data.modality, ",".join(saved.modalities)),
             "--batch-size": (a.batch_size, cfg.train.batch_size, saved.train.batch_size),
             "--objective": (a.objective, cfg.objectives, saved.objectives)}
    for flag, (raw, now, was) in given.items():
        if raw is None:
            continue
        same = (str(Path(now).resolve()) == str(Path(was).resolve())) if flag == "--data" else now == was
        if flag == "--modality":
            same = modality_list(now) == modality_list(was)
        if flag == "--objective" and not same:
            same = {k: v.get("weight") for k, v in now.items()} == {k: v.get("weight") for k, v in was.items()}
        if not same:
            raise OmnipatchError(f"--resume continues the run in {a.out} exactly: {flag} {raw} differs from the "
                                 f"run's {was!r}; drop {flag}, or start a new run (--init {a.out} to continue "
                                 f"from its weights)")


def add_parser(sub) -> None:
    """Add ``omnipatch pretrain`` to the CLI's subparsers."""
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
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key")
    s.add_argument("--labels", help="CSV id,label: end with the 'did pretraining help?' report (report.md); "
                                    "a manifest's label column does the same")
    s.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out (default: refuse "
                                                             "a non-empty --out)")
    add_init_args(s)
    s.add_argument("--quiet", action="store_true")
    add_data_flags(s, with_set=False)  # last: a flag a modality declares never shadows the command's own
    s.set_defaults(func=run)
