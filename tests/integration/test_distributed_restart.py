"""`torchrun -m dinrec train` on 2 CPU processes, and a rank killed mid-epoch: torchrun
restarts the job (--max-restarts), which resumes from the last checkpoint and ends exactly
like the run that was never interrupted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.integration.cli_process import epoch_records, run_python
from tests.integration.distributed_setup import free_port
from tests.integration.faults import SCRIPT as FAULTS

CONFIG = """
[data]
source = "synthetic"
protocol = "click-log"
maxlen = 8
reader_options = { n_users = 60, n_items = 120, n_categories = 5, mean_impressions = 20 }

[model]
model = "DIN"
embedding_dim = 4
dnn_hidden_units = [16, 8]
att_hidden_size = [8, 4]
att_activation = "dice"
embedding_regularization = "mba"

[training]
epochs = 2
batch_size = 64
learning_rate = 0.003
validation_fraction = 0.2

[output]
name = "tiny-ddp"
checkpoint_every = 4
plots = false
"""


def torchrun(*args: str, cwd: Path, restarts: int = 0, env: dict[str, str] | None = None,
             kill: str | None = None) -> subprocess.CompletedProcess[str]:
    """`torchrun -m dinrec ARGS` on 2 ranks; kill="RANK:STEP" SIGKILLs that rank after that
    step on the first attempt (tests/integration/faults.py)."""
    program = ["-m", "dinrec"] if kill is None else [str(FAULTS), kill]
    command = ["-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--max-restarts", str(restarts), "--monitor-interval", "0.2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               *program, *args]
    return run_python(command, cwd=cwd, env={"PYTHONWARNINGS": "ignore", **(env or {})},
                      timeout=240)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.toml").write_text(CONFIG)
    return root


@pytest.fixture(scope="module")
def full_run(work: Path) -> Path:
    done = torchrun("train", "tiny.toml", "--out", "full", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test:" in done.stdout and done.stdout.count("run:") == 1  # rank 0 reports alone
    return work / "full"


def test_torchrun_train_writes_one_run_directory_from_rank_0(full_run: Path) -> None:
    for name in ("config.toml", "metrics.jsonl", "train.log", "checkpoint.pt", "results.json",
                 "model/manifest.json", "data/dataset.json"):
        assert (full_run / name).exists(), name
    log = (full_run / "train.log").read_text()
    assert "on 2 ranks (gloo)" in log
    assert "rank 1" not in log  # only rank 0 writes the log
    assert [r["epoch"] for r in epoch_records(full_run)] == [1, 2]


def test_a_killed_rank_restarts_the_job_from_its_last_checkpoint(
    work: Path, full_run: Path
) -> None:
    steps_per_epoch = int(epoch_records(full_run)[0]["step"])
    # mid-epoch 2, not on a checkpoint step (every 4): the steps since then are redone
    kill_at = next(s for s in range(steps_per_epoch + 2, 2 * steps_per_epoch) if s % 4 == 3)
    done = torchrun("train", "tiny.toml", "--out", "killed", "--quiet", cwd=work, restarts=1,
                    kill=f"1:{kill_at}")
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "killed"
    log = (run / "train.log").read_text()
    resumed = [line for line in log.splitlines() if "resumed from step" in line]
    assert len(resumed) == 1, log
    step = int(resumed[0].split("resumed from step ")[1].split()[0])
    # redone: the steps after the last checkpoint (fewer than checkpoint_every); none lost
    assert kill_at - 4 < step < kill_at
    full = json.loads((full_run / "results.json").read_text())
    again = json.loads((run / "results.json").read_text())
    assert again["test"] == full["test"]
    assert again["best_epoch"] == full["best_epoch"]
    assert epoch_records(run) == epoch_records(full_run)


def test_per_rank_dice_statistics_from_the_config_resume_exactly(work: Path) -> None:
    # [distributed] sync_dice_stats = false: one collective a step; the moving statistics
    # are averaged in it, so rank 0's checkpoint is every rank's state and a killed rank's
    # restart still ends like the run never interrupted.
    per_rank = ("--set", "distributed.sync_dice_stats=false")
    done = torchrun("train", "tiny.toml", "--out", "per-rank", "--quiet", *per_rank, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    full = work / "per-rank"
    steps_per_epoch = int(epoch_records(full)[0]["step"])
    kill_at = next(s for s in range(steps_per_epoch + 2, 2 * steps_per_epoch) if s % 4 == 3)
    done = torchrun("train", "tiny.toml", "--out", "per-rank-killed", "--quiet", *per_rank,
                    cwd=work, restarts=1, kill=f"1:{kill_at}")
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "per-rank-killed"
    assert "resumed from step" in (run / "train.log").read_text()
    assert epoch_records(run) == epoch_records(full)
    assert (json.loads((run / "results.json").read_text())["test"]
            == json.loads((full / "results.json").read_text())["test"])
