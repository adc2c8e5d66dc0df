"""What the CLI writes and where it says so: refusing existing outputs unless --overwrite
(with CLI wording), the --resume hint on an interrupt, explain's heatmap beside the bundle,
--models checked before any work, and scoring a dataset built with other options."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.cli.main import main

TINY = """
[data]
source = "synthetic"
protocol = "click-log"
maxlen = 8
reader_options = { n_users = 80, n_items = 160, n_categories = 6, mean_impressions = 25 }

[model]
embedding_dim = 4
dnn_hidden_units = [8]
att_hidden_size = [8]

[training]
epochs = 1
batch_size = 64
validation_fraction = 0.0
num_threads = 1

[output]
checkpoint_every = 0
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.toml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def trained(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = run_cli(capsys, "train", "configs/tiny.toml", "--out", "run", "--quiet")
    assert code == 0, err
    assert f"curves:   {work / 'run' / 'curves.png'}" in out  # says where the plot went
    assert (work / "run" / "curves.png").stat().st_size > 0
    return work / "run"


def test_train_into_an_existing_run_names_resume_and_overwrite_in_cli_terms(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "train", "configs/tiny.toml", "--out", "run", "--quiet")
    assert code == 2
    assert f"dinrec train --resume {trained}" in err and "--overwrite" in err
    assert "=True" not in err
    (trained / "mine.txt").write_text("kept")
    code, _, err = run_cli(capsys, "train", "configs/tiny.toml", "--out", "run", "--quiet",
                           "--overwrite")
    assert code == 0, err
    assert (trained / "mine.txt").read_text() == "kept"


def test_an_interrupted_train_says_how_to_resume(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinrec.experiment import runner

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    code, _, err = run_cli(capsys, "train", "configs/tiny.toml", "--out", "run", "--quiet")
    assert code == 130
    assert err.strip() == "dinrec train: interrupted; continue with `dinrec train --resume run`"


def test_data_build_into_an_existing_dataset_says_overwrite_flag(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("data", "build", "--source", "synthetic", "--protocol", "click-log", "--out", "d",
            "--option", "n_users=20", "--no-progress")
    assert run_cli(capsys, *args)[0] == 0
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "pass --overwrite to replace it" in err and "=True" not in err
    assert run_cli(capsys, *args, "--overwrite")[0] == 0


def test_demo_checks_models_first_and_refuses_an_existing_demo(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "demo", "--tiny", "--models", "din,foo", "--out", "d1")
    assert code == 2 and "--models: unknown model variant 'foo'" in err
    assert not (work / "d1").exists()  # nothing built before the check
    tiny = ("demo", "--tiny", "--models", "din", "--quiet", "--out", "d2")
    assert run_cli(capsys, *tiny)[0] == 0
    (work / "d2" / "mine.txt").write_text("kept")
    code, _, err = run_cli(capsys, *tiny)
    assert code == 2 and "already holds a demo" in err and "--overwrite" in err
    code, _, err = run_cli(capsys, *tiny, "--overwrite")
    assert code == 0, err
    assert (work / "d2" / "mine.txt").read_text() == "kept"
    assert (work / "d2" / "din" / "results.json").is_file()


def test_explain_writes_the_heatmap_beside_the_bundle_and_says_where(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.explain import pick_demo_case

    user, candidates = pick_demo_case(load_dataset(trained / "data"), min_per_category=1)
    code, out, err = run_cli(capsys, "explain", str(trained / "model"), "--user", user,
                             "--candidates", ",".join(candidates))
    assert code == 0, err
    expected = trained / f"attention-{user}.png"
    assert expected.stat().st_size > 0
    assert f"wrote {expected}" in out
    assert not list(Path.cwd().glob("attention-*.png"))  # not the working directory


def test_evaluate_warns_on_a_dataset_built_otherwise_and_strict_refuses(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "data", "build", "--source", "synthetic", "--protocol",
                           "click-log", "--maxlen", "8", "--test-fraction", "0.3",
                           "--option", "n_users=80", "--option", "n_items=160",
                           "--option", "n_categories=6", "--option", "mean_impressions=25",
                           "--out", "other", "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, "evaluate", str(trained / "model"), "--data", "other")
    assert code == 0 and "AUC" in out
    assert err.startswith("dinrec evaluate: warning: other was built differently")
    assert "split.test_fraction: trained with 0.2, the dataset has 0.3" in err
    code, _, err = run_cli(capsys, "evaluate", str(trained / "model"), "--data", "other",
                           "--strict")
    assert code == 2 and "dinrec evaluate: error:" in err
    code, _, err = run_cli(capsys, "evaluate", str(trained / "model"), "--data",
                           str(trained / "data"))
    assert code == 0 and err == ""


def test_train_data_refuses_a_dataset_built_otherwise(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = ("data", "build", "--source", "synthetic", "--protocol", "click-log",
             "--option", "n_users=40", "--no-progress")
    assert run_cli(capsys, *build, "--maxlen", "5", "--out", "d5")[0] == 0
    code, _, err = run_cli(capsys, "train", "configs/tiny.toml", "--data", "d5", "--quiet")
    assert code == 2
    assert "--data: dataset" in err and "options.maxlen: 8 expected, the dataset has 5" in err
    assert run_cli(capsys, *build, "--maxlen", "8", "--out", "d8")[0] == 0
    code, _, err = run_cli(capsys, "train", "configs/tiny.toml", "--data", "d8", "--out",
                             "r8", "--quiet")
    assert code == 0, err
    assert not (work / "r8" / "data").exists()  # trained on d8, nothing rebuilt
