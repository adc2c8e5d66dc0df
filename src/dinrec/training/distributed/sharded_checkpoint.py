"""Checkpoints of TorchRec-sharded runs with torch.distributed.checkpoint (DCP).

No rank holds a sharded table whole, so each rank writes its own shards: one DCP directory
per checkpoint, with

- "model": every weight under the PLAIN model's names (a table's ShardedTensor is saved as
  embeddings.tables.<table>.weight, as the unsharded EmbeddingBank names it), so the same
  directory loads into a sharded model of any world size (DCP reshards) or into the plain
  model of one process (DCP assembles each table whole);
- "tables_optimizer": the fused embedding optimizer's state (FBGEMM's, e.g. Adagrad's
  momentum1), sharded like the tables; it loads into a sharded model only: the plain model's
  torch optimizer keeps other state (a switch between sharded and plain tables restarts the
  tables' optimizer state; SGD has none).

The rest of the trainer's state (step, epoch position, RNG, the dense optimizer's state
named by parameter) is small and the same on every rank: trainer_progress() returns it for
rank 0 to write beside the directory.

Example:
    >>> save_sharded(run_dir / "checkpoint.dcp" / "step-200", trainer)     # doctest: +SKIP
    >>> load_sharded(run_dir / "checkpoint.dcp" / "step-200", trainer)     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from dinrec.training.trainer import Trainer


def _bank(model: nn.Module) -> Any:
    from dinrec.training.distributed.torchrec_tables import TorchRecEmbeddingBank

    bank = getattr(model, "embeddings", None)
    return bank if isinstance(bank, TorchRecEmbeddingBank) else None


def is_sharded(trainer: Trainer) -> bool:
    """Whether the trainer's tables are TorchRec-sharded."""
    return _bank(trainer.model) is not None


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module,
                            order: list[str] | None = None) -> dict[str, Any]:
    """The optimizer's per-parameter state keyed by parameter name instead of position.

    order: the names of the optimizer's parameters in its order (default: looked up in
    model.named_parameters()).
    """
    if order is None:
        names = {id(p): n for n, p in model.named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    state = optimizer.state_dict()["state"]
    return {order[i]: value for i, value in state.items()}


def load_optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module,
                                 by_name: dict[str, Any]) -> list[str]:
    """Load optimizer_state_by_name's state; returns the parameters it had none for."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    own = optimizer.state_dict()
    own["state"] = {i: by_name[n] for i, n in enumerate(order) if n in by_name}
    optimizer.load_state_dict(own)
    return [n for n in order if n not in by_name]


def trainer_progress(trainer: Trainer) -> dict[str, Any]:
    """Trainer.state_dict() without the weights: "optimizer_by_name" for the dense state."""
    state = trainer.state_dict()
    state.pop("model")
    state.pop("optimizer")
    state["optimizer_by_name"] = optimizer_state_by_name(trainer.optimizer, trainer.model)
    return state


def _fused(trainer: Trainer) -> Any:
    """TorchRec's fused embedding optimizer (DistributedModelParallel.fused_optimizer)."""
    return getattr(trainer.forward_module, "fused_optimizer")  # noqa: B009


def _tensors(trainer: Trainer) -> dict[str, Any]:
    from dinrec.training.distributed.torchrec_tables import plain_key

    model = trainer.model
    rename = plain_key(_bank(model))
    return {"model": {rename.get(k, k): v for k, v in model.state_dict().items()},
            "tables_optimizer": _fused(trainer).state_dict()}


def save_sharded(directory: str | Path, trainer: Trainer) -> None:
    """Every rank writes its shards of the weights and of the tables' optimizer state."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_tensors(trainer), checkpoint_id=str(directory))


def load_sharded(directory: str | Path, trainer: Trainer, progress: dict[str, Any]) -> None:
    """Restore a save_sharded directory and trainer_progress() into a sharded or a plain
    trainer (collective for a sharded one); the next fit continues where it was saved."""
    import torch.distributed.checkpoint as dcp

    model = trainer.model
    progress = dict(progress)
    by_name = progress.pop("optimizer_by_name")
    if is_sharded(trainer):
        # DCP loads in place: the state dicts' tensors (shards included) are the model's
        # and the fused optimizer's own storage.
        tensors = _tensors(trainer)
        dcp.load(tensors, checkpoint_id=str(directory))
        _fused(trainer).load_state_dict(tensors["tables_optimizer"])
        weights = model.state_dict()
    else:  # one process: each table read whole from the shards of every rank
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        dcp.load({"model": weights}, checkpoint_id=str(directory))
        # the sharded run averaged the dense weights only: restart the average
        progress["weight_average"] = None
    _restore(trainer, weights, by_name, progress)


def load_plain(trainer: Trainer, state: dict[str, Any]) -> None:
    """Restore a plain (one process or DDP) Trainer.state_dict() into a sharded trainer:
    each rank copies its rows of every table; the tables' optimizer state restarts."""
    from dinrec.training.distributed.torchrec_tables import load_full_tables

    model = trainer.model
    bank = _bank(model)
    plain = dict(state["model"])
    tables = {name: plain.pop(f"embeddings.tables.{name}.weight") for name in bank.tables}
    load_full_tables(model, tables)
    weights = {k: v for k, v in model.state_dict().items()}
    weights.update(plain)
    order = bank.plain_parameter_names
    by_name = {order[i]: value for i, value in state["optimizer"]["state"].items()}
    progress = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    progress["weight_average"] = None  # the plain run averaged the tables too
    _restore(trainer, weights, by_name, progress)


def _restore(trainer: Trainer, weights: dict[str, Any], by_name: dict[str, Any],
             progress: dict[str, Any]) -> None:
    model = trainer.model
    model.load_state_dict(weights)
    load_optimizer_state_by_name(trainer.optimizer, model, by_name)
    trainer.load_state_dict({"model": model.state_dict(),
                             "optimizer": trainer.optimizer.state_dict(), **progress})
