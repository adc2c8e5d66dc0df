"""Shared pieces of the throughput benchmarks: the ml100k arrays, the fixed config, workers.

The arrays are built once per run with dinrec's data pipeline (reader -> protocol ->
vocabularies -> Parquet dataset -> numpy) and handed to each framework's worker process as
one .npz, so every framework trains on byte-identical inputs and each worker's peak RSS is
its own (the parent holds pyarrow and the pipeline, the workers do not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data" / "ml-100k"
PROTOCOLS = ("rating", "next-item")

# The one fixed config both frameworks run (DeepCTR-Torch's DIN defaults for the towers).
CONFIG: dict[str, Any] = {
    "embedding_dim": 16,
    "att_hidden_size": [64, 16],
    "att_activation": "dice",
    "dnn_hidden_units": [256, 128],
    "dnn_activation": "relu",
    "batch_size": 256,
    "lr": 1e-3,
    "epochs": 5,
    "infer_batch": 4096,
    "threads": 1,
    "seed": 1024,
}

# Columns of the arrays file that are not model inputs.
LABEL, USER_KEY, HIST_LEN = "label", "user_key", "hist_len"


def build_arrays(protocol: str, out: Path, data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """Write `out` (.npz) with train_*/test_* columns for one protocol; return its spec.

    spec = {"sparse": {name: vocab size}, "history": {hist name: (table name, vocab size)},
    "maxlen": T, "rows": {"train": N, "test": M}}.
    """
    from dinrec.data.dataset import feature_columns, load_dataset, to_numpy, write_dataset
    from dinrec.data.protocols import build_samples
    from dinrec.data.readers import read_log
    from dinrec.data.vocabulary import Vocabularies
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat

    log = read_log("recbole", data_dir)
    samples = build_samples(protocol, log)
    vocabs = Vocabularies.fit(samples.fit_values)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, samples, vocabs)
        ds = load_dataset(tmp)
        columns, _ = feature_columns(ds, embedding_dim=CONFIG["embedding_dim"])
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "test"):
            table = ds.read(split)
            x, y = to_numpy(table, [*(c.name for c in columns), USER_KEY, HIST_LEN])
            arrays.update({f"{split}_{k}": v for k, v in x.items()})
            arrays[f"{split}_{LABEL}"] = y
    np.savez(out, **arrays)
    sparse = {c.name: c.vocabulary_size for c in columns if isinstance(c, SparseFeat)}
    history = {
        c.name: (c.embedding_name, c.vocabulary_size)
        for c in columns
        if isinstance(c, VarLenSparseFeat)
    }
    return {
        "protocol": protocol,
        "sparse": sparse,
        "history": history,
        "maxlen": ds.meta.maxlen,
        "rows": {s: int(arrays[f"{s}_{LABEL}"].shape[0]) for s in ("train", "test")},
        "mean_hist_len": {s: ds.meta.counts[s]["mean_hist_len"] for s in ("train", "test")},
    }


def split_arrays(path: str | os.PathLike[str], split: str) -> dict[str, np.ndarray]:
    """{column: array} of one split of an arrays file (prefix removed)."""
    with np.load(path) as data:
        head = f"{split}_"
        return {k[len(head):]: data[k] for k in data.files if k.startswith(head)}


def one_thread_env() -> dict[str, str]:
    """Environment for a worker pinned to one intra-op thread (OpenMP and MKL included)."""
    env = dict(os.environ)
    threads = str(CONFIG["threads"])
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    return env


def run_worker(
    python: str,
    script: str,
    arrays: Path,
    spec: dict[str, Any],
    extra: list[str] | None = None,
    pythonpath: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a worker on an arrays file; returns its JSON result plus test scores.

    The worker is called as `python script ARRAYS SPEC_JSON OUT_NPZ [extra...]` and writes
    OUT_NPZ with `scores` (test probabilities) and `result` (a JSON string). `pythonpath`
    puts another dinrec source tree first (e.g. a `git archive` of the baseline commit).
    `env`: extra environment variables for the worker, on top of one_thread_env().
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.npz"
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps({"spec": spec, "config": CONFIG}))
        cmd = [python, str(Path(__file__).parent / script), str(arrays), str(spec_path),
               str(out), *(extra or [])]
        worker_env = one_thread_env()
        worker_env.update(env or {})
        if pythonpath is not None:
            worker_env["PYTHONPATH"] = pythonpath
        proc = subprocess.run(cmd, env=worker_env, text=True, capture_output=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise RuntimeError(f"{script} failed with exit code {proc.returncode}")
        with np.load(out) as data:
            result: dict[str, Any] = json.loads(str(data["result"]))
            result["scores"] = data["scores"]
    return result


def score(result: dict[str, Any], arrays: Path) -> dict[str, float]:
    """Test AUC and GAUC (grouped by user_key) of a worker's scores, with dinrec.metrics."""
    from dinrec.metrics import auc, gauc

    test = split_arrays(arrays, "test")
    y, groups, p = test[LABEL], test[USER_KEY], result["scores"].reshape(-1)
    return {"auc": auc(y, p), "gauc": gauc(y, p, groups)}


def median(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def summarize(result: dict[str, Any], arrays: Path) -> dict[str, float]:
    """The numbers a report row shows: median train samples/s over epochs 2.. (wall clock and
    per CPU-second, which a shared machine's load disturbs less), inference samples/s, peak
    RSS in MiB, test AUC/GAUC."""

    def after_first(rates: list[float]) -> float:
        return median(rates[1:] if len(rates) > 1 else rates)

    row = {
        "train_sps": after_first(result["epoch_samples_per_s"]),
        "train_sps_cpu": after_first(result["epoch_samples_per_cpu_s"]),
        "infer_sps": median(result["infer_samples_per_s"]),
        "infer_sps_cpu": median(result["infer_samples_per_cpu_s"]),
        "rss_mib": float(result["peak_rss_mib"]),
    }
    row.update(score(result, arrays))
    return row
