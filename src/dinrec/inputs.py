"""Turn user inputs (dicts of numpy/pandas/lists) into checked dicts of tensors.

Every check runs before any training step, and every error names the feature at fault.
Ids stay int64 end to end: never one float matrix (float32 is exact only below 2^24).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dinrec.feature_column import (
    DenseFeat,
    SparseFeat,
    VarLenDenseFeat,
    VarLenSparseFeat,
    get_feature_names,
)
from dinrec.schema import FeatureSchema

Batch = dict[str, torch.Tensor]


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    to_numpy = getattr(value, "to_numpy", None)  # pandas Series / DataFrame
    if callable(to_numpy):
        value = np.array(to_numpy())  # pandas may hand back a read-only view
    try:
        arr = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            f"feature {name!r}: cannot make an array ({err}); pad sequences to maxlen with 0"
        ) from None
    nested = arr.dtype == object and arr.ndim == 1 and len(arr) > 0
    if nested and isinstance(arr[0], (list, np.ndarray)):
        try:
            arr = np.stack([np.asarray(v) for v in arr])
        except ValueError:
            raise ValueError(
                f"feature {name!r}: rows have different lengths; pad sequences to maxlen with 0"
            ) from None
    return arr


def _ids(arr: np.ndarray, schema: FeatureSchema, col: SparseFeat | VarLenSparseFeat) -> np.ndarray:
    """A column's ids as int64, checked against the rows of the table it reads (shared
    tables have the largest vocabulary of their columns); use_hash columns hash into them."""
    name = col.name
    if col.use_hash:
        return schema.hash_ids(col, arr)
    if arr.dtype.kind in "iu":
        ids = arr.astype(np.int64, copy=False)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise ValueError(f"feature {name!r}: ids must be integers, got non-integral floats")
        if arr.size and np.abs(arr).max() >= 2**53:
            raise ValueError(f"feature {name!r}: ids above 2^53 cannot come as floats")
        ids = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        ids = arr.astype(np.int64)
    else:
        raise ValueError(
            f"feature {name!r}: ids must be integers, got dtype {arr.dtype}; encode raw ids "
            "with a Vocabulary or set use_hash=True"
        )
    rows = schema.rows(col)
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= rows:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"feature {name!r}: id {bad} is outside its table {col.table!r} [0, {rows})"
            )
    return ids


def _one_column(arr: np.ndarray, n: int, name: str, width: int) -> np.ndarray:
    """Reshape to [n] when width == 1 else [n, width]; accepts [n, 1] for width 1."""
    if arr.ndim == 0:
        raise ValueError(f"feature {name!r}: expected {n} rows, got a scalar")
    if arr.shape[0] != n:
        raise ValueError(f"feature {name!r}: has {arr.shape[0]} rows, expected {n}")
    if width == 1:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"feature {name!r}: expected shape ({n},), got {arr.shape}")
    elif arr.shape[1:] != (width,):
        raise ValueError(f"feature {name!r}: expected shape ({n}, {width}), got {arr.shape}")
    return arr


def _dense(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind not in "iufb":
        raise ValueError(f"feature {name!r}: dense values must be numbers, got {arr.dtype}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"feature {name!r}: contains NaN or inf")
    return out


def num_rows(x: Mapping[str, Any]) -> int:
    """Row count of an input dict (its first value's length)."""
    for value in x.values():
        return len(_as_array(value, "?"))
    raise ValueError("empty input dict")


def as_input_dict(schema: FeatureSchema, x: Any) -> Any:
    """A list or tuple of arrays (Keras' multi-input form, DeepCTR's `model_input`) becomes a
    dict by get_feature_names order; anything else is returned as it is."""
    if not isinstance(x, (list, tuple)):
        return x
    names = get_feature_names(schema.columns)
    if len(x) != len(names):
        raise ValueError(
            f"x is a list of {len(x)} arrays but the model takes {len(names)} inputs, in "
            f"get_feature_names order: {names}; or pass a dict name -> array"
        )
    return dict(zip(names, x, strict=True))


def prepare_inputs(schema: FeatureSchema, x: Mapping[str, Any]) -> Batch:
    """Check and convert `x` into tensors keyed by input name.

    Shapes: SparseFeat [N] int64; VarLenSparseFeat [N, T] int64 (its length input [N] int64,
    weight input [N, T] float32); DenseFeat [N] or [N, D] float32. Extra keys are ignored.
    """
    if not isinstance(x, Mapping):
        raise ValueError(
            "x must be a dict mapping feature names to arrays (see get_feature_names); "
            f"got {type(x).__name__}"
        )
    n: int | None = None
    out: Batch = {}

    def fetch(name: str, kind: str) -> np.ndarray:
        nonlocal n
        if name not in x:
            raise ValueError(
                f"missing input {name!r} ({kind}); inputs given: {sorted(map(str, x))}"
            )
        arr = _as_array(x[name], name)
        if arr.ndim == 0:
            raise ValueError(f"feature {name!r}: expected an array of rows, got a scalar")
        if n is None:
            n = int(arr.shape[0])
        elif arr.shape[0] != n:
            raise ValueError(f"feature {name!r}: has {arr.shape[0]} rows, other inputs have {n}")
        return arr

    for col in schema.columns:
        if isinstance(col, SparseFeat):
            arr = fetch(col.name, "SparseFeat")
            arr = _one_column(arr, len(arr), col.name, 1)
            out[col.name] = torch.from_numpy(np.ascontiguousarray(_ids(arr, schema, col)))
        elif isinstance(col, VarLenSparseFeat):
            arr = fetch(col.name, "VarLenSparseFeat")
            arr = _one_column(arr, len(arr), col.name, col.maxlen)
            ids = _ids(arr, schema, col)
            out[col.name] = torch.from_numpy(np.ascontiguousarray(ids))
            if col.length_name is not None and col.length_name not in out:
                lens = fetch(col.length_name, f"length of {col.name!r}")
                lens = _one_column(lens, len(lens), col.length_name, 1)
                if lens.dtype.kind not in "iu":
                    raise ValueError(f"feature {col.length_name!r}: lengths must be integers")
                if lens.size and (lens.min() < 0 or lens.max() > col.maxlen):
                    raise ValueError(
                        f"feature {col.length_name!r}: lengths must lie in [0, {col.maxlen}]"
                    )
                out[col.length_name] = torch.from_numpy(lens.astype(np.int64))
            if col.weight_name is not None:
                w = fetch(col.weight_name, f"weights of {col.name!r}")
                if w.ndim == 3 and w.shape[2] == 1:
                    w = w[:, :, 0]
                w = _one_column(w, len(w), col.weight_name, col.maxlen)
                out[col.weight_name] = torch.from_numpy(_dense(w, col.weight_name))
        elif isinstance(col, DenseFeat):
            arr = fetch(col.name, "DenseFeat")
            arr = _one_column(arr, len(arr), col.name, col.dimension)
            out[col.name] = torch.from_numpy(np.ascontiguousarray(_dense(arr, col.name)))
        elif isinstance(col, VarLenDenseFeat):
            arr = _per_behavior(fetch(col.name, "VarLenDenseFeat"), col)
            out[col.name] = torch.from_numpy(np.ascontiguousarray(_dense(arr, col.name)))
    return out


def _per_behavior(arr: np.ndarray, col: VarLenDenseFeat) -> np.ndarray:
    """A VarLenDenseFeat's values as [n, T] (dimension 1; [n, T, 1] accepted) or [n, T, D]."""
    if col.dimension == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want = (col.maxlen,) if col.dimension == 1 else (col.maxlen, col.dimension)
    if arr.shape[1:] != want:
        raise ValueError(f"feature {col.name!r}: expected shape {(len(arr), *want)}, "
                         f"got {arr.shape}")
    return arr


def prepare_labels(y: Any, n: int) -> torch.Tensor:
    """Labels as float32 [N]; each must be 0 or 1 and there must be one per input row."""
    arr = _as_array(y, "label")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape ({n},) or ({n}, 1), got {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"labels have {len(arr)} rows but the inputs have {n}")
    if arr.dtype.kind not in "iufb":
        raise ValueError(f"labels must be numbers 0/1, got dtype {arr.dtype}")
    y32 = arr.astype(np.float32)
    bad = ~((y32 == 0) | (y32 == 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be 0 or 1; row {i} has {arr[i].item()!r}")
    return torch.from_numpy(y32)


def prepare_group(values: Any, n: int, name: str) -> torch.Tensor:
    """A GAUC grouping column as int64 [N] (raw strings are factorised)."""
    arr = _as_array(values, name)
    if arr.shape[:1] != (n,) or arr.ndim != 1:
        raise ValueError(f"group column {name!r}: expected shape ({n},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        _, arr = np.unique(arr.astype(str), return_inverse=True)
    return torch.from_numpy(arr.astype(np.int64))
