"""ONNX export of the serving forward pass, and the ONNX Runtime backend that runs it.

`export_onnx(bundle)` writes, inside the bundle:

    onnx/model.onnx        the graph of BroadcastForward (user side once, broadcast)
    onnx/model.onnx.data   its weights: torch's exporter stores initializers beside the graph
    onnx/export.json       the inputs, opset and the bundle version it was exported from

The graph takes the user-side inputs with a batch of U rows, the candidate inputs with C
rows, and `row_user` [C] (the user row of each candidate). Each attended history (DeepCTR's
and every history group, with its per-behavior values such as `<prefix>time_gap`) has a
dynamic length of its own, so a short history is not padded to maxlen. OnnxBackend refuses
an export whose recorded bundle version differs from the bundle's (a stale export: other
weights, or another routing of behavior types to histories).

Loading runs no code from the bundle: ONNX Runtime reads the protobuf graph and raw weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinrec.bundle import bundle_version, swap_directory
from dinrec.feature_column import DenseFeat, SparseFeat, VarLenDenseFeat, VarLenSparseFeat
from dinrec.models import load_model
from dinrec.schema import FeatureSchema
from dinrec.serving.broadcast import PositionalForward, candidate_inputs, user_inputs
from dinrec.serving.encoding import Arrays

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
META_FILE = "export.json"
EXPORT_FORMAT = "dinrec-onnx"
ROW_USER = "row_user"
OUTPUT = "logits"


def export_onnx(bundle: str | os.PathLike[str], *, check: bool = True) -> Path:
    """Export the bundle's model to `bundle`/onnx/, replacing an older export atomically.

    Args:
        bundle: a bundle directory (dinrec.bundle layout).
        check: run the exported graph once with ONNX Runtime and compare it with torch.

    Returns:
        the onnx/ directory.
    """
    root = Path(bundle)
    version = bundle_version(root)
    model = load_model(root)
    schema = model.schema
    users, cands = user_inputs(schema), candidate_inputs(schema)
    module = PositionalForward(model, users, cands).eval()
    example, dynamic = _example_inputs(schema, users, cands)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=root))
    try:
        with warnings.catch_warnings(), _quiet_logger("torch.onnx"), _quiet_logger("onnxscript"):
            # The exporter's notes (deprecations, torchvision ops it skips, the optimizer's
            # "Skipping constant folding for op Split") are not ours.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tuple(example), str(tmp / MODEL_FILE),
                input_names=[*users, *cands, ROW_USER], output_names=[OUTPUT],
                dynamic_shapes=(tuple(dynamic),), dynamo=True, external_data=True,
                optimize=True, verbose=False,
            )
        if not (tmp / DATA_FILE).is_file():
            raise RuntimeError(f"the ONNX exporter wrote no {DATA_FILE}; files: "
                               f"{sorted(p.name for p in tmp.iterdir())}")
        meta = {
            "format": EXPORT_FORMAT, "bundle_version": version,
            "user_inputs": list(users), "candidate_inputs": list(cands),
            "row_user": ROW_USER, "output": OUTPUT, "torch_version": torch.__version__,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if check:
            _check(module, tmp, example)
        target = root / ONNX_DIR
        swap_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _example_inputs(
    schema: FeatureSchema, users: tuple[str, ...], cands: tuple[str, ...]
) -> tuple[list[torch.Tensor], list[dict[int, Any]]]:
    """Example tensors (U=2 users, C=3 candidates, T=2 per history) and their dynamic axes.

    Each attended history (history_feature_list's and every history group) has a length
    axis of its own, shared by its id sequences, their weights and its per-behavior values:
    the groups of one user are as long as the store had behaviors of their types.
    """
    from torch.export import Dim

    n_users, n_cands = 2, 3
    u_dim, c_dim = Dim("users", min=1), Dim("candidates", min=1)
    gen = torch.Generator().manual_seed(0)
    # {input of a history: (its example length T, its dynamic axis or None when maxlen 1)}
    steps: dict[str, tuple[int, Any]] = {}
    for i, group in enumerate(schema.groups):
        t = min(2, group.maxlen)
        axis = Dim(f"history{i}", min=1, max=group.maxlen) if t > 1 else None
        for name in (*(c.name for c in group.columns), *(c.name for c in group.side),
                     *(c.weight_name for c in group.columns if c.weight_name is not None)):
            steps[name] = (t, axis)
    tensors: list[torch.Tensor] = []
    dynamic: list[dict[int, Any]] = []
    columns = {c.name: c for c in schema.columns}
    lengths = {
        c.length_name: c for c in schema.columns
        if isinstance(c, VarLenSparseFeat) and c.length_name is not None
    }
    weights = {
        c.weight_name: c for c in schema.columns
        if isinstance(c, VarLenSparseFeat) and c.weight_name is not None
    }
    for name in users:
        col = columns.get(name)
        width, axis = steps.get(name, (0, None))
        axes: dict[int, Any] = {0: u_dim} if axis is None else {0: u_dim, 1: axis}
        if name in lengths:
            seq = lengths[name]
            tensors.append(torch.full((n_users,), steps.get(seq.name, (seq.maxlen,))[0],
                                      dtype=torch.int64))
            axes = {0: u_dim}
        elif name in weights:
            tensors.append(torch.rand(n_users, width or weights[name].maxlen, generator=gen))
        elif isinstance(col, (VarLenDenseFeat, DenseFeat)):
            # [U, T] / [U, T, D] per-behavior values, [U] / [U, D] dense ones
            shape = (n_users, width) if isinstance(col, VarLenDenseFeat) else (n_users,)
            tensors.append(torch.rand(
                (*shape, col.dimension) if col.dimension > 1 else shape, generator=gen))
        elif isinstance(col, VarLenSparseFeat):
            size = col.vocabulary_size
            tensors.append(torch.randint(1, max(size, 2), (n_users, width or col.maxlen),
                                         generator=gen))
        else:
            assert isinstance(col, SparseFeat)
            size = col.vocabulary_size
            tensors.append(torch.randint(0, size, (n_users,), generator=gen))
        dynamic.append(axes)
    for name in cands:
        size = columns[name].vocabulary_size  # type: ignore[union-attr]
        tensors.append(torch.randint(0, size, (n_cands,), generator=gen))
        dynamic.append({0: c_dim})
    tensors.append(torch.tensor([0, 1, 1], dtype=torch.int64))  # row_user
    dynamic.append({0: c_dim})
    return tensors, dynamic


def _check(module: PositionalForward, folder: Path, example: list[torch.Tensor]) -> None:
    """The exported graph must match torch on the example inputs: as rows of two users and
    as one user's rank call (the two branches of the graph's If nodes)."""
    session = _session(folder / MODEL_FILE)
    names = [i.name for i in session.get_inputs()]
    names_all = [*module.user_names, *module.candidate_names, ROW_USER]
    nu = len(module.user_names)
    one_user = [t[:1] for t in example[:nu]] + example[nu:-1] + [torch.zeros_like(example[-1])]
    for tensors in (example, one_user):
        feed = dict(zip(names_all, [t.numpy() for t in tensors], strict=True))
        got = session.run([OUTPUT], {k: v for k, v in feed.items() if k in names})[0]
        with torch.inference_mode():
            want = module(*tensors).numpy()
        diff = float(np.abs(got - want).max())
        if diff > 1e-4 * max(1.0, float(np.abs(want).max())):
            raise RuntimeError(f"the exported ONNX graph differs from torch by {diff:.3g}")


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per worker, like torch: extra threads stall when other processes hold cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """Runs `bundle`/onnx/model.onnx with ONNX Runtime (CPU, one thread).

    Args:
        bundle: the bundle directory holding onnx/.
        version: the bundle's version; an export made from other weights is refused.
    """

    name = "onnx"

    def __init__(self, bundle: str | os.PathLike[str], version: str) -> None:
        folder = Path(bundle) / ONNX_DIR
        meta_file = folder / META_FILE
        if not meta_file.is_file() or not (folder / MODEL_FILE).is_file():
            raise FileNotFoundError(
                f"{bundle} has no ONNX export; run `dinrec export {bundle} --format onnx`"
            )
        if not (folder / DATA_FILE).is_file():
            raise FileNotFoundError(f"{folder} lacks {DATA_FILE}, the exported weights")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{meta_file}: format is {meta.get('format')!r}")
        if meta.get("bundle_version") != version:
            raise ValueError(
                f"{folder} was exported from model version {meta.get('bundle_version')}, but "
                f"the bundle is {version}; re-run `dinrec export {bundle} --format onnx`"
            )
        self.session = _session(folder / MODEL_FILE)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, user: Arrays, candidates: Arrays) -> np.ndarray:
        n = len(next(iter(candidates.values())))
        users = len(next(iter(user.values()))) if user else 1
        row_user = np.zeros(n, np.int64) if users == 1 else np.arange(n, dtype=np.int64)
        feed = {**user, **candidates, ROW_USER: row_user}
        out = self.session.run([OUTPUT], {name: feed[name] for name in self.inputs})[0]
        return np.asarray(out, dtype=np.float32)
