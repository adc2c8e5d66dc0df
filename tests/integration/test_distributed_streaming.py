"""`torchrun -m dinrec train` with data.streaming on 2 CPU processes: each rank streams its
own row groups, and a rank killed mid-epoch restarts the job, which resumes at the exact
position and ends like the run that was never interrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.integration.cli_process import epoch_records
from tests.integration.test_distributed_restart import CONFIG, torchrun

DATA = CONFIG[CONFIG.index("[data]"):CONFIG.index("[model]")]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dinrec.data.build import build_dataset

    root = tmp_path_factory.mktemp("ddp-stream")
    # Small row groups, so each of the 2 ranks gets several (rank r reads r, r + 2, ...).
    build_dataset("synthetic", None, "click-log", root / "data", maxlen=8,
                  reader_options={"n_users": 60, "n_items": 120, "n_categories": 5,
                                  "mean_impressions": 20}, row_group_size=40)
    streamed = (f'[data]\ndataset = "{root / "data"}"\nstreaming = true\n'
                "shuffle_window = 96\n\n")
    (root / "stream.toml").write_text(CONFIG.replace(DATA, streamed))
    return root


@pytest.fixture(scope="module")
def full_run(work: Path) -> Path:
    done = torchrun("train", "stream.toml", "--out", "full", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "full"


def test_each_rank_streams_its_row_groups(work: Path, full_run: Path) -> None:
    log = (full_run / "train.log").read_text()
    assert "on 2 ranks (gloo)" in log
    assert "samples streamed from Parquet (data.streaming = true)" in log
    assert pq.ParquetFile(work / "data" / "train.parquet").metadata.num_row_groups >= 4
    results = json.loads((full_run / "results.json").read_text())
    assert 0.0 < results["test"]["auc"] < 1.0


def test_a_killed_rank_resumes_the_stream_at_the_exact_position(
    work: Path, full_run: Path
) -> None:
    steps_per_epoch = int(epoch_records(full_run)[0]["step"])
    kill_at = next(s for s in range(steps_per_epoch + 2, 2 * steps_per_epoch) if s % 4 == 3)
    done = torchrun("train", "stream.toml", "--out", "killed", "--quiet", cwd=work,
                    restarts=1, kill=f"1:{kill_at}")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (work / "killed" / "train.log").read_text()
    assert sum("resumed from step" in line for line in log.splitlines()) == 1, log
    full = json.loads((full_run / "results.json").read_text())
    again = json.loads((work / "killed" / "results.json").read_text())
    assert again["test"] == full["test"]
    assert epoch_records(work / "killed") == epoch_records(full_run)
