"""Resume checkpoints: weights_only round trip, atomic replacement, format checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dinrec.experiment.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    state = {"trainer": {"w": torch.arange(3.0), "step": 7, "rng": torch.get_rng_state()},
             "recorder": {"records": [{"epoch": 1, "val_gauc": 0.5}], "best_value": None}}
    path = save_checkpoint(tmp_path / "ckpt.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["trainer"]["w"], torch.arange(3.0))
    assert loaded["trainer"]["step"] == 7
    assert loaded["recorder"] == state["recorder"]


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint(path, {"step": 2, "bad": lambda: None})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_objects_outside_the_weights_only_allowlist_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "obj": Path("x")})
    with pytest.raises(Exception, match=r"weights_only|Unsupported"):  # no code runs on load
        load_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"other\.pt is not a dinrec checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
