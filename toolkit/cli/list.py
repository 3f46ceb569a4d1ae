"""``omnipatch list``: the registered modalities, adapters, objectives, masks and presets."""

from __future__ import annotations


def run(a) -> None:
    from omnipatch.encoder import PRESETS
    from omnipatch.masking import MASKS
    from omnipatch.modality import ADAPTERS, MODALITIES
    from omnipatch.objectives import OBJECTIVES

    for title, reg in (("modalities", MODALITIES), ("adapters", ADAPTERS), ("objectives", OBJECTIVES),
                       ("masks", MASKS), ("presets", PRESETS)):
        print(f"{title}:")
        for name, desc in reg.describe().items():
            print(f"  {name:<14} {desc}")


def add_parser(sub) -> None:
    """Add ``omnipatch list`` to the CLI's subparsers."""
    s = sub.add_parser("list", help="registered modalities, adapters, objectives, masks, presets")
    s.set_defaults(func=run)
