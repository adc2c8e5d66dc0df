"""`dinrec evaluate BUNDLE --data DATASET`: AUC, GAUC and logloss of a model on a dataset.

    dinrec evaluate runs/r1/model --data runs/r1/data [--split test] [--json]

Library code: dinrec.experiment.scoring.evaluate_bundle.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dinrec.cli.data_check import add_strict_flag, mismatch_warnings_printed, on_mismatch


def register(subparsers: Any) -> None:
    """Add the `evaluate` sub-command."""
    p = subparsers.add_parser(
        "evaluate", help="AUC, GAUC and logloss of a model bundle on a dataset",
        description="Score a dataset split with a model bundle (in batches) and print AUC, "
                    "GAUC (grouped by user) and logloss.",
    )
    p.add_argument("bundle", help="model bundle directory (e.g. RUN_DIR/model)")
    p.add_argument("--data", required=True, metavar="DATASET", help="dataset directory")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which split to score (default test)")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default 4096)")
    add_strict_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dinrec.experiment.scoring import evaluate_bundle

    with mismatch_warnings_printed("evaluate"):
        metrics = evaluate_bundle(args.bundle, args.data, args.split, args.batch_size,
                                  on_mismatch(args))
    if args.json:
        print(json.dumps(metrics))
        return 0
    print(f"{args.split} samples: {int(metrics['samples'])}")
    print(f"AUC      {metrics['auc']:.4f}")
    print(f"GAUC     {metrics['gauc']:.4f}")
    print(f"logloss  {metrics['logloss']:.4f}")
    return 0
