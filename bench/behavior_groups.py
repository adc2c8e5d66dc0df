"""Behavior groups and per-behavior time: DIN with one pooled history vs history_groups.

Two logs, each through the DeepCTR-style API (DIN(...).compile('adam', ...).fit(x, y)),
histories built by dinrec.data.protocols.behavior_groups.behavior_histories (per group, the
user's events of its types strictly before the sample, the latest maxlen kept):

* synthetic (dinrec.data.synthetic_groups, known click probabilities): clicks depend on
  the user's buys, the more the more recent, and a little on the clicks. Per seed a log of
  2,000 users x 12 impressions; the first 10 of each user train (20,000 rows), the last 2
  test (4,000). Variants: `one` (clicks and buys in one history, maxlen 70, DeepCTR's DIN),
  `groups` (clicks 60 + a buy group 10), `groups+time` (plus log1p(hours since the
  behavior) as a VarLenDenseFeat in each unit). Reports AUC and the oracle's.
* taobao (the shared UserBehavior sample, 4,320 events of 43 users; tiny): next-item
  samples over page views (dinrec's next-item protocol: each user's next viewed item vs a
  sampled negative, the last one tested), histories of page views only (`clicks`) vs page
  views plus a buy group (`clicks+buy`), maxlen 50 each. Reports GAUC over users (2 test
  rows per user, so each user's AUC is 0 or 1: a coarse, noisy figure) and AUC.

Seeds draw the log (synthetic), the negatives (taobao) and the model. One intra-op thread.

Run (the tables of docs/long_sequences.md):
    python bench/behavior_groups.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinrec.data.protocols import build_next_item
from dinrec.data.protocols.behavior_groups import behavior_histories
from dinrec.data.readers.taobao import read_taobao
from dinrec.data.synthetic_groups import encode_codes, generate_group_log
from dinrec.data.vocabulary import Vocabularies
from dinrec.feature_column import SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.metrics import auc, gauc
from dinrec.models import DIN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_sequence import _mean_sd

TAOBAO = Path("/work/shared/data/taobao-userbehavior-sample/UserBehavior_head.csv")
TRAIN_IMPRESSIONS = 10


def history_columns(group: str, maxlen: int, sizes: dict[str, int], dims: dict[str, int],
                    time_gap: bool) -> list[Any]:
    """A group's sequences (sharing the candidate's tables), its length, its time gap."""
    prefix = f"{group}_hist_" if group else "hist_"
    cols: list[Any] = [
        VarLenSparseFeat(SparseFeat(prefix + f, sizes[f], dims[f], embedding_name=f), maxlen,
                         length_name=prefix + "len")
        for f in ("item_id", "cate_id")
    ]
    if time_gap:
        cols.append(VarLenDenseFeat(prefix + "time_gap", maxlen))
    return cols


def train_and_score(cols: list[Any], groups: dict[str, list[str]] | None, x_train: dict,
                    y_train: np.ndarray, x_test: dict, seed: int, epochs: int,
                    batch_size: int, din: dict[str, Any]) -> tuple[np.ndarray, float]:
    model = DIN(cols, ["item_id", "cate_id"], seed=seed, history_groups=groups, **din)
    model.compile("adam", "binary_crossentropy")
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return model.predict(x_test, batch_size=1024)[:, 0], seconds


SYNTHETIC_VARIANTS = {  # name -> ({group: behavior types}, {group: maxlen}, time gap)
    "one": ({"": ["click", "buy"]}, {"": 70}, False),
    "groups": ({"": ["click"], "buy": ["buy"]}, {"": 60, "buy": 10}, False),
    "groups+time": ({"": ["click"], "buy": ["buy"]}, {"": 60, "buy": 10}, True),
}


def synthetic(seed: int, epochs: int, batch_size: int,
              din: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """{variant: (test AUC, training seconds)} and "oracle" on one synthetic log."""
    log = generate_group_log(seed=seed)
    train, test = log.index < TRAIN_IMPRESSIONS, log.index >= TRAIN_IMPRESSIONS
    n_items = int(log.items.astype(int).max()) + 3
    sizes = {"item_id": n_items, "cate_id": 60 + 2}  # codes + 2 (padding 0, unknown 1)
    out = {"oracle": (auc(log.label[test], log.click_prob[test]), 0.0)}
    for name, (types, maxlen, time_gap) in SYNTHETIC_VARIANTS.items():
        hist = behavior_histories(log.users, log.timestamps, log.behaviors, types,
                                  encode=encode_codes, maxlen=maxlen)
        x = {"item_id": encode_codes("", log.items), "cate_id": encode_codes("", log.categories),
             **hist}
        dims = {"item_id": 16, "cate_id": 8}
        cols: list[Any] = [SparseFeat(f, sizes[f], dims[f]) for f in ("item_id", "cate_id")]
        for group in types:
            cols += history_columns(group, maxlen[group], sizes, dims, time_gap)
        named = {g: ["item_id", "cate_id"] for g in types if g}
        probs, seconds = train_and_score(
            cols, named or None, {k: v[train] for k, v in x.items()}, log.label[train],
            {k: v[test] for k, v in x.items()}, seed, epochs, batch_size, din)
        out[name] = (auc(log.label[test], probs), seconds)
    return out


def taobao(seed: int, epochs: int, batch_size: int,
           din: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """{variant: (test GAUC, test AUC)} on the Taobao sample."""
    events = read_taobao(TAOBAO).log
    assert events.behavior is not None
    views = events.take(events.behavior == "pv")
    samples = build_next_item(views, maxlen=50, seed=seed)
    vocabs = Vocabularies.fit(samples.fit_values)
    sizes = {f: vocabs[f].size for f in ("item_id", "cate_id")}
    out = {}
    for name, types in (("clicks", {"": ["pv"]}), ("clicks+buy", {"": ["pv"], "buy": ["buy"]})):
        parts = []
        for part in (samples.train, samples.test):
            x = {"item_id": vocabs.encode("item_id", part.item),
                 "cate_id": vocabs.encode("cate_id", part.category),
                 **behavior_histories(part.user, part.timestamp, events, types,
                                      encode=vocabs.encode, maxlen=50)}
            parts.append(x)
        cols: list[Any] = [SparseFeat("item_id", sizes["item_id"], 16),
                           SparseFeat("cate_id", sizes["cate_id"], 16)]
        for group in types:
            cols += history_columns(group, 50, sizes, {"item_id": 16, "cate_id": 16}, False)
        named = {g: ["item_id", "cate_id"] for g in types if g}
        probs, _ = train_and_score(cols, named or None, parts[0],
                                   samples.train.label.astype(np.float32), parts[1], seed,
                                   epochs, batch_size, din)
        y = samples.test.label
        out[name] = (gauc(y, probs, samples.test.user), auc(y, probs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--only", choices=("synthetic", "taobao"), default=None)
    parser.add_argument("--din", type=json.loads, default={},
                        help='extra DIN keywords for every variant, as JSON')
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only != "taobao":
        runs = [synthetic(s, args.epochs, args.batch_size, args.din) for s in args.seeds]
        print(f"synthetic typed log, seeds {args.seeds}, {args.epochs} epochs, batch "
              f"{args.batch_size}, 1 thread, DIN kwargs {json.dumps(args.din)}; 20,000 train "
              "/ 4,000 test rows")
        print("\n| variant | AUC | train s (median) |\n|---|---|---|")
        for name in ("oracle", *SYNTHETIC_VARIANTS):
            aucs = [r[name][0] for r in runs]
            secs = statistics.median(r[name][1] for r in runs)
            print(f"| {name} | {_mean_sd(aucs)} | {secs:.1f} |" if name != "oracle"
                  else f"| oracle | {_mean_sd(aucs)} | - |")
    if args.only != "synthetic":
        if not TAOBAO.exists():
            print(f"\ntaobao: {TAOBAO} is absent; skipped")
            return
        runs = [taobao(s, args.epochs, args.batch_size, args.din) for s in args.seeds]
        print(f"\nTaobao UserBehavior sample (43 users), seeds {args.seeds}, {args.epochs} "
              f"epochs, batch {args.batch_size}, DIN kwargs {json.dumps(args.din)}")
        print("\n| variant | GAUC | AUC | GAUC per seed |\n|---|---|---|---|")
        for name in ("clicks", "clicks+buy"):
            g = [r[name][0] for r in runs]
            a = [r[name][1] for r in runs]
            print(f"| {name} | {_mean_sd(g)} | {_mean_sd(a)} | "
                  f"{' '.join(f'{v:.4f}' for v in g)} |")


if __name__ == "__main__":
    main()
