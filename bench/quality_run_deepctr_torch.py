"""Worker: train DeepCTR-Torch's DIN on a quality arrays file, scoring every epoch.

Run by bench/quality.py with bench/.venv-deepctr-torch's python, same JOB.json and OUT.npz
as quality_run_dinrec.py. Imports torch, deepctr_torch and worker_harness only. DeepCTR-Torch
reads history lengths from a length column, so hist_len is passed. One fit(epochs=1) per
epoch (its optimizer lives on the model, so training continues) and a predict in between.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import worker_harness as harness
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
from deepctr_torch.models import DIN


def main() -> None:
    arrays, job_path, out = sys.argv[1:4]
    job = harness.read_job(job_path)
    spec, cfg = job["spec"], job["config"]
    columns, history = harness.spec_columns(
        spec, cfg["embedding_dim"], SparseFeat, VarLenSparseFeat, length_name="hist_len")
    model = DIN(columns, history, dnn_hidden_units=cfg["dnn_hidden_units"],
                dnn_activation=cfg["dnn_activation"], att_hidden_size=cfg["att_hidden_size"],
                att_activation="Dice", seed=cfg["seed"], device="cpu", **job["options"])
    model.compile(torch.optim.Adam(model.parameters(), lr=cfg["lr"]), "binary_crossentropy")
    names = [*(c.name for c in columns), "hist_len"]
    train = harness.split_arrays(arrays, job["train"])
    evaluate = harness.split_arrays(arrays, job["eval"])
    x_train = {n: train[n] for n in names}
    x_eval = {n: evaluate[n] for n in names}
    scores, seconds, losses = [], [], []
    for _ in range(cfg["epochs"]):
        start = time.perf_counter()
        h = model.fit(x_train, train["label"], batch_size=cfg["batch_size"], epochs=1,
                      verbose=0)
        seconds.append(time.perf_counter() - start)
        losses.extend(h.history.get("loss", []))
        scores.append(model.predict(x_eval, batch_size=4096).reshape(-1))
    result = {"epoch_seconds": seconds, "loss": losses, "rows": int(train["label"].shape[0])}
    np.savez(out, scores=np.stack(scores), result=np.array(json.dumps(result)))


if __name__ == "__main__":
    main()
