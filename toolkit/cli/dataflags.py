"""One set of data flags for every command that reads data (``pretrain``, ``embed``,
``inspect``, ``finetune``, ``retrieve``), and the check of those flags against a trained run.

The per-modality flags come from the registered modalities' typed options: every field of a
``DataOptions`` / ``AdapterOptions`` dataclass marked ``flag`` (:func:`omnipatch.options.option`)
is a flag ``--NAME`` (climate's ``--variables`` / ``--levels``, the tables' ``--id-column`` /
``--label-column``, a plugin's own), its help naming the modality, its text parsed by the
field's type (``"a,b"`` for a list, numbers for numbers). With ``--option KEY=VALUE`` and
``--set data.options.KEY=VALUE`` they all become data options. A command that reads data for
a trained model accepts the same flags as ``pretrain`` did; an option the model was built from
(``ModalitySpec.model_options``: variables, columns, channels, patch size ...) must then equal
the run's, any other one (a time range, a crop) may change.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnipatch.config import _parse_scalar as _value  # JSON when it parses, else the text
from omnipatch.errors import OmnipatchError


@dataclass(frozen=True)
class FlagSource:
    """A modality option that is a flag: the modality, its options class and the field."""

    modality: str
    cls: type
    name: str
    what: str


def flag_table() -> dict[str, list[FlagSource]]:
    """Option name -> the registered modalities that declare it as a flag (name order)."""
    from omnipatch.modality import MODALITIES
    from omnipatch.options import describe

    table: dict[str, list[FlagSource]] = {}
    for m in sorted(MODALITIES):
        spec = MODALITIES.get(m)
        for cls in (spec.data_options, spec.adapter_options):
            for info in describe(cls):
                if info.flag:
                    table.setdefault(info.name, []).append(FlagSource(m, cls, info.name, info.what or info.reason))
    return table


def add_data_flags(parser, with_set: bool = True) -> None:
    """The data flags of ``pretrain`` on another command's parser: one ``--NAME`` per flag
    option of the registered modalities (a name the command already has is left to
    ``--option`` / ``--set``)."""
    taken = set(getattr(parser, "_option_string_actions", {}))
    for name, sources in flag_table().items():
        flag = "--" + name.replace("_", "-")
        if flag in taken:
            continue
        parser.add_argument(flag, dest=f"opt_{name}", metavar=name.upper(),
                            help="; ".join(f"{s.modality}: {s.what}" for s in sources))
    if with_set:
        parser.add_argument("--set", action="append", metavar="data.options.KEY=VALUE",
                            help="a data option, as pretrain's --set (only data.options.* keys here)")


def data_options(a, sets_only_data: bool = True) -> dict:
    """The data options given on the command line ``a`` (argparse namespace)."""
    from omnipatch.options import field_type, parse_text

    out = {}
    for name, sources in flag_table().items():
        v = getattr(a, f"opt_{name}", None)
        if v is not None:  # parsed by the field's type (the first modality declaring it, by name)
            src = sources[0]
            out[name] = parse_text(field_type(src.cls, name), v, f"--{name.replace('_', '-')}")
    for kv in getattr(a, "option", None) or []:
        k, eq, v = kv.partition("=")
        if not eq or not k.strip():
            raise OmnipatchError(f"--option expects key=value, got {kv!r}")
        out[k.strip()] = _value(v.strip())
    if sets_only_data:
        for kv in getattr(a, "set", None) or []:
            k, eq, v = kv.partition("=")
            k = k.strip()
            if not eq or not k.startswith("data.options.") or k.count(".") != 2:
                raise OmnipatchError(f"--set here takes data.options.KEY=VALUE (the model comes from the "
                                     f"checkpoint), got {kv!r}")
            out[k.removeprefix("data.options.")] = _value(v.strip())
    return out


