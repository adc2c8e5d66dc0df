"""Diagnostic: what DIN's Dice sees at initialisation, for two embedding init stds.

On one training batch of the local-activation log (quality_data.py), for DIN with
init_std = 1e-4 (DeepCTR's) and 0.05 (dinrec's default), prints per channel of the activation
unit's first layer (pre-activation s over the batch's valid behaviors, [N, H]), as medians
over channels:

- |E[s]| / std(s): how far the batch mean (where Dice puts its soft step) sits from zero in
  units of the step's width. Dice is f = s * (alpha + (1 - alpha) * p), p = sigmoid of the
  normalised s; with a large ratio the step is taken at s = E[s] != 0, where f jumps by
  about (1 - alpha) * E[s] over a width of std(s): near-discontinuous.
- gate gradient / slope: mean |s * p'(u) / sqrt(Var + eps)|, the part of df/ds that comes
  from the gate moving, against ReLU's slope of 1.
- k*q share: the share of var(s) that comes from the k * q input (the similarity between
  behavior and candidate, what attention has to find); the rest is k, q and the bias.

Run:
    python bench/dice_gate.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_data import build_log_arrays


def main() -> None:
    from dinrec.feature_column import SparseFeat, VarLenSparseFeat
    from dinrec.inputs import prepare_inputs
    from dinrec.layers.packing import pack
    from dinrec.models import DIN

    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "local.npz"
        spec = build_log_arrays("local", arrays)
        with np.load(arrays) as data:
            batch = {k[len("train_"):]: data[k][:256] for k in data.files
                     if k.startswith("train_")}
    columns: list = [SparseFeat(n, v, embedding_dim=16) for n, v in spec["sparse"].items()]
    for name, (table, vocab) in spec["history"].items():
        columns.append(VarLenSparseFeat(SparseFeat(name, vocab, embedding_dim=16,
                                                   embedding_name=table), maxlen=spec["maxlen"]))
    history = [table for table, _ in spec["history"].values()]
    print("init_std  |E[s]|/std(s)  gate gradient / slope  k*q share of var(s)")
    for init_std in (1e-4, 0.05):
        model = DIN(columns, history, att_hidden_size=(64, 16), dnn_hidden_units=(256, 128),
                    dnn_activation="relu", init_std=init_std, seed=1)
        inputs = prepare_inputs(model.schema, {c.name: batch[c.name] for c in columns})
        with torch.no_grad():
            packed = pack(model.history_mask(inputs))
            keys = model.packed_keys(inputs, packed)  # [N, E]
            query = model.query(inputs)[packed.rows]  # [N, E]
            assert model.attention is not None
            unit = model.attention.unit
            wk, wq, wd, wp = unit.first.weight.split(unit.dim, dim=1)  # each [H, E]
            kq_part = (keys * query) @ wp.t()  # [N, H]
            s = keys @ (wk + wd).t() + query @ (wq - wd).t() + kq_part + unit.first.bias
            mean, std = s.mean(0), s.std(0, unbiased=False)
            u = (s - mean) / torch.sqrt(std**2 + 1e-8)
            p = torch.sigmoid(u)
            gate = (s * p * (1 - p) / torch.sqrt(std**2 + 1e-8)).abs().mean(0)
            share = kq_part.var(0) / s.var(0).clamp_min(1e-30)
        print(f"{init_std:<9g} {float((mean.abs() / std).median()):>13.1f}  "
              f"{float(gate.median()):>21.1f}  {float(share.median()):>19.2e}")


if __name__ == "__main__":
    main()
