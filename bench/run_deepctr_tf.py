"""Worker: train and time DeepCTR's TensorFlow DIN on an arrays file (its own virtualenv).

Run by compare_deepctr_torch.py --with-tf with the venv's python as
    python bench/run_deepctr_tf.py ARRAYS.npz SPEC.json OUT.npz
Imports tensorflow, deepctr and worker_harness only (neither dinrec nor torch is installed in
that venv). deepctr 0.9.4 is written against Keras 2 (`tensorflow.keras`), which TensorFlow
>= 2.16 only gives through the tf-keras package and TF_USE_LEGACY_KERAS=1; it is set here,
before tensorflow is imported, as well as in the environment compare_deepctr_torch.py passes.
Embeddings are shared the DeepCTR way, by embedding_name (hist_item_id -> item_id's table);
history padding (id 0) is masked by the shared table's mask_zero, and hist_len is passed as
the VarLenSparseFeat's length_name input as in DeepCTR's DIN example. Everything not in the
config is DeepCTR's DIN default (l2_reg_embedding 1e-6, RandomNormal(0, 1e-4) embeddings).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, like the torch workers

from importlib.metadata import PackageNotFoundError, version

import deepctr
import numpy as np
import tensorflow as tf
import worker_harness as harness
from deepctr.feature_column import SparseFeat, VarLenSparseFeat
from deepctr.models import DIN

HIST_LEN = "hist_len"


class EpochTimer(harness.EpochClock, tf.keras.callbacks.Callback):
    """Epoch times through Keras's callback hooks."""


def pin_tf_threads(threads: int) -> None:
    """TensorFlow on `threads` intra-op threads and one inter-op thread (before any op runs)."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def inputs(split: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The model's input columns as int32 (DeepCTR's Input dtype), converted before fit."""
    return {n: split[n].astype(np.int32, copy=False) for n in names}


def keras_version() -> str:
    """The Keras that tf.keras is: tf-keras (Keras 2) under TF_USE_LEGACY_KERAS=1."""
    for dist in ("tf-keras", "keras"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


def main() -> None:
    args = harness.worker_parser().parse_args()
    spec, cfg = harness.load_job(args.spec, pin_threads=pin_tf_threads)
    tf.keras.utils.set_random_seed(cfg["seed"])

    train = harness.split_arrays(args.arrays, "train")
    test = harness.split_arrays(args.arrays, "test")
    length = HIST_LEN if HIST_LEN in train else None
    columns, history = harness.spec_columns(
        spec, cfg["embedding_dim"], SparseFeat, VarLenSparseFeat, length_name=length)
    model = DIN(
        columns, history,
        dnn_hidden_units=tuple(cfg["dnn_hidden_units"]), dnn_activation=cfg["dnn_activation"],
        att_hidden_size=tuple(cfg["att_hidden_size"]), att_activation=cfg["att_activation"],
        seed=cfg["seed"],
    )
    model.compile(tf.keras.optimizers.Adam(learning_rate=cfg["lr"]), "binary_crossentropy")

    names = [c.name for c in columns] + ([length] if length else [])
    x_train, x_test = inputs(train, names), inputs(test, names)
    timer = EpochTimer()
    history_ = model.fit(x_train, train["label"], batch_size=cfg["batch_size"],
                         epochs=cfg["epochs"], verbose=0, callbacks=[timer])
    n_train = int(train["label"].shape[0])
    infer = harness.time_inference(
        lambda rows: model.predict(rows, batch_size=cfg["infer_batch"], verbose=0),
        x_train, names)
    scores = model.predict(x_test, batch_size=cfg["infer_batch"], verbose=0)
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras_version(),
        "deepctr": deepctr.__version__,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    harness.write_result(args.out, "deepctr-tf", scores, timer, n_train, infer,
                         [float(v) for v in history_.history.get("loss", [])], versions)


if __name__ == "__main__":
    main()
