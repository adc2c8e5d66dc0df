"""Every TOML in configs/ is a valid experiment (its data path may be absent here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.experiment.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((REPO_ROOT / "configs").glob("*.toml"))


def test_the_four_experiments_are_shipped() -> None:
    assert {p.stem for p in CONFIGS} >= {
        "ml100k-rating", "ml100k-nextitem", "amazon-electronics", "taobao-userbehavior"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_or_names_its_missing_data_path(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as err:
        assert "data.path" in str(err) and "does not exist" in str(err)
        return
    assert config.output.name == path.stem
    assert config.data.path is not None and Path(config.data.path).exists()


@pytest.mark.parametrize("name", ["ml100k-rating", "ml100k-nextitem"])
def test_ml100k_configs_use_the_reference_towers(name: str) -> None:
    try:
        config = load_config(REPO_ROOT / "configs" / f"{name}.toml")
    except ConfigError:
        pytest.skip("../shared/data/ml-100k is absent")
    net = config.model.network
    assert config.model.embedding_dim == 16
    assert (net.att_hidden_size, net.dnn_hidden_units) == ((64, 16), (256, 128))
    assert (config.training.batch_size, config.training.epochs) == (256, 5)
