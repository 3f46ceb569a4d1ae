"""``omnipatch report``: "did pretraining help?" (:mod:`omnipatch.eval.report`)."""

from __future__ import annotations


def run(a) -> None:
    from omnipatch.eval.report import report

    res = report(a.run, labels=a.labels, data=a.data, out=a.out, seed=a.seed, test_data=a.test_data)
    print(res["summary"])
    print(f"report: {res['path']}")


def add_parser(sub) -> None:
    """Add ``omnipatch report`` to the CLI's subparsers."""
    s = sub.add_parser("report", help="did pretraining help? pretrained vs random init vs raw features")
    s.add_argument("run", help="run directory")
    s.add_argument("--labels", help="CSV with id,label (default: the data's own labels)")
    s.add_argument("--data", help="data source (default: the run's)")
    s.add_argument("--test-data", help="a held-out source of its own (default: a split of --data)")
    s.add_argument("--out", help="report folder (default: the run directory)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run)
