"""Worker: train and time dinrec's DIN on an arrays file (see ml100k_data.run_worker).

Run by throughput.py / compare_deepctr_torch.py as
    python bench/run_dinrec.py ARRAYS.npz SPEC.json OUT.npz [--compile] [--bf16] ...
Speed options map onto DIN / compile arguments so each can be measured on its own.
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

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.models import DIN
from dinrec.training.callbacks import Callback

INFER_ROWS = 40_960  # 10 batches of 4096: enough to time, short enough for the slow side


class EpochTimer(Callback):
    """Wall time of each epoch (the Trainer's whole epoch loop, metrics included)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = self._cpu = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
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
    parser.add_argument("--options", default="{}", help="JSON dict of extra DIN kwargs")
    parser.add_argument("--compile-options", default="{}", help="JSON dict for compile()")
    parser.add_argument("--compile-dense", action="store_true",
                        help="model.compile_dense(): torch.compile the activation unit")
    parser.add_argument("--bf16", action="store_true",
                        help="model.attention_bf16(): bf16 GEMMs in the activation unit")
    args = parser.parse_args()
    job = json.loads(Path(args.spec).read_text())
    spec, cfg = job["spec"], job["config"]
    torch.set_num_threads(cfg["threads"])
    torch.set_num_interop_threads(1)

    dim = cfg["embedding_dim"]
    columns: list[Any] = [SparseFeat(n, v, embedding_dim=dim) for n, v in spec["sparse"].items()]
    for name, (table, vocab) in spec["history"].items():
        inner = SparseFeat(name, vocab, embedding_dim=dim, embedding_name=table)
        columns.append(VarLenSparseFeat(inner, maxlen=spec["maxlen"]))
    history = [table for table, _ in spec["history"].values()]
    model = DIN(
        columns, history,
        dnn_hidden_units=cfg["dnn_hidden_units"], dnn_activation=cfg["dnn_activation"],
        att_hidden_size=cfg["att_hidden_size"], att_activation=cfg["att_activation"],
        seed=cfg["seed"], **json.loads(args.options),
    )
    if args.compile_dense:
        model.compile_dense()
    if args.bf16 and not model.attention_bf16():
        print("attention_bf16: no native bf16 on this CPU, kept fp32")
    model.compile("adam", "binary_crossentropy", metrics=["auc", "gauc"], lr=cfg["lr"],
                  gauc_group="user_key", **json.loads(args.compile_options))

    names = [c.name for c in columns]
    train, test = split(args.arrays, "train"), split(args.arrays, "test")
    x = {n: train[n] for n in [*names, "user_key"]}
    timer = EpochTimer()
    history_ = model.fit(x, train["label"], batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                         verbose=0, callbacks=[timer])
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
        "framework": "dinrec",
        "epoch_seconds": timer.seconds,
        "epoch_samples_per_s": [n_train / s for s in timer.seconds],
        "epoch_samples_per_cpu_s": [n_train / s for s in timer.cpu_seconds],
        "infer_samples_per_s": infer,
        "infer_samples_per_cpu_s": infer_cpu,
        "peak_rss_mib": peak_rss_mib(),
        "loss": history_.history.get("loss", []),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    np.savez(args.out, scores=scores.reshape(-1), result=np.array(json.dumps(result)))


if __name__ == "__main__":
    main()
