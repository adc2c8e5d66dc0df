"""Long behavior sequences: DIN over the last 50 vs the whole history, on a log whose clicks
depend only on behaviors older than the most recent 100 (dinrec.data.synthetic_long).

Through the DeepCTR-style API (DIN(...).compile('adam', ...).fit(x, y)), per seed: a log
drawn with that seed (2,400 users, 300-1,000 behaviors each, 12 impressions each); the
first 10 impressions of every user train (24,000 rows), the last 2 are the test split
(--split val: the first 9 train and the 10th is validation; the test rows are never seen).
Every variant is trained on the same rows in the same process, interleaved seed by seed, so
the cost ratios compare runs made under the same load. One intra-op thread.

Reports per variant: AUC (mean +- sd over seeds), the oracle AUC of the true click
probabilities on the same rows, training seconds (median over seeds) and the cost ratio
against the baseline variant (median of the per-seed ratios; timings on a shared machine
vary, the ratios less so), and the share of the reference variant's AUC gain over the
baseline (for pre-selection variants: how much of the full attention's gain they keep).

Run (the tables of docs/long_sequences.md):
    python bench/long_sequence.py --seeds 1 2 3 \
        --variant 'softmax-600=maxlen:600 {"att_weight_normalization": true}' \
        --variant 'topk50-600=maxlen:600 {"history_search": "topk"}' \
        --variant 'cate50-600=maxlen:600 {"history_search": "category"}'
    python bench/long_sequence.py --split val \
        --variant 'softmax=maxlen:600 {"att_weight_normalization": true}'
    python bench/long_sequence.py --step-times 10 --batch-size 256 --variant ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dinrec.data.synthetic_long import LongHistoryLog, generate_long_log, model_inputs
from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.metrics import auc
from dinrec.models import DIN

TRAIN_IMPRESSIONS = 10  # of 12 per user: 24,000 training rows at 2,400 users


@dataclass(frozen=True)
class Variant:
    """One DIN configuration: a name, the history length kept, and extra DIN keywords."""

    name: str
    maxlen: int
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    """'NAME=maxlen:T {json DIN kwargs}' (the JSON part optional)."""
    name, sep, rest = text.partition("=")
    head, _, tail = rest.strip().partition(" ")
    if not sep or not head.startswith("maxlen:"):
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME=maxlen:T [{{json DIN kwargs}}]")
    kwargs = json.loads(tail) if tail.strip() else {}
    if not isinstance(kwargs, dict):
        raise argparse.ArgumentTypeError(f"--variant {name}: DIN kwargs must be a JSON object")
    return Variant(name, int(head[len("maxlen:"):]), kwargs)


def columns(log: LongHistoryLog, maxlen: int) -> list[Any]:
    """DeepCTR columns of the log's inputs: user, candidate item / category, their histories."""
    n_items, n_cats = log.num_items + 1, log.num_categories + 1
    return [
        SparseFeat("user", log.num_users + 1, embedding_dim=8),
        SparseFeat("item_id", n_items, embedding_dim=16),
        SparseFeat("cate_id", n_cats, embedding_dim=8),
        VarLenSparseFeat(SparseFeat("hist_item_id", n_items, embedding_dim=16,
                                    embedding_name="item_id"),
                         maxlen=maxlen, length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("hist_cate_id", n_cats, embedding_dim=8,
                                    embedding_name="cate_id"),
                         maxlen=maxlen, length_name="seq_length"),
    ]


def splits(log: LongHistoryLog, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, evaluation rows) by each user's impression index."""
    idx = log.sample_index
    if split == "test":
        return np.flatnonzero(idx < TRAIN_IMPRESSIONS), np.flatnonzero(idx >= TRAIN_IMPRESSIONS)
    last = TRAIN_IMPRESSIONS - 1
    return np.flatnonzero(idx < last), np.flatnonzero(idx == last)


def attention_stats(model: Any, log: LongHistoryLog, rows: np.ndarray, maxlen: int) -> str:
    """Why attention learns or not, on up to 512 evaluation rows (eval mode):

    - |interest| / |query|: median norm of the interest vector against the candidate's
      embedding (the MLP sees both side by side);
    - signal share: median |sum of w * k over the behaviors in the candidate's category| /
      |the same over all other behaviors|, rows whose candidate is in one of the user's
      interests (the behaviors that decide the click against the rest);
    - weight contrast: mean weight on those behaviors minus mean weight on the others, in
      standard deviations of the others' weights.
    """
    from dinrec.inputs import prepare_inputs

    rows = rows[:512]
    x = model_inputs(log, rows, maxlen)
    inputs = prepare_inputs(model.schema, x)
    with torch.inference_mode():
        model.eval()
        query = model.query(inputs)  # [n, Eq]
        interest, weights = model.interest(inputs)  # [n, Eq], [n, T]
        keys = model.keys(inputs)  # [n, T, Eq]
    same = torch.from_numpy(x["hist_cate_id"] == x["cate_id"][:, None]) & (weights != 0)
    other = torch.from_numpy(x["hist_cate_id"] != x["cate_id"][:, None]) & (weights != 0)
    hit = (same.sum(1) > 0) & (other.sum(1) > 1)
    wk = weights.unsqueeze(-1) * keys  # [n, T, Eq]
    sig = (wk * same.unsqueeze(-1)).sum(1).norm(dim=1)
    rest = (wk * other.unsqueeze(-1)).sum(1).norm(dim=1)
    ratio = float((interest.norm(dim=1) / query.norm(dim=1)).median())
    share = float((sig[hit] / rest[hit].clamp_min(1e-12)).median())
    w_same = torch.where(same, weights, 0).sum(1) / same.sum(1).clamp_min(1)
    w_other = torch.where(other, weights, 0).sum(1) / other.sum(1).clamp_min(1)
    var = torch.where(other, (weights - w_other.unsqueeze(1)) ** 2, 0).sum(1) / other.sum(1)
    contrast = float(((w_same - w_other) / var.sqrt().clamp_min(1e-12))[hit].median())
    return f"|interest|/|query| {ratio:.2f}, signal share {share:.3f}, contrast {contrast:.2f}"


def run_one(log: LongHistoryLog, variant: Variant, seed: int, split: str, epochs: int,
            batch_size: int, diagnose: bool = False) -> tuple[float, float]:
    """(evaluation AUC, training seconds) of one variant on one log."""
    train, held = splits(log, split)
    cols = columns(log, variant.maxlen)
    x_train = model_inputs(log, train, variant.maxlen)
    x_held = model_inputs(log, held, variant.maxlen)
    model = DIN(cols, ["item_id", "cate_id"], seed=seed, **variant.kwargs)
    model.compile("adam", "binary_crossentropy")
    start = time.perf_counter()
    model.fit(x_train, log.label[train], batch_size=batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    probs = model.predict(x_held, batch_size=1024)[:, 0]
    if diagnose:
        print(f"  {variant.name}: {attention_stats(model, log, held, variant.maxlen)}")
    return auc(log.label[held], probs), seconds


def step_ms(log: LongHistoryLog, variant: Variant, batch_size: int, steps: int) -> float:
    """Median milliseconds of one training step (forward, backward, Adam) on one batch of
    the first training rows, after two warm-up steps: the per-step cost without the epoch's
    other work and with less of the shared machine's noise than whole runs."""
    from dinrec.inputs import prepare_inputs

    rows = splits(log, "test")[0][:batch_size]
    model = DIN(columns(log, variant.maxlen), ["item_id", "cate_id"], seed=1, **variant.kwargs)
    model.compile("adam", "binary_crossentropy")
    x = prepare_inputs(model.schema, model_inputs(log, rows, variant.maxlen))
    y = torch.from_numpy(log.label[rows]).float()
    trainer = model.trainer
    trainer.prepare_regularizer([(x, y)])
    model.train()
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        trainer.train_step(x, y)
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3)
    # 64 chosen on the validation split: full attention at 600 learns faster with more steps
    # (0.607 vs 0.546 AUC at 256; docs/long_sequences.md), the search variants are unchanged.
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--users", type=int, default=2400)
    parser.add_argument("--no-defaults", action="store_true",
                        help="run only the --variant ones (the first is the baseline)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="NAME=maxlen:T [{json DIN kwargs}]; repeatable")
    parser.add_argument("--diagnose", action="store_true",
                        help="print attention statistics of each trained model")
    parser.add_argument("--reference", default="din-600",
                        help="variant whose AUC gain over the baseline is 100%%")
    parser.add_argument("--step-times", type=int, default=0, metavar="N",
                        help="instead of training: median ms of N training steps per variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    defaults = [] if args.no_defaults else [Variant("din-50", 50), Variant("din-600", 600)]
    variants = defaults + list(args.variant)
    base = variants[0].name
    if args.step_times:
        log = generate_long_log(n_users=args.users, seed=args.seeds[0])
        ms = {v.name: step_ms(log, v, args.batch_size, args.step_times) for v in variants}
        print(f"| variant | maxlen | DIN kwargs | ms per step (batch {args.batch_size}) "
              f"| vs {base} |\n|---|---|---|---|---|")
        for v in variants:
            print(f"| {v.name} | {v.maxlen} | `{json.dumps(v.kwargs)}` | {ms[v.name]:.1f} "
                  f"| {ms[v.name] / ms[base]:.2f}x |")
        return
    aucs: dict[str, list[float]] = {v.name: [] for v in variants}
    secs: dict[str, list[float]] = {v.name: [] for v in variants}
    oracle: list[float] = []
    for seed in args.seeds:
        log = generate_long_log(n_users=args.users, seed=seed)
        oracle.append(auc(log.label[splits(log, args.split)[1]],
                          log.click_prob[splits(log, args.split)[1]]))
        for v in variants:
            a, s = run_one(log, v, seed, args.split, args.epochs, args.batch_size,
                           args.diagnose)
            aucs[v.name].append(a)
            secs[v.name].append(s)
            print(f"seed {seed} {v.name}: auc {a:.4f} train {s:.1f}s", flush=True)
    gain_ref = statistics.mean(aucs.get(args.reference, aucs[base])) - statistics.mean(aucs[base])
    print(f"\n{args.split} split, {len(args.seeds)} seeds {args.seeds}, {args.epochs} epochs, "
          f"batch {args.batch_size}, 1 thread; oracle AUC {_mean_sd(oracle)}\n")
    print(f"| variant | maxlen | DIN kwargs | AUC | train s (median) | cost vs {base} "
          f"| gain kept vs {args.reference} |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        ratio = statistics.median(s / b for s, b in zip(secs[v.name], secs[base], strict=True))
        gain = statistics.mean(aucs[v.name]) - statistics.mean(aucs[base])
        kept = f"{gain / gain_ref:.0%}" if gain_ref > 0 else "-"
        print(f"| {v.name} | {v.maxlen} | `{json.dumps(v.kwargs)}` | {_mean_sd(aucs[v.name])} "
              f"| {statistics.median(secs[v.name]):.1f} | {ratio:.2f}x | {kept} |")


if __name__ == "__main__":
    main()
