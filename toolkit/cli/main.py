"""The ``omnipatch`` command. Thin: parse, build a config, call the library.

One module per subcommand (``omnipatch.cli.<command>``: ``add_parser(subparsers)`` and
``run(args)``); the library modules hold no argparse code. User mistakes print one line
``omnipatch: error: ...`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from omnipatch.cli import demo, embed, export, finetune, inspect, pretrain, report, retrieve
from omnipatch.cli import eval as eval_
from omnipatch.cli import list as list_
from omnipatch.errors import OmnipatchError

#: the subcommands, in the order ``omnipatch --help`` lists them
COMMANDS = (pretrain, embed, inspect, report, eval_, list_, retrieve, finetune, export, demo)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        raise OmnipatchError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="omnipatch", description="Self-supervised pretraining for scientific data of any modality.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except OmnipatchError as e:
        print(f"omnipatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("omnipatch: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the disk, not the program: full, read-only, a file where a folder goes
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                           errno.EISDIR, errno.EEXIST):
            raise
        what = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e.strerror
        print(f"omnipatch: error: {e.filename or ''}{': ' if e.filename else ''}{what}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
