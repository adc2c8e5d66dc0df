"""Optimizers by Keras name, with Keras' default learning rates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dinrec.training.lazy_adam import LazyAdam

# Keras defaults (DeepCTR users' expectation): adam/rmsprop 1e-3, adagrad 1e-3, sgd 1e-2.
_DEFAULT_LR = {"adam": 1e-3, "adagrad": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3, "adamw": 1e-3}


# Optimizers whose torch implementation takes sparse gradients as they are.
_SPARSE_CAPABLE = ("adagrad", "sgd")


def make_optimizer(
    optimizer: Any,
    params: Iterable[torch.nn.Parameter],
    lr: float | None = None,
    sparse_params: Iterable[torch.nn.Parameter] = (),
) -> torch.optim.Optimizer:
    """A torch optimizer from a name ('adam', 'adagrad', 'sgd', 'rmsprop', 'adamw') or itself.

    sparse_params: the parameters that get sparse gradients (embedding tables built with
    sparse_embeddings=True). With them 'adam' becomes LazyAdam (Adam on the dense
    parameters, row-wise Adam on the tables); 'adagrad' and 'sgd' take them as they are.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if not isinstance(optimizer, str):
        raise ValueError(
            f"optimizer must be a name {sorted(_DEFAULT_LR)} or a torch.optim.Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    key = optimizer.lower()
    if key not in _DEFAULT_LR:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {sorted(_DEFAULT_LR)}")
    rate = _DEFAULT_LR[key] if lr is None else float(lr)
    trainable = [p for p in params if p.requires_grad]
    sparse = {id(p) for p in sparse_params if p.requires_grad}
    if sparse:
        if key == "adam":
            dense = [p for p in trainable if id(p) not in sparse]
            return LazyAdam(trainable, lr=rate, fused=_fusable(dense))
        if key not in _SPARSE_CAPABLE:
            raise ValueError(
                f"optimizer {optimizer!r} cannot take the sparse embedding gradients of "
                "sparse_embeddings=True; use 'adam' (row-wise Adam on the tables), "
                "'adagrad' or 'sgd'"
            )
    if key in ("adam", "adamw"):
        cls = torch.optim.Adam if key == "adam" else torch.optim.AdamW
        if _fusable(trainable):
            # One fused kernel for all parameters instead of ~10 ops per parameter per step
            # (the default on CPU): ~0.5 ms of a ~10 ms DIN step; same update up to rounding.
            return cls(trainable, lr=rate, fused=True)
        return cls(trainable, lr=rate)
    if key == "adagrad":
        return torch.optim.Adagrad(trainable, lr=rate)
    if key == "rmsprop":
        # Keras RMSprop: rho 0.9, eps 1e-7.
        return torch.optim.RMSprop(trainable, lr=rate, alpha=0.9, eps=1e-7)
    return torch.optim.SGD(trainable, lr=rate)


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters (dense float, CPU or CUDA)."""
    return bool(params) and all(
        p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda")
        for p in params
    )
