"""``omnipatch finetune``: flags into a :class:`~omnipatch.finetune.FinetuneConfig`, then
:func:`omnipatch.finetune.finetune` (``--init SOURCE``: a public checkpoint fitted to the data first)."""

from __future__ import annotations

import json
from pathlib import Path

from omnipatch.cli.pretrain import add_init_args
from omnipatch.errors import OmnipatchError
from omnipatch.finetune.run import MODES, TASKS, FinetuneConfig, finetune


def run(a) -> None:
    cfg = FinetuneConfig(task=a.task, mode=a.mode, multi_label=a.multi_label, seed=a.seed, device=a.device,
                         match_ids=a.match_ids)
    for name in ("epochs", "batch_size", "lr", "layer_decay", "partial_blocks", "val_fraction", "patience",
                 "weight_decay", "augment_strength"):
        if getattr(a, name) is not None:
            setattr(cfg, name, getattr(a, name))
    if (a.checkpoint is None) == (a.init is None):
        raise OmnipatchError("give one of --checkpoint RUN_DIR or --init SOURCE")
    from omnipatch.cli.dataflags import data_options

    options = data_options(a)  # --option KEY=VALUE and pretrain's data flags
    run_dir = a.checkpoint
    if a.init:  # a pretrained checkpoint fitted to the data, saved as a run in FT_DIR/init
        from omnipatch.init.run import write_initialised
        from omnipatch.modality import MODALITIES

        run_dir = write_initialised(a.init, a.modality or MODALITIES.default(), a.data, Path(a.out) / "init",
                                    options=options, pos=a.init_pos, strict=a.init_strict, seed=a.seed,
                                    quiet=a.quiet or a.json)
    res = finetune(run_dir, a.data, a.out, a.labels, cfg, options=options,
                   on_bad_sample=a.on_bad_sample, random_init=a.random_init,
                   test_data=a.test_data, test_labels=a.test_labels or a.labels if a.test_data else None,
                   quiet=a.quiet or a.json)
    if a.json:
        print(json.dumps(res))
        return
    print(f"fine-tuned ({res['task']}, {res['mode']}) on {res['n_train']} samples, validated on {res['n_val']}; "
          f"best epoch {res['best_epoch']} of {res['epochs_run']} ({res['seconds']} s)")
    for split in ("train", "val", "test"):
        if split in res:
            print(f"  {split:<5} " + "  ".join(f"{k} {v:.4f}" for k, v in res[split].items()))
    print(f"checkpoint: {res['checkpoint']}\nmetrics:    {Path(a.out) / 'metrics.json'}")


def add_parser(sub) -> None:
    """Add ``omnipatch finetune`` to the CLI's subparsers."""
    s = sub.add_parser("finetune", help="fine-tune a pretrained run on labelled data")
    s.add_argument("--checkpoint", help="pretraining run directory (or --init SOURCE)")
    add_init_args(s)
    s.add_argument("--modality", help="with --init: the data's modality (default: the registry's default, image)")
    s.add_argument("--data", required=True, help="folder, glob or manifest CSV/Parquet")
    s.add_argument("--labels", help="CSV with id,label (default: the manifest's label column)")
    s.add_argument("--match-ids", choices=["exact", "name", "stem"], default="exact",
                   help="how sample ids meet label ids: exactly (default), or by file name / stem (reports the count, "
                        "refuses ambiguous names)")
    s.add_argument("--task", choices=TASKS, default="classification")
    s.add_argument("--mode", choices=MODES, default="full")
    s.add_argument("--out", required=True, help="fine-tuning directory")
    s.add_argument("--multi-label", action="store_true", help="labels are ';'-separated lists")
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--layer-decay", type=float)
    s.add_argument("--weight-decay", type=float)
    s.add_argument("--partial-blocks", type=int, help="mode partial: how many of the last blocks train")
    s.add_argument("--val-fraction", type=float)
    s.add_argument("--patience", type=int)
    s.add_argument("--augment-strength", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option (e.g. channels=4)")
    s.add_argument("--on-bad-sample", choices=["raise", "skip"], default="raise")
    s.add_argument("--test-data", help="held-out data scored with the best weights")
    s.add_argument("--test-labels", help="labels of --test-data (default: --labels)")
    s.add_argument("--random-init", action="store_true", help="same architecture, untrained (baseline)")
    s.add_argument("--json", action="store_true", help="print metrics.json only")
    s.add_argument("--quiet", action="store_true")
    from omnipatch.cli.dataflags import add_data_flags

    add_data_flags(s)  # last: a flag a modality declares never shadows the command's own
    s.set_defaults(func=run)
