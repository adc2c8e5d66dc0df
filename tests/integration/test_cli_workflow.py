"""The experiment workflow through the real CLI (python -m dinrec) on a tiny synthetic log:
train, resume after SIGKILL, evaluate, predict, explain, compare, demo, and config errors."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from tests.integration.cli_process import epoch_records, run_python
from tests.integration.faults import SCRIPT as FAULTS

TINY_CONFIG = """
[data]
source = "synthetic"
protocol = "click-log"
maxlen = 10
reader_options = { n_users = 80, n_items = 160, n_categories = 6, mean_impressions = 25 }

[model]
model = "DIN"
embedding_dim = 4
dnn_hidden_units = [16, 8]
att_hidden_size = [8, 4]
att_activation = "dice"
dnn_activation = "dice"
dnn_dropout = 0.2
embedding_regularization = "mba"

[training]
epochs = 2
batch_size = 64
learning_rate = 0.003
validation_fraction = 0.2
num_threads = 1

[output]
name = "tiny"
checkpoint_every = 3
plots = false
"""


def dinrec(*args: str, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "dinrec", *args], cwd=cwd, env=env, timeout=180)


def dinrec_killed_at(step: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dinrec ARGS` that SIGKILLs itself after optimizer step `step` (tests/.../faults.py)."""
    return run_python([str(FAULTS), str(step), *args], cwd=cwd, timeout=180)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workflow")
    (root / "tiny.toml").write_text(TINY_CONFIG)
    return root


@pytest.fixture(scope="module")
def finished_run(work: Path) -> Path:
    """One uninterrupted training run, shared by the tests that read a finished run."""
    ok(dinrec("train", "tiny.toml", "--out", "run-full", "--quiet", cwd=work))
    return work / "run-full"


def test_train_writes_the_run_directory(finished_run: Path) -> None:
    for name in ("config.toml", "metrics.jsonl", "train.log", "checkpoint.pt",
                 "results.json", "model/manifest.json", "model/vocab.json", "data/dataset.json"):
        assert (finished_run / name).exists(), name
    results = json.loads((finished_run / "results.json").read_text())
    assert set(results["test"]) == {"auc", "gauc", "logloss"}
    assert [r["epoch"] for r in epoch_records(finished_run)] == [1, 2]
    assert "val_gauc" in epoch_records(finished_run)[0]


def test_resume_after_sigkill_mid_epoch_gives_the_same_final_metrics(
    work: Path, finished_run: Path
) -> None:
    steps_per_epoch = epoch_records(finished_run)[0]["step"]
    kill_at = next(s for s in range(int(steps_per_epoch) + 4, 10_000) if s % 3)  # not a ckpt
    killed = dinrec_killed_at(kill_at, "train", "tiny.toml", "--out", "run-killed", "--quiet",
                              cwd=work)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = work / "run-killed"
    assert not (run / "results.json").exists()
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["epoch"] == 1 and state["trainer"]["batches_done"] > 0  # mid-epoch
    assert state["trainer"]["global_step"] < kill_at  # steps after it are redone

    ok(dinrec("train", "--resume", str(run), "--quiet", cwd=work))
    full = json.loads((finished_run / "results.json").read_text())
    resumed = json.loads((run / "results.json").read_text())
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]
    assert epoch_records(run) == epoch_records(finished_run)


def test_evaluate_prints_the_runs_test_metrics(work: Path, finished_run: Path) -> None:
    out = ok(dinrec("evaluate", str(finished_run / "model"), "--data",
                    str(finished_run / "data"), "--json", cwd=work))
    metrics = json.loads(out)
    test = json.loads((finished_run / "results.json").read_text())["test"]
    for key in ("auc", "gauc", "logloss"):
        assert metrics[key] == pytest.approx(test[key], abs=1e-6)


def test_predict_scores_every_test_sample(work: Path, finished_run: Path) -> None:
    ok(dinrec("predict", str(finished_run / "model"), "--data", str(finished_run / "data"),
              "--out", "scores.parquet", "--batch-size", "100", cwd=work))
    table = pq.read_table(work / "scores.parquet")
    meta = json.loads((finished_run / "data" / "dataset.json").read_text())
    assert table.num_rows == meta["counts"]["test"]["samples"]
    scores = table["score"].to_numpy()
    assert ((scores > 0) & (scores < 1)).all()
    assert str(table["item"][0]).startswith("i")  # raw ids, decoded


def test_explain_prints_weights_per_behavior_and_writes_heatmap(
    work: Path, finished_run: Path
) -> None:
    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.explain import pick_demo_case

    user, candidates = pick_demo_case(load_dataset(finished_run / "data"), min_per_category=1)
    out = ok(dinrec("explain", str(finished_run / "model"), "--user", user,
                    "--candidates", ",".join(candidates), "--out", "att.png", cwd=work))
    assert f"user {user}" in out
    assert all(c in out for c in candidates)
    assert (work / "att.png").stat().st_size > 0


def test_explain_unknown_user_is_named(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = main_error(capsys, "explain", str(finished_run / "model"), "--user", "nobody",
                      "--candidates", "i1")
    assert "user 'nobody'" in line


@pytest.fixture(scope="module")
def demo_dir(work: Path) -> tuple[Path, str]:
    """The tiny demo, run once: (its directory, what it printed)."""
    out = ok(dinrec("demo", "--tiny", "--out", "demo", "--quiet", cwd=work))
    return work / "demo", out


def test_demo_tiny_prints_the_table_and_writes_plots(demo_dir: tuple[Path, str]) -> None:
    root, out = demo_dir
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == [
        "Base Model", "DIN", "DIN+Dice", "DIN+MBA+Dice"]
    for name in ("curves.png", "attention.png", "results.md", "din/model/weights.safetensors"):
        assert (root / name).exists(), name


def test_compare_prints_markdown_with_rela_impr(
    work: Path, finished_run: Path, demo_dir: tuple[Path, str]
) -> None:
    root, _ = demo_dir
    out = ok(dinrec("compare", str(finished_run), str(root / "base"), cwd=work))
    lines = out.strip().splitlines()
    assert lines[0].startswith("| run | model | AUC | GAUC | logloss | RelaImpr")
    assert lines[2].startswith("| tiny | DIN") and "%" in lines[2]
    assert lines[3].startswith("| Base Model | EmbeddingMLP") and "baseline" in lines[3]

def test_bad_config_through_the_real_cli_is_one_line_with_exit_code_2(work: Path) -> None:
    one_line_error(dinrec("train", "tiny.toml", "--set", "training.epoch=3", cwd=work),
                   "unknown key training.epoch", "epochs")


def main_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI in-process; assert exit code 2 and one stderr line; return the line."""
    from dinrec.cli.main import main

    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("training.epochs=three", ("training.epochs", "integer", "three")),
        ("model.dnn_hidden_units=[32, 0.5]", ("model.dnn_hidden_units[1]",)),
        ("model.att_activation=swish", ("att_activation", "swish")),
        ("output.plots=1", ("output.plots", "true/false")),
    ],
)
def test_bad_config_value_is_named(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    override: str, needles: tuple[str, ...],
) -> None:
    monkeypatch.chdir(work)
    line = main_error(capsys, "train", "tiny.toml", "--set", override)
    assert all(n in line for n in needles), line


def test_resume_takes_only_distributed_settings(
    finished_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(finished_run.parent)
    line = main_error(capsys, "train", "--resume", str(finished_run), "--set",
                      "training.epochs=3")
    assert "--set training.epochs" in line and "distributed.*" in line, line
    line = main_error(capsys, "train", "--resume", str(finished_run), "--set",
                      "distributed.embeddings=tables")
    assert "distributed.embeddings" in line and "tables" in line, line


def test_missing_data_path_is_named(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    (work / "missing.toml").write_text(
        '[data]\nsource = "movielens"\nprotocol = "rating"\npath = "no/such/ml-100k"\n')
    line = main_error(capsys, "train", "missing.toml")
    assert "data.path" in line and "no/such/ml-100k" in line
    line = main_error(capsys, "train", "tiny.toml", "--set", "data.source=none")
    assert "data.source" in line


def test_a_streamed_run_killed_mid_epoch_resumes_at_the_exact_position(work: Path) -> None:
    stream = ("--set", "data.streaming=true", "--set", "data.shuffle_window=100")
    ok(dinrec("train", "tiny.toml", "--out", "stream-full", "--quiet", *stream, cwd=work))
    full_run = work / "stream-full"
    assert "samples streamed from Parquet" in (full_run / "train.log").read_text()
    steps_per_epoch = epoch_records(full_run)[0]["step"]
    kill_at = next(s for s in range(int(steps_per_epoch) + 4, 10_000) if s % 3)  # not a ckpt
    killed = dinrec_killed_at(kill_at, "train", "tiny.toml", "--out", "stream-killed",
                              "--quiet", *stream, cwd=work)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = work / "stream-killed"
    ok(dinrec("train", "--resume", str(run), "--quiet", cwd=work))
    full = json.loads((full_run / "results.json").read_text())
    assert json.loads((run / "results.json").read_text())["test"] == full["test"]
    assert epoch_records(run) == epoch_records(full_run)
