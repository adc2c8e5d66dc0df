"""Worker: train and time DeepCTR-Torch's DIN on an arrays file (its own virtualenv).

Run by compare_deepctr_torch.py with the venv's python as
    python bench/run_deepctr_torch.py ARRAYS.npz SPEC.json OUT.npz
Imports numpy, torch and deepctr_torch only (dinrec is not installed in that venv).
DeepCTR-Torch's DIN reads history lengths from a length column, so hist_len is passed.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deepctr_torch.callbacks import Callback
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
from deepctr_torch.models import DIN

INFER_ROWS = 40_960  # same as run_dinrec.py


class EpochTimer(Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = self._cpu = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu)


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over exec from the forked parent, so a worker would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def split(path: str, name: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        head = f"{name}_"
        return {k[len(head):]: data[k] for k in data.files if k.startswith(head)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("arrays")
    parser.add_argument("spec")
    parser.add_argument("out")
    args = parser.parse_args()
    job = json.loads(Path(args.spec).read_text())
    spec, cfg = job["spec"], job["config"]
    torch.set_num_threads(cfg["threads"])
    torch.set_num_interop_threads(1)

    dim = cfg["embedding_dim"]
    columns: list[Any] = [SparseFeat(n, v, embedding_dim=dim) for n, v in spec["sparse"].items()]
    for name, (table, vocab) in spec["history"].items():
        inner = SparseFeat(name, vocab, embedding_dim=dim, embedding_name=table)
        columns.append(VarLenSparseFeat(inner, maxlen=spec["maxlen"], length_name="hist_len"))
    history = [table for table, _ in spec["history"].values()]
    model = DIN(
        columns, history,
        dnn_hidden_units=cfg["dnn_hidden_units"], dnn_activation=cfg["dnn_activation"],
        att_hidden_size=cfg["att_hidden_size"], att_activation="Dice", seed=cfg["seed"],
        device="cpu",
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=cfg["lr"]), "binary_crossentropy")

    names = [*(c.name for c in columns), "hist_len"]
    train, test = split(args.arrays, "train"), split(args.arrays, "test")
    timer = EpochTimer()
    # verbose=0: no tqdm and no per-batch sklearn metrics inside the timed loop.
    history_ = model.fit({n: train[n] for n in names}, train["label"],
                         batch_size=cfg["batch_size"], epochs=cfg["epochs"], verbose=0,
                         callbacks=[timer])
    n_train = int(train["label"].shape[0])

    x_infer = {n: train[n][:INFER_ROWS] for n in names}
    rows = int(x_infer[names[0]].shape[0])
    infer, infer_cpu = [], []
    for _ in range(3):
        start, cpu = time.perf_counter(), time.process_time()
        model.predict(x_infer, batch_size=cfg["infer_batch"])
        infer.append(rows / (time.perf_counter() - start))
        infer_cpu.append(rows / (time.process_time() - cpu))

    scores = model.predict({n: test[n] for n in names}, batch_size=cfg["infer_batch"])
    result = {
        "framework": "deepctr-torch",
        "epoch_seconds": timer.seconds,
        "epoch_samples_per_s": [n_train / s for s in timer.seconds],
        "epoch_samples_per_cpu_s": [n_train / s for s in timer.cpu_seconds],
        "infer_samples_per_s": infer,
        "infer_samples_per_cpu_s": infer_cpu,
        "peak_rss_mib": peak_rss_mib(),
        "loss": list(history_.history.get("loss", [])),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    np.savez(args.out, scores=np.asarray(scores).reshape(-1), result=np.array(json.dumps(result)))


if __name__ == "__main__":
    main()
