"""One set of data flags for every command that reads data (``pretrain``, ``embed``,
``finetune``, ``retrieve``), and the check of those flags against a trained run.

``--variables`` / ``--levels`` (climate), ``--id-column`` / ``--label-column`` (tables),
``--option KEY=VALUE`` and ``--set data.options.KEY=VALUE`` all become data options. A
command that reads data for a trained model accepts the same flags as ``pretrain`` did; an
option the model was built from (``ModalitySpec.model_options``: variables, columns, channels,
patch size ...) must then equal the run's, any other one (a time range, a crop) may change.
"""

from __future__ import annotations

from omnipatch.config import _parse_scalar as _value  # JSON when it parses, else the text
from omnipatch.errors import OmnipatchError

#: flag -> (option key, parser)
FLAGS = {
    "variables": ("variables", lambda v: [x.strip() for x in v.split(",") if x.strip()]),
    "levels": ("levels", lambda v: [float(x) for x in v.split(",") if x.strip()]),
    "id_column": ("id_column", str),
    "label_column": ("label_column", str),
}


def add_data_flags(parser, with_set: bool = True) -> None:
    """The data flags of ``pretrain`` on another command's parser."""
    parser.add_argument("--variables", help="climate: comma-separated variable names")
    parser.add_argument("--levels", help="climate: comma-separated level values (e.g. 500,850)")
    parser.add_argument("--id-column", help="tabular: the id column (not a feature)")
    parser.add_argument("--label-column", help="tabular: the label column (not a feature)")
    if with_set:
        parser.add_argument("--set", action="append", metavar="data.options.KEY=VALUE",
                            help="a data option, as pretrain's --set (only data.options.* keys here)")


def data_options(a, sets_only_data: bool = True) -> dict:
    """The data options given on the command line ``a`` (argparse namespace)."""
    out = {}
    for flag, (key, parse) in FLAGS.items():
        v = getattr(a, flag, None)
        if v is not None:
            try:
                out[key] = parse(v)
            except ValueError:
                raise OmnipatchError(f"--{flag.replace('_', '-')}: cannot parse {v!r}") from None
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


