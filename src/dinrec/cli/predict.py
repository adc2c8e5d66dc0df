"""`dinrec predict BUNDLE --data DATASET --out scores.parquet`: score every sample.

    dinrec predict runs/r1/model --data runs/r1/data --out scores.parquet

Writes user_key, raw user / item / category ids, timestamp, label and score per sample,
scoring in batches. Library code: dinrec.experiment.scoring.predict_to_parquet.
"""

from __future__ import annotations

import argparse
from typing import Any

from dinrec.cli.data_check import add_strict_flag, mismatch_warnings_printed, on_mismatch


def register(subparsers: Any) -> None:
    """Add the `predict` sub-command."""
    p = subparsers.add_parser(
        "predict", help="score a dataset with a model bundle into a Parquet file",
        description="Score every sample of a dataset split in batches and write raw ids, "
                    "label and click probability per sample to a Parquet file.",
    )
    p.add_argument("bundle", help="model bundle directory (e.g. RUN_DIR/model)")
    p.add_argument("--data", required=True, metavar="DATASET", help="dataset directory")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which split to score (default test)")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default 4096)")
    add_strict_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dinrec.experiment.scoring import predict_to_parquet

    with mismatch_warnings_printed("predict"):
        rows = predict_to_parquet(args.bundle, args.data, args.out, args.split,
                                  args.batch_size, on_mismatch(args))
    print(f"wrote {rows} scores to {args.out}")
    return 0
