"""training.device: checked by name, resolved ("auto"), and a CPU run equal to the default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dinrec.experiment.config import ConfigError, config_from_dict
from dinrec.experiment.runner import resolve_device, run_experiment


def test_training_device_is_checked_by_name(tiny_raw_config: dict) -> None:
    tiny_raw_config["training"]["device"] = "gpu"
    with pytest.raises(ConfigError, match=r"training\.device must be one of cpu, cuda, auto"):
        config_from_dict(tiny_raw_config)


def test_auto_is_cuda_only_where_torch_sees_one() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r'training\.device = "cuda" but torch sees no CUDA'):
        resolve_device("cuda")


def test_a_run_on_the_cpu_device_equals_the_default(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    default = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "a", verbose=0)
    tiny_raw_config["training"]["device"] = "auto" if not torch.cuda.is_available() else "cpu"
    chosen = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "b", verbose=0)
    assert chosen.test == default.test
