"""What every benchmark worker (run_dinrec.py, run_deepctr_torch.py, run_deepctr_tf.py) does
around its model.

Reading the job, timing epochs and inference, measuring peak RSS and writing the result file
are the same for every framework, so they live here and the workers only build, fit and
predict. run_deepctr_torch.py and run_deepctr_tf.py run in their own virtualenvs without
dinrec, and the TensorFlow one without torch, so this module imports only the standard library
and numpy at module level; torch is imported where the torch workers' defaults need it (thread
pinning in load_job, the version fields in write_result). The workers are run as scripts, which
puts bench/ on sys.path: they import this module as `worker_harness`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

INFER_ROWS = 40_960  # 10 batches of 4096: enough to time, short enough for the slow side
INFER_REPEATS = 3


def worker_parser() -> argparse.ArgumentParser:
    """The arguments ml100k_data.run_worker passes every worker: ARRAYS SPEC_JSON OUT_NPZ."""
    parser = argparse.ArgumentParser()
    parser.add_argument("arrays")
    parser.add_argument("spec")
    parser.add_argument("out")
    return parser


def pin_torch_threads(threads: int) -> None:
    """torch on `threads` intra-op threads and one inter-op thread (load_job's default)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def torch_versions() -> dict[str, Any]:
    """The framework fields of a torch worker's result (write_result's default)."""
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads()}


def load_job(
    spec_path: str, pin_threads: Callable[[int], None] = pin_torch_threads
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, config) of the job file, with the framework pinned to the config's thread count.

    Threads are set here, before any model is built, so every framework is timed on the
    same number of intra-op threads and one inter-op thread. `pin_threads` does it for
    the worker's framework (torch by default).
    """
    job = read_job(spec_path, pin_threads)
    return job["spec"], job["config"]


def read_job(
    path: str, pin_threads: Callable[[int], None] = pin_torch_threads
) -> dict[str, Any]:
    """The whole job file (the quality workers read more than spec and config), with the
    framework pinned to job["config"]["threads"] before any model is built."""
    job: dict[str, Any] = json.loads(Path(path).read_text())
    pin_threads(job["config"]["threads"])
    return job


def split_arrays(path: str, split: str) -> dict[str, np.ndarray]:
    """{column: array} of one split ("train" / "test") of an arrays file (prefix removed)."""
    with np.load(path) as data:
        head = f"{split}_"
        return {k[len(head):]: data[k] for k in data.files if k.startswith(head)}


def spec_columns(
    spec: Mapping[str, Any], dim: int, sparse_feat: Any, varlen_feat: Any,
    length_name: str | None = None,
) -> tuple[list[Any], list[str]]:
    """(feature columns, history_feature_list) of an arrays spec, built with the worker's
    framework's SparseFeat / VarLenSparseFeat (DeepCTR, DeepCTR-Torch and dinrec share the
    signature): one SparseFeat per sparse input, each history sharing its candidate's table."""
    columns: list[Any] = [sparse_feat(n, v, embedding_dim=dim) for n, v in spec["sparse"].items()]
    for name, (table, vocab) in spec["history"].items():
        inner = sparse_feat(name, vocab, embedding_dim=dim, embedding_name=table)
        columns.append(varlen_feat(inner, maxlen=spec["maxlen"], length_name=length_name))
    return columns, [table for table, _ in spec["history"].values()]


class EpochClock:
    """Wall and CPU time of each epoch (the framework's whole epoch loop, metrics included).

    A mixin, not a callback: each worker combines it with its own framework's Callback
    base (`class EpochTimer(EpochClock, Callback)`), which this module cannot import.
    """

    def __init__(self) -> None:
        super().__init__()  # DeepCTR-Torch's Callback sets model/params in its __init__
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


def time_inference(
    predict: Callable[[dict[str, np.ndarray]], object],
    train: Mapping[str, np.ndarray],
    names: list[str],
) -> tuple[list[float], list[float]]:
    """(samples/s, samples per CPU-second) of `predict` on the first INFER_ROWS training rows,
    once per repeat; the repeats let the report take a median."""
    x = {n: train[n][:INFER_ROWS] for n in names}
    rows = int(x[names[0]].shape[0])
    wall: list[float] = []
    cpu_rates: list[float] = []
    for _ in range(INFER_REPEATS):
        start, cpu = time.perf_counter(), time.process_time()
        predict(x)
        wall.append(rows / (time.perf_counter() - start))
        cpu_rates.append(rows / (time.process_time() - cpu))
    return wall, cpu_rates


def write_result(
    out: str,
    framework: str,
    scores: Any,
    timer: EpochClock,
    n_train: int,
    infer: tuple[list[float], list[float]],
    loss: list[float],
    versions: Mapping[str, Any] | None = None,
) -> None:
    """Write OUT_NPZ as ml100k_data.run_worker reads it: `scores` (test probabilities) and
    `result` (a JSON string). Peak RSS is read here, after the last predict. `versions`:
    the framework fields of the result (torch's version and thread count by default)."""
    infer_wall, infer_cpu = infer
    result = {
        "framework": framework,
        "epoch_seconds": timer.seconds,
        "epoch_samples_per_s": [n_train / s for s in timer.seconds],
        "epoch_samples_per_cpu_s": [n_train / s for s in timer.cpu_seconds],
        "infer_samples_per_s": infer_wall,
        "infer_samples_per_cpu_s": infer_cpu,
        "peak_rss_mib": peak_rss_mib(),
        "loss": loss,
        **(torch_versions() if versions is None else versions),
    }
    np.savez(out, scores=np.asarray(scores).reshape(-1), result=np.array(json.dumps(result)))
