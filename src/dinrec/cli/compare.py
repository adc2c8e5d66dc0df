"""`dinrec compare RUN_DIR ...`: a markdown table of finished runs with RelaImpr.

    dinrec compare runs/demo-*/base runs/demo-*/din [--baseline "Base Model"]

A directory that holds runs (such as a demo directory) stands for the runs inside it.
Library code: dinrec.experiment.report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dinrec.cli.main import UsageError


def register(subparsers: Any) -> None:
    """Add the `compare` sub-command."""
    p = subparsers.add_parser(
        "compare", help="markdown table of runs: AUC, GAUC, logloss, RelaImpr",
        description="Read each run's results.json and print a markdown table with RelaImpr "
                    "against the baseline (default: the first Base Model run, else the "
                    "first run).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (or a directory of runs, e.g. a demo)")
    p.add_argument("--baseline", help="name or directory name of the baseline run")
    p.set_defaults(func=run)


def run_dirs(paths: list[str]) -> list[Path]:
    """Each path if it is a run, else the runs directly inside it (sorted)."""
    from dinrec.experiment.runner import RESULTS_FILE

    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise UsageError(f"{path} is not a directory")
        if (path / RESULTS_FILE).is_file():
            found.append(path)
            continue
        inner = sorted(p.parent for p in path.glob(f"*/{RESULTS_FILE}"))
        if not inner:
            raise UsageError(f"{path} holds no finished run ({RESULTS_FILE} missing)")
        found.extend(inner)
    return found


def run(args: argparse.Namespace) -> int:
    from dinrec.experiment.report import find_baseline, markdown_table
    from dinrec.experiment.runner import read_result

    results = [read_result(d) for d in run_dirs(args.runs)]
    try:
        baseline = find_baseline(results, args.baseline)
    except ValueError as err:
        raise UsageError(f"--{err}") from None  # "--baseline NAME matches no run ..."
    print(markdown_table(results, baseline))
    return 0
