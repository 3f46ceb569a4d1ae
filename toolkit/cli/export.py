"""``omnipatch export --format hf``: :func:`omnipatch.export.export_hf`."""

from __future__ import annotations

from omnipatch.errors import OmnipatchError
from omnipatch.export.model_card import DEFAULT_LICENSE
from omnipatch.export.save import FORMATS, export_hf


def run(a) -> None:
    if a.format not in FORMATS:
        raise OmnipatchError(f"unknown export format {a.format!r} (known: {', '.join(FORMATS)})")
    out = export_hf(a.checkpoint, a.out, license=a.license)
    print(f"exported {a.checkpoint} to {out} (config.json, model.safetensors, model card README.md); load with "
          f"`import omnipatch.export; omnipatch.export.register()` then transformers.AutoModel.from_pretrained")


def add_parser(sub) -> None:
    """Add ``omnipatch export`` to the CLI's subparsers."""
    s = sub.add_parser("export", help="export a run or a fine-tuned model (Hugging Face transformers)")
    s.add_argument("--checkpoint", required=True, help="pretraining run or fine-tuning directory")
    s.add_argument("--format", choices=FORMATS, default="hf", help="hf: transformers config.json + model.safetensors")
    s.add_argument("--out", required=True, help="export folder")
    s.add_argument("--license", default=DEFAULT_LICENSE,
                   help=f"licence id for the model card's front matter (default: omnipatch's, {DEFAULT_LICENSE})")
    s.set_defaults(func=run)
