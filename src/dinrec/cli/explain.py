"""`dinrec explain BUNDLE --user ID --candidates ID,ID`: attention weight of each behavior.

    dinrec explain runs/r1/model --user 196 --candidates 242,302 [--data DATASET]

Prints, per past behavior of the user (raw ids), the attention weight for each candidate,
and writes the heatmap PNG (beside the bundle unless --out says where). The history comes
from DATASET (default: the dataset the bundle was trained on, recorded in its manifest).
Library code: dinrec.experiment.explain.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from dinrec.cli.main import UsageError


def register(subparsers: Any) -> None:
    """Add the `explain` sub-command."""
    p = subparsers.add_parser(
        "explain", help="attention weights of a user's behaviors for candidate items",
        description="Show which past behaviors of a user DIN attends to for each candidate "
                    "item (raw ids), and write an attention heatmap PNG.",
    )
    p.add_argument("bundle", help="model bundle directory (e.g. RUN_DIR/model)")
    p.add_argument("--user", required=True, help="raw user id")
    p.add_argument("--candidates", required=True, metavar="ID,ID",
                   help="comma-separated raw item ids")
    p.add_argument("--data", metavar="DATASET",
                   help="dataset directory with the user's history (default: the bundle's "
                        "training dataset)")
    p.add_argument("--out", help="heatmap PNG (default: attention-USER.png beside the bundle, "
                                 "i.e. in the run directory of RUN_DIR/model)")
    p.set_defaults(func=run)


def training_dataset(bundle: str) -> str:
    """The dataset directory recorded in a bundle's manifest by `dinrec train`."""
    from dinrec.bundle import read_manifest

    path = read_manifest(bundle).get("extra", {}).get("dataset")
    if not path:
        raise UsageError(f"{bundle} does not record its training dataset; pass --data")
    return str(path)


def default_heatmap_path(bundle: str, user: str) -> Path:
    """attention-USER.png beside the bundle (a run's RUN_DIR/model: in RUN_DIR), never the
    working directory; characters a file name cannot hold become '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", user) or "_"
    return Path(bundle).resolve().parent / f"attention-{safe}.png"


def run(args: argparse.Namespace) -> int:
    from dinrec.bundle import load_vocab
    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.explain import explain_user
    from dinrec.models import load_model

    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if not candidates:
        raise UsageError("--candidates needs at least one item id")
    dataset = load_dataset(args.data or training_dataset(args.bundle))
    vocab = load_vocab(args.bundle)
    if vocab is None:
        raise UsageError(f"{args.bundle} has no vocab.json; raw ids cannot be encoded")
    ex = explain_user(load_model(args.bundle), vocab, dataset, args.user, candidates)
    print(ex.format_table())
    out = Path(args.out) if args.out else default_heatmap_path(args.bundle, args.user)
    ex.save_heatmap(out, f"attention over user {args.user}'s behaviors")
    print(f"wrote {out.resolve()}")
    return 0
