"""What the multi-process tests share: a free rendezvous port, joining a gloo group as one
rank, and the small random DIN inputs the DDP and TorchRec tests both train on.

A plain module (see cli_process.py for why it is importable as `tests.integration.*`).
The spawned ranks import it the same way they import the test module that spawned them.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.inputs import prepare_inputs, prepare_labels
from dinrec.training.batches import TensorBatches
from dinrec.training.distributed.launch import DistEnv

# Vocabularies and history length of make_data; din_columns declares the same ones.
N_USERS, N_ITEMS, N_CATES, MAXLEN = 12, 40, 5, 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def join(rank: int, port: int, world: int) -> DistEnv:
    """Join a `world`-rank gloo group on 127.0.0.1:port as `rank`, through the torchrun
    variables, so the code under test starts exactly as under torchrun."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world)})
    from dinrec.training.distributed.launch import init_from_env

    return init_from_env(device="cpu")


@contextlib.contextmanager
def rank_process(rank: int, port: int, world: int) -> Iterator[DistEnv]:
    """join(), then the body; a body that returns ends the process with exit_process(0).

    A spawned rank that returned normally could abort in gloo's threads at interpreter exit
    (see dinrec.training.distributed.launch.exit_process), failing mp.spawn now and then; a body
    that raises leaves the group and re-raises, so mp.spawn reports its traceback.
    """
    from dinrec.training.distributed.launch import destroy, exit_process

    env = join(rank, port, world)
    try:
        yield env
    except BaseException:
        destroy()
        raise
    exit_process(0)


def make_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """n random samples: user, item, its category and item/category histories of varied
    length (zero-padded); the label depends on the item, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, MAXLEN + 1, size=n)
    hist = rng.integers(1, N_ITEMS, size=(n, MAXLEN))
    hist[np.arange(MAXLEN)[None, :] >= lens[:, None]] = 0
    items = rng.integers(1, N_ITEMS, size=n)
    x = {"user_id": rng.integers(0, N_USERS, size=n), "item_id": items,
         "cate_id": items % N_CATES, "hist_item_id": hist,
         "hist_cate_id": np.where(hist > 0, hist % N_CATES, 0)}
    y = (rng.random(n) < 0.3 + 0.4 * (items % 2)).astype(np.float32)
    return x, y


def din_columns(item_dim: int, cate_dim: int) -> list[Any]:
    """Feature columns for make_data; the histories share the item and category tables."""
    return [
        SparseFeat("user_id", N_USERS, embedding_dim=4),
        SparseFeat("item_id", N_ITEMS, embedding_dim=item_dim),
        SparseFeat("cate_id", N_CATES, embedding_dim=cate_dim),
        VarLenSparseFeat(SparseFeat("hist_item_id", N_ITEMS, embedding_dim=item_dim,
                                    embedding_name="item_id"), MAXLEN),
        VarLenSparseFeat(SparseFeat("hist_cate_id", N_CATES, embedding_dim=cate_dim,
                                    embedding_name="cate_id"), MAXLEN),
    ]


def tensor_batches(model: Any, x: dict[str, np.ndarray], y: np.ndarray, batch_size: int,
                   shuffle: bool = False, seed: int = 0) -> TensorBatches:
    """make_data's arrays as the model's input tensors, in batches."""
    return TensorBatches(prepare_inputs(model.schema, x), prepare_labels(y, len(y)),
                         batch_size, shuffle=shuffle, seed=seed)
