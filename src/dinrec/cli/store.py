"""`dinrec store`: fill or inspect a behavior store for `dinrec serve`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "store", help="fill or inspect the behavior store used by `dinrec serve`",
        description="Behavior stores hold raw ids: each user's latest behaviors and profile, "
        "and each item's category.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = actions.add_parser(
        "load", help="fill the store from a dataset directory",
        description="Write each user's latest history and profile (decoded to raw ids "
        "through the dataset's vocab.json) and every item's category.",
    )
    load.add_argument("dataset", help="dataset directory (dataset.json, train/test.parquet)")
    load.add_argument("--store", required=True,
                      help="sqlite:///relative.db, sqlite:////abs/path.db or redis://HOST:PORT/DB")
    load.add_argument("--splits", default="train,test",
                      help="comma-separated splits to read (default: %(default)s)")
    load.set_defaults(func=run)
    info = actions.add_parser("info", help="count users, behaviors and items in a store")
    info.add_argument("--store", required=True)
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dinrec.serving.stores import open_store

    store = open_store(args.store)
    try:
        if args.action == "load":
            from dinrec.serving.stores.loading import load_dataset_into_store

            splits = [s.strip() for s in args.splits.split(",") if s.strip()]
            report = load_dataset_into_store(args.dataset, store, splits=splits)
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(json.dumps(store.counts(), indent=2))
    finally:
        store.close()
    return 0
