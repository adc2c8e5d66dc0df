"""Benchmark: dense vs sparse embedding gradients as the vocabulary grows, 1 thread.

Trains the paper's DIN (Dice, MBA regularization, Adam) on synthetic batches shaped like
ml100k's config (embedding 16, attention (64, 16), MLP (256, 128), batch 256, maxlen 50),
with item / user vocabularies of 10k, 100k and 1M rows. Dense: every table gets a dense
[V, E] gradient and Adam updates all V rows each step. Sparse (`sparse_embeddings=True`):
the gradients hold the batch's rows only and LazyAdam updates just those. Reports the
median step time of each, side by side in one process. Not part of the tests.

    python bench/sparse_embeddings.py [--vocab 10000 100000 1000000] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.models import DIN

BATCH, MAXLEN, DIM, N_CATES = 256, 50, 16, 1_000


def build(vocab: int, sparse: bool) -> DIN:
    cols = [SparseFeat("user_id", vocab, DIM), SparseFeat("item_id", vocab, DIM),
            SparseFeat("cate_id", N_CATES, DIM),
            VarLenSparseFeat(SparseFeat("hist_item_id", vocab, DIM, embedding_name="item_id"),
                             MAXLEN),
            VarLenSparseFeat(SparseFeat("hist_cate_id", N_CATES, DIM, embedding_name="cate_id"),
                             MAXLEN)]
    model = DIN(cols, ["item_id", "cate_id"], dnn_hidden_units=(256, 128),
                att_hidden_size=(64, 16), embedding_regularization="mba",
                sparse_embeddings=sparse, seed=1024)
    model.compile("adam", "binary_crossentropy", lr=1e-3)
    return model


def batches(vocab: int, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lengths = rng.integers(1, MAXLEN + 1, BATCH)
        pad = np.arange(MAXLEN)[None, :] >= lengths[:, None]  # [B, T]
        items = rng.zipf(1.2, (BATCH, MAXLEN + 1)) % (vocab - 2) + 2  # skewed, like real logs
        out.append({"user_id": rng.integers(2, vocab, BATCH), "item_id": items[:, 0],
                    "cate_id": items[:, 0] % (N_CATES - 2) + 2,
                    "hist_item_id": np.where(pad, 0, items[:, 1:]),
                    "hist_cate_id": np.where(pad, 0, items[:, 1:] % (N_CATES - 2) + 2)})
    return out


def step_times(vocab: int, sparse: bool, steps: int, warmup: int = 5) -> list[float]:
    model = build(vocab, sparse)
    trainer = model.trainer
    data = batches(vocab, steps + warmup, seed=0)
    feats = [prepare_inputs(model.schema, x) for x in data]
    labels = prepare_labels(np.tile([0.0, 1.0], BATCH // 2), BATCH)
    frequencies = {name: torch.ones(spec.num_embeddings)
                   for name, spec in model.schema.tables.items()}
    from dinrec.training.regularization import Regularizer

    trainer.regularizer = Regularizer(model, frequencies)
    model.train()
    times = []
    for i, f in enumerate(feats):
        start = time.perf_counter()
        trainer.train_step(f, labels)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"DIN, batch {BATCH}, maxlen {MAXLEN}, embedding {DIM}, MBA + Adam, 1 thread; "
          "median ms per training step")
    print(f"{'vocab':>10s} {'dense ms':>9s} {'sparse ms':>9s} {'speed-up':>8s}")
    for vocab in args.vocab:
        dense = statistics.median(step_times(vocab, False, args.steps)) * 1e3
        sparse = statistics.median(step_times(vocab, True, args.steps)) * 1e3
        print(f"{vocab:10,d} {dense:9.1f} {sparse:9.1f} {dense / sparse:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
