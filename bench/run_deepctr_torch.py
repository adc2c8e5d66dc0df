"""Worker: train and time DeepCTR-Torch's DIN on an arrays file (its own virtualenv).

Run by compare_deepctr_torch.py with the venv's python as
    python bench/run_deepctr_torch.py ARRAYS.npz SPEC.json OUT.npz
Imports torch, deepctr_torch and worker_harness only (dinrec is not installed in that venv).
DeepCTR-Torch's DIN reads history lengths from a length column, so hist_len is passed.
"""

from __future__ import annotations

import torch
import worker_harness as harness
from deepctr_torch.callbacks import Callback
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
from deepctr_torch.models import DIN


class EpochTimer(harness.EpochClock, Callback):  # type: ignore[misc]
    """Epoch times through DeepCTR-Torch's callback hooks."""


def main() -> None:
    args = harness.worker_parser().parse_args()
    spec, cfg = harness.load_job(args.spec)

    columns, history = harness.spec_columns(
        spec, cfg["embedding_dim"], SparseFeat, VarLenSparseFeat, length_name="hist_len")
    model = DIN(
        columns, history,
        dnn_hidden_units=cfg["dnn_hidden_units"], dnn_activation=cfg["dnn_activation"],
        att_hidden_size=cfg["att_hidden_size"], att_activation="Dice", seed=cfg["seed"],
        device="cpu",
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=cfg["lr"]), "binary_crossentropy")

    names = [*(c.name for c in columns), "hist_len"]
    train = harness.split_arrays(args.arrays, "train")
    test = harness.split_arrays(args.arrays, "test")
    timer = EpochTimer()
    # verbose=0: no tqdm and no per-batch sklearn metrics inside the timed loop.
    history_ = model.fit({n: train[n] for n in names}, train["label"],
                         batch_size=cfg["batch_size"], epochs=cfg["epochs"], verbose=0,
                         callbacks=[timer])
    n_train = int(train["label"].shape[0])
    infer = harness.time_inference(
        lambda rows: model.predict(rows, batch_size=cfg["infer_batch"]), train, names)
    scores = model.predict({n: test[n] for n in names}, batch_size=cfg["infer_batch"])
    harness.write_result(args.out, "deepctr-torch", scores, timer, n_train, infer,
                         list(history_.history.get("loss", [])))


if __name__ == "__main__":
    main()
