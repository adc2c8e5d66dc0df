"""DeepCTR-Torch's `device` / `gpus` constructor arguments, checked with a clear error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def check_device(device: Any, gpus: Sequence[Any] | None) -> None:
    """Accept what dinrec runs on (the CPU); refuse anything else by name.

    DeepCTR-Torch's DIN takes device="cpu" | "cuda:0" and gpus (it refuses gpus for DIN
    too). dinrec's compile / fit / evaluate / predict keep inputs and scores on the CPU,
    so a GPU is refused here rather than failing inside the first step.
    """
    if gpus:
        raise ValueError(
            f"gpus={list(gpus)!r}: DIN trains on one device (DeepCTR-Torch's DIN refuses "
            "gpus too); for several processes run `torchrun --nproc_per_node N -m dinrec "
            "train CONFIG.toml` (DDP, see docs/distributed.md)"
        )
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err})") from None
    if kind == "cpu":
        return
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r}: CUDA is not available to this torch "
            f"({torch.__version__}, torch.cuda.is_available() is False); use device='cpu'"
        )
    raise ValueError(
        f"device={device!r}: dinrec's Keras-style fit / evaluate / predict run on the CPU; "
        "use device='cpu' (distributed training on GPUs: torchrun with the nccl backend, "
        "see docs/distributed.md)"
    )
