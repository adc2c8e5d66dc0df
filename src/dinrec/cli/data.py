"""`dinrec data`: build a dataset directory from a raw log, download a dataset, show one.

    dinrec data build --source movielens --path DIR --protocol rating --out DIR
    dinrec data download movielens-100k [--cache-dir DIR]
    dinrec data info DATASET_DIR

Each sub-command calls library code (dinrec.data.build, dinrec.data.download,
dinrec.data.dataset); this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
from typing import Any

from dinrec.cli.main import UsageError
from dinrec.data.build import SOURCES, build_dataset, route_options
from dinrec.data.dataset import load_dataset
from dinrec.data.download import DATASETS, download_dataset
from dinrec.data.protocols import PROTOCOLS


def register(subparsers: Any) -> None:
    """Add `data` and its build / download / info sub-commands."""
    parser = subparsers.add_parser(
        "data", help="build, download and inspect datasets",
        description="Build a dataset directory from a raw log, download a public dataset, "
                    "or show a dataset's counts.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    _register_build(actions)
    _register_download(actions)
    _register_info(actions)
    parser.set_defaults(func=_missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return run


def _register_build(actions: Any) -> None:
    p = actions.add_parser(
        "build", help="raw log -> train/test Parquet, vocab.json, dataset.json",
        description="Read a behavior log, build samples with a protocol, fit vocabularies on "
                    "the training period and write a dataset directory.",
    )
    p.add_argument("--source", required=True, metavar="SOURCE",
                   help=f"log source: {', '.join(SOURCES)}")
    p.add_argument("--path", help="the log file or directory (not used by synthetic)")
    p.add_argument("--protocol", required=True, metavar="PROTOCOL",
                   help=f"sample protocol: {', '.join(PROTOCOLS)}")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--behaviors", metavar="PATH",
                   help="click-log: behavior log for histories (same source as --path)")
    p.add_argument("--maxlen", type=int, default=50, help="history length (default 50)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the synthetic log and of next-item negatives (default 0)")
    p.add_argument("--min-count", type=int, default=1,
                   help="training count an id needs to get its own id (default 1)")
    p.add_argument("--hash-buckets", action="append", default=[], metavar="FEATURE=N",
                   help="hash FEATURE into N buckets instead of a vocabulary (repeatable)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--test-fraction", type=float,
                       help="each user's last fraction of samples to test (default 0.2)")
    split.add_argument("--cutoff", type=int, metavar="TS",
                       help="samples at or after this unix timestamp go to test")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip and count malformed rows instead of stopping at the first")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a reader or protocol option, e.g. threshold=3.5 or "
                        "columns='{\"user\": \"uid\"}'; VALUE is JSON, else a string; "
                        "prefix reader. or protocol. to disambiguate (repeatable)")
    p.add_argument("--history-group", action="append", default=[], metavar="NAME=TYPE[,TYPE]",
                   help="a history group from the behavior types, e.g. buy=buy,cart: columns "
                        "NAME_hist_item_id / _cate_id / _len, attended by its own unit "
                        "(repeatable; needs behavior types, e.g. --source taobao)")
    p.add_argument("--sample-behaviors", metavar="TYPE[,TYPE]",
                   help="build the protocol's samples and hist_* from these behavior types "
                        "only, e.g. pv (the groups still see every type)")
    p.add_argument("--history-time-gap", action="store_true",
                   help="also write each history's *_hist_time_gap: log1p(hours before the "
                        "sample) per behavior")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_build)


def _register_download(actions: Any) -> None:
    p = actions.add_parser(
        "download", help="download and verify a public dataset",
        description=f"Download (once) and verify a dataset: {', '.join(DATASETS)}. Prints "
                    "the folder to pass to `dinrec data build --path`.",
    )
    p.add_argument("name", metavar="DATASET", help=", ".join(DATASETS))
    p.add_argument("--cache-dir", help="where datasets live (default $DINREC_CACHE or "
                                       "~/.cache/dinrec)")
    # A mirror, and what the tests point at a local server; not advertised.
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_download)


def _register_info(actions: Any) -> None:
    p = actions.add_parser("info", help="print a dataset directory's dataset.json counts")
    p.add_argument("dataset", metavar="DATASET", help="a dataset directory")
    p.set_defaults(func=run_info)


def parse_key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """["k=v", ...] -> {k: v}; v parsed as JSON (numbers, true, lists, objects) else a str."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"{flag} {key!r} is given twice")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def parse_history_groups(pairs: list[str]) -> dict[str, list[str]]:
    """["buy=buy,cart", ...] -> {"buy": ["buy", "cart"]}; malformed or repeated names raise."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        types = [t.strip() for t in text.split(",")]
        if not sep or not name or not all(types):
            raise UsageError(f"--history-group {pair!r}: expected NAME=TYPE[,TYPE...], "
                             "e.g. buy=buy,cart")
        if name in out:
            raise UsageError(f"--history-group {name!r} is given twice")
        out[name] = types
    return out


def run_build(args: argparse.Namespace) -> int:
    """`dinrec data build`: build the dataset and print its summary."""
    if args.path is None and args.source != "synthetic":
        raise UsageError(f"--path is required for source {args.source!r}")
    reader_options, protocol_options = route_options(
        args.source, args.protocol, parse_key_values(args.option, "--option"))
    buckets = parse_key_values(args.hash_buckets, "--hash-buckets")
    for feature, n in buckets.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"--hash-buckets {feature}={n!r}: N must be a positive integer")
    split: dict[str, Any] | None = None
    if args.test_fraction is not None:
        split = {"test_fraction": args.test_fraction}
    elif args.cutoff is not None:
        split = {"cutoff": args.cutoff}
    try:
        summary = build_dataset(
            args.source, args.path, args.protocol, args.out, behaviors_path=args.behaviors,
            maxlen=args.maxlen, seed=args.seed, min_count=args.min_count,
            hash_buckets=buckets or None, split=split, reader_options=reader_options,
            protocol_options=protocol_options,
            on_error="skip" if args.skip_bad_rows else "raise", overwrite=args.overwrite,
            progress=not args.no_progress,
            history_groups=parse_history_groups(args.history_group) or None,
            sample_behaviors=None if args.sample_behaviors is None
            else [t.strip() for t in args.sample_behaviors.split(",")],
            history_time_gap=args.history_time_gap,
        )
    except (FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        raise UsageError(str(err)) from err
    print(summary.format())
    return 0


def run_download(args: argparse.Namespace) -> int:
    """`dinrec data download`: fetch and verify, then print the folder."""
    try:
        folder = download_dataset(args.name, args.cache_dir, base_url=args.base_url,
                                  progress=not args.no_progress)
    except urllib.error.HTTPError as err:
        raise UsageError(f"download of {args.name} failed: {err}") from err
    except urllib.error.URLError as err:
        raise UsageError(f"download of {args.name} failed: {err.reason}") from err
    except (TimeoutError, ConnectionError) as err:
        raise UsageError(f"download of {args.name} failed: {err}") from err
    print(folder)
    return 0


def run_info(args: argparse.Namespace) -> int:
    """`dinrec data info`: what dataset.json says, one line per fact."""
    meta = load_dataset(args.dataset).meta
    print(f"dataset:          {args.dataset}")
    print(f"source:           {meta.source}")
    print(f"protocol:         {meta.protocol} "
          f"{json.dumps(meta.options, sort_keys=True, separators=(',', ':'))}")
    print(f"maxlen:           {meta.maxlen}")
    if meta.history_groups:
        groups = ", ".join(f"{g} ({'+'.join(t)})" for g, t in meta.history_groups.items())
        print(f"history groups:   {groups}")
    if meta.sample_behaviors is not None or meta.history_time_gap:
        print(f"sample behaviors: {'+'.join(meta.sample_behaviors or ['all'])}; time gap "
              f"{'yes' if meta.history_time_gap else 'no'}")
    sizes = ", ".join(f"{name} {size}" for name, size in meta.vocabulary_sizes.items())
    print(f"vocabulary sizes: {sizes}")
    total = 0
    for split, counts in meta.counts.items():
        n, pos = int(counts["samples"]), int(counts["positives"])
        total += n
        rate = pos / n if n else 0.0
        print(f"{split + ':':<17} {n} samples, {pos} positive ({rate:.4f}), "
              f"{counts['users']} users, {counts['items']} items, "
              f"mean history length {float(counts['mean_hist_len']):.2f}")
    print(f"total:            {total} samples")
    return 0
