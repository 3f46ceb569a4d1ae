"""``omnipatch list``: the registered modalities (with their options), adapters, objectives,
masks and presets; ``omnipatch list MODALITY``: one modality's full option table."""

from __future__ import annotations

import json


def run(a) -> None:
    from omnipatch.encoder import PRESETS
    from omnipatch.masking import MASKS
    from omnipatch.modality import ADAPTERS, MODALITIES
    from omnipatch.objectives import OBJECTIVES

    if a.modality:
        spec = MODALITIES.get(a.modality)
        print(f"{spec.name}: {spec.description}")
        print("\n".join(_option_lines(spec, full=True)))
        return
    for title, reg in (("modalities", MODALITIES), ("adapters", ADAPTERS), ("objectives", OBJECTIVES),
                       ("masks", MASKS), ("presets", PRESETS)):
        print(f"{title}:")
        for name, desc in reg.describe().items():
            print(f"  {name:<14} {desc}")
            if reg is MODALITIES:
                print("\n".join(_option_lines(MODALITIES.get(name), full=False)))


def _option_lines(spec, full: bool) -> list[str]:
    """A modality's options, one line each: name = default and the reason for it; ``full``
    adds the group (data / adapter), the type, the flag and what the option is."""
    from omnipatch.cli.dataflags import flag_table

    rows = spec.option_table()
    if not full:
        return [f"      {o.name:<20} {json.dumps(o.default):<18} {o.reason}".rstrip() for o in rows]
    flags = flag_table()
    out = [f"  {'option':<22} {'group':<8} {'type':<24} {'default':<22} reason"]
    for o in rows:
        flag = f" [flag --{o.name.replace('_', '-')}]" if any(s.modality == spec.name for s in flags.get(o.name, ())) \
            else ""
        what = f"{o.what}. " if o.what else ""
        out.append(f"  {o.name:<22} {o.group:<8} {o.type:<24} {json.dumps(o.default):<22} {what}{o.reason}{flag}")
    out.append(f"  (set with --set data.options.NAME=VALUE{'; ' if spec.model_options else ''}"
               + (f"baked into a trained model: {', '.join(spec.model_options)}" if spec.model_options else "") + ")")
    return out


def add_parser(sub) -> None:
    """Add ``omnipatch list`` to the CLI's subparsers."""
    s = sub.add_parser("list", help="registered modalities (with their options), adapters, objectives, masks, "
                                    "presets")
    s.add_argument("modality", nargs="?", help="one modality's full option table")
    s.set_defaults(func=run)
