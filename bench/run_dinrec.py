"""Worker: train and time dinrec's DIN on an arrays file (see ml100k_data.run_worker).

Run by throughput.py / compare_deepctr_torch.py as
    python bench/run_dinrec.py ARRAYS.npz SPEC.json OUT.npz [--compile] [--bf16] ...
Speed options map onto DIN / compile arguments so each can be measured on its own.
"""

from __future__ import annotations

import json
import os

import worker_harness as harness

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.kernels.build import ENV_SWITCH
from dinrec.models import DIN
from dinrec.training.callbacks import Callback


class EpochTimer(harness.EpochClock, Callback):
    """Epoch times through the Trainer's callback hooks."""


def main() -> None:
    parser = harness.worker_parser()
    parser.add_argument("--options", default="{}", help="JSON dict of extra DIN kwargs")
    parser.add_argument("--compile-options", default="{}", help="JSON dict for compile()")
    parser.add_argument("--compile-dense", action="store_true",
                        help="model.compile_dense(): torch.compile the activation unit")
    parser.add_argument("--bf16", action="store_true",
                        help="model.attention_bf16(): bf16 GEMMs in the activation unit")
    parser.add_argument("--torch-ops", action="store_true",
                        help="no native kernels (DINREC_NATIVE_KERNELS=0): torch ops only")
    args = parser.parse_args()
    if args.torch_ops:  # read when the kernels are first needed, i.e. in fit
        os.environ[ENV_SWITCH] = "0"
    spec, cfg = harness.load_job(args.spec)

    columns, history = harness.spec_columns(
        spec, cfg["embedding_dim"], SparseFeat, VarLenSparseFeat)
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
    train = harness.split_arrays(args.arrays, "train")
    test = harness.split_arrays(args.arrays, "test")
    x = {n: train[n] for n in [*names, "user_key"]}
    timer = EpochTimer()
    history_ = model.fit(x, train["label"], batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                         verbose=0, callbacks=[timer])
    n_train = int(train["label"].shape[0])
    infer = harness.time_inference(
        lambda rows: model.predict(rows, batch_size=cfg["infer_batch"]), train, names)
    scores = model.predict({n: test[n] for n in names}, batch_size=cfg["infer_batch"])
    harness.write_result(args.out, "dinrec", scores, timer, n_train, infer,
                         history_.history.get("loss", []))


if __name__ == "__main__":
    main()
