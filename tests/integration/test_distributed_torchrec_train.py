"""`torchrun -m dinrec train` with `[distributed] embeddings = "torchrec"` on 2 CPU processes:
the planner's plan in train.log, the single-process bundle from rank 0, and sharded
checkpoints that resume in one process, and one process's checkpoint on 2 sharded ranks.

Skipped where torchrec / fbgemm-gpu-cpu are not installed (they are optional)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.integration.cli_process import epoch_records, run_python
from tests.integration.faults import SCRIPT as FAULTS
from tests.integration.test_distributed_restart import CONFIG, torchrun

from dinrec.models import load_model
from dinrec.training.distributed.torchrec_tables import torchrec_available

pytestmark = pytest.mark.skipif(not torchrec_available(),
                                reason="torchrec / fbgemm-gpu-cpu not installed")
# CONFIG with what sharded tables take: no embedding regularization, a fused optimizer
# FBGEMM runs on CPU (SGD: no optimizer state, so a switch of world size loses nothing).
SHARDED = (CONFIG.replace('embedding_regularization = "mba"',
                          'embedding_regularization = "l2"\nl2_reg_embedding = 0.0')
           .replace("learning_rate = 0.003", 'learning_rate = 0.05\noptimizer = "sgd"')
           .replace('name = "tiny-ddp"', 'name = "tiny-torchrec"')
           + '\n[distributed]\nembeddings = "torchrec"\nsharding = "row_wise"\n')
KILL_AT = 18  # in epoch 2 (13 steps an epoch); the last checkpoint is step 16


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torchrec")
    (root / "sharded.toml").write_text(SHARDED)
    return root


def resumed_step(run: Path) -> int:
    lines = [ln for ln in (run / "train.log").read_text().splitlines()
             if "resumed from step" in ln]
    assert len(lines) == 1
    return int(lines[0].split("resumed from step ")[1].split()[0])


def test_sharded_tables_train_and_rank_0_writes_the_plain_bundle(work: Path) -> None:
    done = torchrun("train", "sharded.toml", "--out", "full", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "full"
    log = (run / "train.log").read_text()
    assert "TorchRec sharding plan (row_wise)" in log
    assert "item_id | row_wise" in log and "rank:1/cpu" in log
    assert [r["epoch"] for r in epoch_records(run)] == [1, 2]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)["sharded"]
    assert (run / checkpoint).is_dir() and checkpoint.startswith("checkpoint.dcp/step-26")
    # the bundle is the unsharded model: it loads in a plain process
    model = load_model(run / "model")
    assert {k for k in model.state_dict() if k.startswith("embeddings.tables.")} == {
        f"embeddings.tables.{t}.weight" for t in model.schema.tables}


def test_a_sharded_checkpoint_resumes_in_one_process(work: Path) -> None:
    killed = torchrun("train", "sharded.toml", "--out", "two", "--quiet", cwd=work,
                      kill=f"1:{KILL_AT}")  # no --max-restarts: the job ends there
    assert killed.returncode != 0  # rank 1 died and nothing restarted it
    resumed = run_python(["-m", "dinrec", "train", "--resume", "two", "--quiet"], cwd=work,
                         env={"PYTHONWARNINGS": "ignore"}, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = work / "two"
    assert resumed_step(run) == 16
    assert "from a sharded checkpoint" in (run / "train.log").read_text()
    assert [r["step"] for r in epoch_records(run)] == [13, 26]
    assert (run / "results.json").is_file()


def test_one_process_checkpoint_resumes_on_two_sharded_ranks(work: Path) -> None:
    killed = run_python([str(FAULTS), f"0:{KILL_AT}", "train", "sharded.toml", "--out", "one",
                         "--quiet"], cwd=work, env={"PYTHONWARNINGS": "ignore"}, timeout=240)
    assert killed.returncode != 0
    done = torchrun("train", "--resume", "one", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "one"
    assert resumed_step(run) == 16
    assert "from a plain checkpoint" in (run / "train.log").read_text()
    assert [r["step"] for r in epoch_records(run)] == [13, 26]


def test_a_sharded_run_resumes_with_ddp_tables_when_resume_sets_it(work: Path) -> None:
    killed = torchrun("train", "sharded.toml", "--out", "switch", "--quiet", cwd=work,
                      kill=f"1:{KILL_AT}")
    assert killed.returncode != 0
    done = torchrun("train", "--resume", "switch", "--set", "distributed.embeddings=ddp",
                    "--set", "distributed.sharding=auto", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "switch"
    log = (run / "train.log").read_text()
    assert resumed_step(run) == 16 and "from a sharded checkpoint" in log
    assert "distributed.embeddings: 'torchrec' -> 'ddp'" in log
    assert "TorchRec sharding plan" not in log.split("resumed from step")[1]  # DDP tables now
    assert 'embeddings = "ddp"' in (run / "config.toml").read_text()  # kept for a next resume
    assert [r["step"] for r in epoch_records(run)] == [13, 26]
    assert (run / "results.json").is_file()
