"""`dinrec train` under torchrun with `[distributed] embeddings = "torchrec"`.

What changes against the DDP run (runner.py), every piece collective:

- the tables are sharded by TorchRec (wrap_trainer_torchrec) as distributed.sharding says;
  the planner's plan is written to train.log;
- the bundle stays the single-process bundle: at every epoch end the tables are gathered
  whole onto rank 0 into a plain copy of the model (PlainSnapshot), which rank 0 saves
  when the epoch is the best;
- checkpoints are sharded (ShardedCheckpoint): every rank writes its shards with
  torch.distributed.checkpoint into checkpoint.dcp/step-N, then rank 0 writes checkpoint.pt
  (the trainer's progress and the run's records, naming that directory) and removes older
  step directories. A kill at any point leaves checkpoint.pt naming a complete directory.
  It resumes on any world size, sharded or (one process, `dinrec train --resume`) plain;
  a sharded run also resumes from a plain checkpoint.pt.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dinrec.experiment.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from dinrec.experiment.config import ConfigError, ExperimentConfig
from dinrec.experiment.recorder import RunRecorder
from dinrec.training.callbacks import Callback
from dinrec.training.distributed.launch import barrier, current
from dinrec.training.distributed.sharded_checkpoint import (
    load_plain,
    load_sharded,
    save_sharded,
    trainer_progress,
)
from dinrec.training.distributed.torchrec_tables import (
    plain_state_dict,
    torchrec_available,
    wrap_trainer_torchrec,
)
from dinrec.training.optimizers import make_optimizer

SHARDED_DIR = "checkpoint.dcp"


def shard_trainer(trainer: Any, config: ExperimentConfig, log: Any) -> Any:
    """wrap_trainer_torchrec from the config: tables' and dense optimizer from [training]."""
    if not torchrec_available():
        raise ConfigError("distributed.embeddings = 'torchrec' needs torchrec and fbgemm-gpu "
                          "(docs/distributed.md: Model-parallel embeddings)")
    t, d = config.training, config.distributed
    trainer = wrap_trainer_torchrec(
        trainer, d.sharding, embedding_optimizer=t.optimizer, embedding_lr=t.learning_rate,
        dense_optimizer=lambda ps: make_optimizer(t.optimizer, ps, t.learning_rate),
        sync_dice_stats=d.sync_dice_stats)
    log(f"TorchRec sharding plan ({d.sharding}):\n{trainer.forward_module.plan}")
    return trainer


class PlainSnapshot(Callback):
    """At each epoch end, the unsharded weights into rank 0's plain model (collective).

    Put it before the RunRecorder, whose save_best then saves `plain` (rank 0).
    """

    def __init__(self, model: Any, plain: Any) -> None:
        self.model = model
        self.plain = plain

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        state = plain_state_dict(self.model)
        if state is not None:
            self.plain.load_state_dict(state)


class QuietRecorder(RunRecorder):
    """RunRecorder whose checkpoints ShardedCheckpoint writes (collectively) instead."""

    def checkpoint(self) -> None:
        return None


class ShardedCheckpoint(Callback):
    """Every `every` steps and at each epoch end: the sharded checkpoint (all ranks).

    Put it after the RunRecorder (rank 0 records the epoch first, then it is saved).
    """

    def __init__(self, root: Path, every: int, recorder: RunRecorder | None) -> None:
        self.root = root
        self.every = every
        self.recorder = recorder

    def on_batch_end(self, step: int, logs: dict[str, float] | None = None) -> None:
        if self.every and step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.save()

    def save(self) -> None:
        trainer = self.trainer
        name = f"step-{trainer.global_step}-epoch-{trainer.progress.epoch}"
        directory = self.root / SHARDED_DIR / name
        if current().is_main and directory.exists():  # a killed attempt's leftovers
            shutil.rmtree(directory)
        barrier()
        save_sharded(directory, trainer)
        progress = trainer_progress(trainer)
        barrier()  # every rank's shards are on disk
        if self.recorder is not None:
            save_checkpoint(self.root / CHECKPOINT_FILE,
                            {"trainer": progress, "recorder": self.recorder.state(),
                             "sharded": f"{SHARDED_DIR}/{name}"})
            for old in (self.root / SHARDED_DIR).iterdir():
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
        barrier()


def resume_sharded(trainer: Any, recorder: RunRecorder | None, checkpoint: Path,
                   resume: bool, seed: int, log: Any) -> bool:
    """resume_or_start for a sharded trainer: a sharded or a plain checkpoint.pt."""
    from dinrec.experiment.run_dir import resume_or_start

    if not (resume and checkpoint.is_file()):
        return resume_or_start(trainer, recorder, checkpoint, False, seed, log)
    state = load_checkpoint(checkpoint)
    if "sharded" in state:
        load_sharded(checkpoint.parent / state["sharded"], trainer, state["trainer"])
    else:
        load_plain(trainer, state["trainer"])
        log("resumed the sharded tables from a plain checkpoint (their optimizer state "
            "restarts)")
    if recorder is not None:
        recorder.load_state(state["recorder"])
    log(f"resumed from step {trainer.global_step} (epoch {trainer.progress.epoch + 1}, "
        f"batch {trainer.progress.batches_done})")
    return bool(state["recorder"]["stopped"])
