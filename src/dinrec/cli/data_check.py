"""The --strict flag of the commands that score a dataset with a bundle (evaluate, predict).

A dataset built with other protocol options than the bundle's training data scores without
error but means something else; by default the command says so on stderr, one line per
warning, and goes on; with --strict it refuses (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def add_strict_flag(parser: Any) -> None:
    parser.add_argument("--strict", action="store_true",
                        help="refuse a dataset built with another protocol, options or source "
                             "than the bundle's training data (default: warn and go on)")


def on_mismatch(args: argparse.Namespace) -> str:
    """The library's on_mismatch for the parsed flags."""
    return "error" if args.strict else "warn"


@contextmanager
def mismatch_warnings_printed(command: str) -> Iterator[None]:
    """Print each DatasetMismatchWarning raised inside as 'dinrec COMMAND: warning: ...'."""
    from dinrec.experiment.data_match import DatasetMismatchWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetMismatchWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, DatasetMismatchWarning):
                    print(f"dinrec {command}: warning: {w.message}", file=sys.stderr)
                else:  # not ours: shown as Python would have shown it
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
