"""run_experiment in-process: the run directory, refusing to overwrite, finished resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dinrec.errors import OutputExistsError
from dinrec.experiment.config import config_from_dict, load_config
from dinrec.experiment.runner import read_result, run_experiment
from dinrec.training.weight_average import dense_parameters


def test_a_run_writes_results_that_reload_and_a_config_that_reloads(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    config = config_from_dict(tiny_raw_config)
    result = run_experiment(config, tmp_path / "run", verbose=0)
    assert read_result(tmp_path / "run") == result
    assert result.best_epoch == 1 and result.epochs_run == 1
    saved = load_config(tmp_path / "run" / "config.toml")
    assert saved.output.dir == str((tmp_path / "run").resolve())
    assert saved.replace(output=config.output) == config
    manifest = json.loads((tmp_path / "run" / "model" / "manifest.json").read_text())
    assert manifest["extra"]["epoch"] == 1

    with pytest.raises(OutputExistsError, match="already holds a run") as refused:
        run_experiment(config, tmp_path / "run", verbose=0)
    assert "overwrite=True" in str(refused.value) and "--" not in str(refused.value)
    assert "--overwrite" in refused.value.for_cli() and "=True" not in refused.value.for_cli()
    again = run_experiment(config, tmp_path / "run", resume=True, verbose=0)
    assert again.test == result.test


def test_overwrite_replaces_a_run_and_keeps_other_files(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    config = config_from_dict(tiny_raw_config)
    run_experiment(config, tmp_path / "run", verbose=0)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"epoch": 99}\n')
    run_experiment(config, tmp_path / "run", overwrite=True, verbose=0)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    epochs = [json.loads(line)["epoch"]
              for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]


def test_resume_needs_a_run_directory(tmp_path: Path, tiny_raw_config: dict) -> None:
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        run_experiment(config_from_dict(tiny_raw_config), tmp_path, resume=True, verbose=0)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    config = config_from_dict(tiny_raw_config)
    first = run_experiment(config, tmp_path / "a", verbose=0)
    second = run_experiment(config, tmp_path / "b", verbose=0)
    assert first.test == second.test
    tiny_raw_config["training"]["seed"] = 7
    other = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "c", verbose=0)
    assert other.test != first.test


def test_an_attempt_killed_before_its_first_checkpoint_restarts_clean(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    config = config_from_dict(tiny_raw_config)
    run = tmp_path / "run"
    run_experiment(config, run, verbose=0)
    expected = (run / "metrics.jsonl").read_text()
    (run / "checkpoint.pt").unlink()
    (run / "results.json").unlink()
    (run / ".checkpoint.pt.x1.tmp").write_bytes(b"torn")
    run_experiment(config, run, resume=True, verbose=0)
    assert (run / "metrics.jsonl").read_text().count("\n") == expected.count("\n") == 1
    assert not (run / ".checkpoint.pt.x1.tmp").exists()


@pytest.mark.parametrize("compile_dense", [False, True])
def test_speed_options_reach_the_activation_unit(
    tiny_raw_config: dict, tiny_dataset: Path, compile_dense: bool
) -> None:
    import torch

    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.runner import build_experiment_model

    tiny_raw_config["training"].update(compile_dense=compile_dense, attention_bf16=True)
    model = build_experiment_model(config_from_dict(tiny_raw_config), load_dataset(tiny_dataset))
    unit = model.attention.unit
    assert unit.compiled is compile_dense
    native_bf16 = any(bool(getattr(torch.cpu, name, lambda: False)())
                      for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    assert unit.matmul_dtype == (torch.bfloat16 if native_bf16 else None)


@pytest.mark.parametrize(("momentum", "averaged"), [(0.99, True), (0.0, False)])
def test_ema_momentum_reaches_the_trainer(
    tiny_raw_config: dict, tiny_dataset: Path, momentum: float, averaged: bool
) -> None:
    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.runner import build_experiment_model

    tiny_raw_config["training"]["ema_momentum"] = momentum
    model = build_experiment_model(config_from_dict(tiny_raw_config), load_dataset(tiny_dataset))
    averaging = model.trainer.averaging
    assert (averaging is not None) is averaged
    if averaging is not None:
        assert averaging.momentum == 0.99
        assert len(averaging.params) == len(dense_parameters(model)) + len(model.schema.tables)


def test_torchrec_tables_in_one_process_train_plain_and_say_so(
    tmp_path: Path, tiny_raw_config: dict
) -> None:
    tiny_raw_config["distributed"] = {"embeddings": "torchrec"}
    # What the config check asks of TorchRec tables: dims of 4k, no embedding penalty, sgd.
    tiny_raw_config.setdefault("model", {}).update(
        embedding_dim=8, embedding_regularization="l2", l2_reg_embedding=0.0)
    tiny_raw_config["training"]["optimizer"] = "sgd"
    run_experiment(config_from_dict(tiny_raw_config), tmp_path / "run", verbose=0)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "one process trains them as plain tables" in log
