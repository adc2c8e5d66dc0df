"""RunRecorder: best-epoch selection, early stopping, records that survive a resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dinrec.experiment.checkpoint import load_checkpoint
from dinrec.experiment.recorder import RunLog, RunRecorder, read_records


class FakeTrainer:
    """What the recorder uses of a Trainer."""

    def __init__(self) -> None:
        self.global_step = 0
        self.stop_training = False

    def state_dict(self) -> dict[str, Any]:
        return {"global_step": self.global_step}


def recorder(tmp_path: Path, monitor: str | None, patience: int = 1, every: int = 0,
             saved: list[int] | None = None) -> RunRecorder:
    rec = RunRecorder(tmp_path, monitor, patience, every,
                      (saved if saved is not None else []).append, RunLog(tmp_path))
    rec.set_trainer(FakeTrainer())  # type: ignore[arg-type]
    return rec


def run_epochs(rec: RunRecorder, values: list[float], key: str = "val_gauc") -> None:
    for epoch, value in enumerate(values):
        rec.trainer.global_step += 10
        rec.on_epoch_end(epoch, {"loss": 0.5, key: value})
        if rec.trainer.stop_training:
            break


def test_best_epoch_is_saved_and_training_stops_after_patience(tmp_path: Path) -> None:
    saved: list[int] = []
    rec = recorder(tmp_path, "val_gauc", patience=1, saved=saved)
    run_epochs(rec, [0.60, 0.70, 0.65, 0.66, 0.90])
    assert saved == [0, 1]
    assert rec.best_epoch == 1 and rec.best_value == 0.70
    assert rec.stopped and rec.trainer.stop_training
    assert [r["epoch"] for r in read_records(tmp_path)] == [1, 2, 3, 4]
    assert [r["best"] for r in read_records(tmp_path)] == [True, True, False, False]


def test_loss_monitor_prefers_lower_values(tmp_path: Path) -> None:
    saved: list[int] = []
    run_epochs(recorder(tmp_path, "val_loss", patience=5, saved=saved), [0.5, 0.4, 0.45, 0.3],
               key="val_loss")
    assert saved == [0, 1, 3]


def test_without_validation_every_epoch_is_the_latest_best(tmp_path: Path) -> None:
    saved: list[int] = []
    rec = recorder(tmp_path, None, saved=saved)
    run_epochs(rec, [0.1, 0.1, 0.1], key="loss2")
    assert saved == [0, 1, 2] and not rec.stopped


def test_a_missing_monitor_metric_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"training\.monitor 'val_auc' is not among"):
        run_epochs(recorder(tmp_path, "val_auc"), [0.5])


def test_checkpoints_every_n_steps_and_at_epoch_end(tmp_path: Path) -> None:
    rec = recorder(tmp_path, "val_gauc", every=4)
    rec.trainer.global_step = 3
    rec.on_batch_end(3)
    assert not (tmp_path / "checkpoint.pt").exists()
    rec.trainer.global_step = 4
    rec.on_batch_end(4)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"] == {"global_step": 4}
    rec.on_epoch_end(0, {"val_gauc": 0.7})
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["recorder"]["best_epoch"] == 0 and len(state["recorder"]["records"]) == 1


def test_loading_state_drops_records_written_after_the_checkpoint(tmp_path: Path) -> None:
    rec = recorder(tmp_path, "val_gauc", patience=3)
    run_epochs(rec, [0.6])
    state = rec.state()
    run_epochs(rec, [0.7])  # epoch 2 finished after the checkpoint that is resumed
    assert len(read_records(tmp_path)) == 2
    resumed = recorder(tmp_path, "val_gauc", patience=3)
    resumed.load_state(json.loads(json.dumps(state)))
    assert [r["epoch"] for r in read_records(tmp_path)] == [1]
    assert resumed.best_value == 0.6 and resumed.wait == 0
