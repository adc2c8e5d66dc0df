"""Worker: train dinrec's DIN (or Base Model) on a quality arrays file, scoring every epoch.

Run by bench/quality.py as
    python bench/quality_run_dinrec.py ARRAYS.npz JOB.json OUT.npz
JOB.json: {"spec": ..., "config": ..., "train": "fit"|"train", "eval": "val"|"test",
"model": "DIN"|"EmbeddingMLP", "options": {DIN kwargs}, "compile": {compile kwargs},
"fit": {fit kwargs}}.
OUT.npz: `scores` [epochs, n_eval] (probabilities after each epoch) and `result` (JSON).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import torch
import worker_harness as harness

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.activation import Dice
from dinrec.models import DIN, EmbeddingMLP
from dinrec.training.callbacks import Callback


class EpochScores(Callback):
    """Scores the eval rows after every epoch (predict runs in eval mode, then restores)."""

    def __init__(self, model: Any, x: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.model, self.x = model, x
        self.scores: list[np.ndarray] = []
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.scores.append(self.model.predict(self.x, batch_size=4096).reshape(-1))


def batch_stats_scores(model: Any, x: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """Scores with every Dice normalising by the statistics of its own eval batch (as in
    training) instead of the moving averages: the gap between the two is the cost of the
    moving averages at inference."""
    dice = [m for m in model.modules() if isinstance(m, Dice)]
    for m in dice:
        def batch_moving(v: torch.Tensor, m: Dice = m) -> torch.Tensor:
            flat = v.reshape(-1, v.shape[-1])
            var, mean = torch.var_mean(flat, dim=0, unbiased=False)
            return m._with_stats(v, mean, torch.rsqrt(var + m.eps))
        m._moving = batch_moving  # type: ignore[method-assign]
    try:
        return model.predict(x, batch_size=batch_size).reshape(-1)
    finally:
        for m in dice:
            del m._moving


def main() -> None:
    arrays, job_path, out = sys.argv[1:4]
    job = harness.read_job(job_path)
    spec, cfg = job["spec"], job["config"]
    columns, history = harness.spec_columns(
        spec, cfg["embedding_dim"], SparseFeat, VarLenSparseFeat)
    kwargs = dict(dnn_hidden_units=cfg["dnn_hidden_units"], dnn_activation=cfg["dnn_activation"],
                  seed=cfg["seed"])
    if job["model"] == "DIN":
        kwargs.update(att_hidden_size=cfg["att_hidden_size"], att_activation=cfg["att_activation"])
        model: Any = DIN(columns, history, **{**kwargs, **job["options"]})
    else:
        model = EmbeddingMLP(columns, history, **{**kwargs, **job["options"]})
    model.compile("adam", "binary_crossentropy", lr=cfg["lr"], **job.get("compile", {}))
    names = [c.name for c in columns]
    train = harness.split_arrays(arrays, job["train"])
    evaluate = harness.split_arrays(arrays, job["eval"])
    scorer = EpochScores(model, {n: evaluate[n] for n in names})
    history_ = model.fit({n: train[n] for n in names}, train["label"],
                         batch_size=cfg["batch_size"], epochs=cfg["epochs"], verbose=0,
                         callbacks=[scorer], **job.get("fit", {}))
    result = {"epoch_seconds": scorer.seconds, "loss": history_.history.get("loss", []),
              "rows": int(train["label"].shape[0])}
    scores = np.stack(scorer.scores)  # [epochs, n_eval]
    if job.get("batch_stats") and any(isinstance(m, Dice) for m in model.modules()):
        extra = batch_stats_scores(model, scorer.x, cfg["batch_size"])
        scores = np.concatenate([scores, extra[None]])  # one more row: batch statistics
        result["batch_stats_row"] = True
    np.savez(out, scores=scores, result=np.array(json.dumps(result)))


if __name__ == "__main__":
    main()
