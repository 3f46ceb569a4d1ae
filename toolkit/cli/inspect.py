"""``omnipatch inspect``: scan a data source, print what it holds and the defaults it fits."""

from __future__ import annotations

import json

from omnipatch.cli.dataflags import add_data_flags


def run(a) -> None:
    from omnipatch.cli.dataflags import data_options
    from omnipatch.modality import MODALITIES
    from omnipatch.train.plan import fit_batch_size, scan

    spec = MODALITIES.get(a.modality)
    opts = data_options(a)
    plan = scan(spec, a.data, opts)
    from omnipatch.train.build import open_data

    ds = open_data(spec, a.data, {**plan.options(), **opts}, "skip")
    plan.facts.setdefault("samples", len(ds))
    fit_batch_size(plan, a.batch_size or 0, len(ds))
    if a.out:
        plan.save(a.out)
    print(json.dumps({"facts": plan.facts, "fits": plan.fits}, default=str) if a.json else "\n".join(plan.lines()))


def add_parser(sub) -> None:
    """Add ``omnipatch inspect`` to the CLI's subparsers."""
    s = sub.add_parser("inspect", help="scan a data source: what it holds and the defaults it fits")
    s.add_argument("data", help="folder, glob, manifest or file(s)")
    s.add_argument("--modality", required=True)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--out", help="write the plan as JSON")
    s.add_argument("--json", action="store_true")
    s.add_argument("--option", action="append", metavar="KEY=VALUE", help="a data option")
    add_data_flags(s)
    s.set_defaults(func=run)
