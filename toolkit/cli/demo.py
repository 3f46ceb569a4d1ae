"""``omnipatch demo``: the default modality's worked example (``ModalitySpec.demo``; the bundled
set's is the image modality's: pretrain on scikit-learn's handwritten digits, then compare the
pretrained encoder with a random one and the raw pixels on a held-out split)."""

from __future__ import annotations

from omnipatch.errors import OmnipatchError


def run(a) -> None:
    from omnipatch.modality import MODALITIES

    spec = MODALITIES.get(MODALITIES.default())
    if spec.demo is None:
        raise OmnipatchError(f"the default modality {spec.name!r} has no demo (ModalitySpec.demo)")
    spec.demo(a.out, steps=a.steps, quiet=a.quiet)


def add_parser(sub) -> None:
    """Add ``omnipatch demo`` to the CLI's subparsers."""
    s = sub.add_parser("demo", help="pretrain on bundled handwritten digits and compare with a random encoder")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=run)
