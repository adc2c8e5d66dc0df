"""The `dinrec` command: one sub-command per module in dinrec.cli, each calling library code.

A sub-command module defines `register(subparsers)` which adds its parser and sets
`func=run`, where `run(args) -> int` returns the exit code. Expected failures (bad config,
missing file, bad value) raise UsageError, ValueError or OSError and are printed
as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dinrec.errors import OutputExistsError

# Sub-command modules, in help order; each is imported lazily so `dinrec --help` is fast
# and a missing optional extra (e.g. serving) only breaks its own command.
COMMANDS: tuple[str, ...] = (
    "demo",
    "train",
    "evaluate",
    "predict",
    "explain",
    "compare",
    "data",
    "serve",
    "store",
    "export",
)


# Both ways the extra gets installed: from a checkout (the README's editable install, run in
# the repository root) and from a package index.
SERVE_EXTRA_HINT = ("install the extra: python3 -m pip install -c constraints.txt -e '.[serve]' "
                    "in a checkout, or pip install 'dinrec[serve]'")


class UsageError(Exception):
    """A user mistake worth one clear line (exit code 2), not a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dinrec",
        description="Deep Interest Network: data, training, evaluation and serving.",
    )
    from dinrec.version import __version__

    parser.add_argument("--version", action="version", version=f"dinrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"dinrec.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("dinrec.cli."):
                continue  # the sub-command is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if "WORLD_SIZE" in os.environ:  # a cheap test first: the import below loads torch
        from dinrec.training.distributed.launch import exit_process, launched_by_torchrun

        if launched_by_torchrun():
            # A torchrun worker ends with os._exit: a normal exit can SIGABRT in gloo's
            # threads (see exit_process), and torchrun takes an aborted rank for a failed one.
            exit_process(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OutputExistsError as err:
        print(f"dinrec {args.command}: error: {err.for_cli()}", file=sys.stderr)
        return 2
    except (UsageError, ValueError, OSError) as err:
        print(f"dinrec {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None)  # set by a command that can continue
        print(f"dinrec {args.command}: interrupted" + (f"; {hint}" if hint else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
