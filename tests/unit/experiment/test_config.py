"""ExperimentConfig: keys, types, paths and overrides are checked; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.experiment.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)

SYNTHETIC = {"source": "synthetic", "protocol": "click-log"}


def make(**sections) -> ExperimentConfig:
    return config_from_dict({"data": dict(SYNTHETIC), **sections})


def error_of(**sections) -> str:
    with pytest.raises(ConfigError) as info:
        make(**sections)
    return str(info.value)


def test_defaults_are_the_reference_training_setup() -> None:
    config = make()
    assert (config.training.epochs, config.training.batch_size) == (5, 256)
    assert config.training.learning_rate == 1e-3
    assert config.model.embedding_dim == 16
    assert config.model.network.seed == config.training.seed


def test_unknown_key_is_named_with_the_valid_keys() -> None:
    message = error_of(training={"epoch": 3})
    assert "unknown key training.epoch" in message and "epochs" in message


def test_unknown_model_key_is_named() -> None:
    assert "unknown key model.hidden" in error_of(model={"hidden": [8]})


def test_model_seed_is_refused_in_favour_of_training_seed() -> None:
    assert "training.seed" in error_of(model={"seed": 3})


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[optim\]"):
        config_from_dict({"data": dict(SYNTHETIC), "optim": {}})


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"training": {"epochs": "3"}}, "training.epochs must be an integer, got str '3'"),
        ({"training": {"epochs": 2.5}}, "training.epochs must be an integer"),
        ({"training": {"epochs": True}}, "training.epochs must be an integer"),
        ({"output": {"plots": "yes"}}, "output.plots must be true/false"),
        ({"model": {"dnn_hidden_units": 64}}, "model.dnn_hidden_units must be a list"),
        ({"model": {"dnn_hidden_units": [64, "a"]}}, "model.dnn_hidden_units[1] must be an"),
        ({"data": {**SYNTHETIC, "reader_options": 3}}, "data.reader_options must be a table"),
    ],
)
def test_wrong_type_is_named(sections, needle) -> None:
    raw = {"data": dict(SYNTHETIC), **sections}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert needle in str(info.value)


def test_int_is_accepted_where_a_float_is_expected() -> None:
    assert make(training={"learning_rate": 1}).training.learning_rate == 1.0


def test_missing_dataset_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.dataset: .*nope does not exist"):
        config_from_dict({"data": {"dataset": str(tmp_path / "nope")}})


def test_missing_raw_path_is_named(tmp_path: Path) -> None:
    raw = {"data": {"source": "movielens", "protocol": "rating", "path": "ml"}}
    with pytest.raises(ConfigError, match=r"data\.path: .*ml does not exist"):
        config_from_dict(raw, base_dir=tmp_path)


def test_data_needs_exactly_one_of_dataset_and_source() -> None:
    with pytest.raises(ConfigError, match=r"exactly one of data\.dataset"):
        config_from_dict({})


def test_unknown_reader_option_is_named() -> None:
    message = error_of(data={**SYNTHETIC, "reader_options": {"n_user": 5}})
    assert "data.reader_options.n_user" in message and "n_users" in message


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"training": {"epochs": 0}}, "training.epochs must be >= 1"),
        ({"training": {"validation_fraction": 1.0}}, "training.validation_fraction"),
        ({"training": {"monitor": "gauc"}}, "training.monitor must be one of"),
        ({"training": {"optimizer": "lion"}}, "training.optimizer"),
        ({"training": {"ema_momentum": 1.0}}, "training.ema_momentum must be in [0, 1)"),
        ({"training": {"ema_momentum": -0.5}}, "training.ema_momentum must be in [0, 1)"),
        ({"model": {"att_activation": "swish"}}, "att_activation"),
    ],
)
def test_bad_values_are_named(sections, needle) -> None:
    assert needle in error_of(**sections)


def test_embedding_mlp_defaults_to_sum_pooling() -> None:
    config = make(model={"model": "EmbeddingMLP"})
    assert config.model.network.history_pooling == "sum"


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("")
    raw = {"data": {"source": "table", "protocol": "click-log", "path": "log.csv"},
           "output": {"dir": "runs/a"}}
    config = config_from_dict(raw, base_dir=tmp_path)
    assert config.data.path == str(tmp_path / "log.csv")
    assert config.output.dir == str(tmp_path / "runs" / "a")


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("training.epochs=3", ["training", "epochs"], 3),
        ("training.learning_rate=1e-2", ["training", "learning_rate"], 0.01),
        ("model.att_activation=dice", ["model", "att_activation"], "dice"),
        ('model.att_activation="prelu"', ["model", "att_activation"], "prelu"),
        ("model.dnn_hidden_units=[64, 32]", ["model", "dnn_hidden_units"], [64, 32]),
        ("output.plots=false", ["output", "plots"], False),
        ("data.protocol_options.threshold=3.5", ["data", "protocol_options", "threshold"], 3.5),
    ],
)
def test_override_values_are_toml_literals_or_bare_strings(text, parts, value) -> None:
    assert parse_override(text) == (parts, value)


@pytest.mark.parametrize("text", ["epochs=3", "training.epochs", ".epochs=3"])
def test_malformed_override_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override(text)


def test_override_into_a_nested_table_keeps_its_other_keys() -> None:
    raw = {"data": {"protocol_options": {"threshold": 4.0, "history": "all"}}}
    out = apply_overrides(raw, ["data.protocol_options.threshold=3.0"])
    assert out["data"]["protocol_options"] == {"threshold": 3.0, "history": "all"}
    assert raw["data"]["protocol_options"]["threshold"] == 4.0  # the input is not changed


def test_dumped_config_loads_back_equal(tmp_path: Path) -> None:
    config = make(model={"dnn_hidden_units": [64, 32], "mba_lambda": 0.05},
                  data={**SYNTHETIC, "reader_options": {"n_users": 50}, "split": {
                      "test_fraction": 0.25}},
                  output={"name": 'quote "and" slash \\'})
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_load_config_names_the_file_and_applies_variant_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\nsource = "synthetic"\nprotocol = "click-log"\n'
                    '[model]\ndnn_hidden_units = [8]\n')
    config = load_config(path, ["model.dnn_activation=relu"], variant="base")
    net = config.model.network
    assert (net.model, net.history_pooling, net.dnn_activation) == ("EmbeddingMLP", "sum", "relu")
    assert net.dnn_hidden_units == (8,)
    assert config.output.name == "Base Model"
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key training\.x"):
        load_config(path, ["training.x=1"])
    with pytest.raises(ConfigError, match="unknown model variant 'dien'"):
        load_config(path, variant="dien")


def test_missing_or_invalid_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)


def test_toml_writer_round_trips_values() -> None:
    from dinrec.experiment.config.toml_writer import dumps_toml

    tables = {"t": {"s": 'a "q" \\ é', "i": -3, "f": 1e-06, "b": True, "l": [1, 2],
                    "d": {"x": {"y": "z"}, "key with space": 1.5}, "none": None}}
    from dinrec.experiment.config import parse as config_module  # its tomllib (tomli on 3.10)

    loaded = config_module.tomllib.loads(dumps_toml(tables))
    del tables["t"]["none"]
    assert loaded == tables


def test_paths_in_a_file_resolve_against_the_file_and_set_paths_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.csv").write_text("")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.csv").write_text("")
    path = tmp_path / "configs" / "c.toml"
    path.write_text('[data]\nsource = "table"\nprotocol = "click-log"\n'
                    'path = "../logs/a.csv"\n[output]\ndir = "../runs/x"\n')
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(path)
    assert config.data.path == str(tmp_path / "logs" / "a.csv")
    assert config.output.dir == str(tmp_path / "runs" / "x")
    config = load_config(path, ["data.path=b.csv"])
    assert config.data.path == str(tmp_path / "elsewhere" / "b.csv")


def test_the_shipped_config_finds_its_data_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path(__file__).resolve().parents[3]
    expected = (repo / ".." / "shared" / "data" / "ml-100k").resolve()
    if not expected.is_dir():
        pytest.skip("../shared/data/ml-100k is absent")
    monkeypatch.chdir(tmp_path)
    config = load_config(repo / "configs" / "ml100k-rating.toml")
    assert config.data.path == str(expected)


# ----- [distributed] ---------------------------------------------------------------------
# What TorchRec's sharded tables take: dims of 4k, no embedding regularization.
TORCHREC_MODEL = {"embedding_dim": 8, "embedding_regularization": "l2", "l2_reg_embedding": 0.0}


def test_defaults_are_ddp_with_synchronised_dice_and_bucketed_mba_ids() -> None:
    d = make().distributed
    assert (d.embeddings, d.sharding, d.sync_dice_stats, d.mba_ids, d.bucket_cap_mb) == (
        "ddp", "auto", True, "auto", 0.0)


def test_the_section_round_trips_through_toml(tmp_path) -> None:
    config = make(distributed={"embeddings": "torchrec", "sharding": "row_wise"},
                  model=TORCHREC_MODEL, training={"optimizer": "sgd"})
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path).distributed == config.distributed


@pytest.mark.parametrize(("section", "needle"), [
    ({"embeddings": "fsdp"}, "distributed.embeddings must be one of ddp, torchrec"),
    ({"sharding": "column_wise", "embeddings": "torchrec"}, "distributed.sharding must be one of"),
    ({"mba_ids": "broadcast"}, "distributed.mba_ids must be one of auto, bucket, gather"),
    ({"bucket_cap_mb": -1}, "distributed.bucket_cap_mb must be >= 0"),
    ({"sync_dice_stats": "no"}, "distributed.sync_dice_stats must be true/false"),
    ({"shards": 2}, "unknown key distributed.shards"),
    ({"sharding": "row_wise"}, "needs distributed.embeddings = 'torchrec'"),
])
def test_bad_distributed_values_are_named(section, needle) -> None:
    assert needle in error_of(distributed=section)


@pytest.mark.parametrize(("model", "training", "needle"), [
    ({**TORCHREC_MODEL, "embedding_dim": 18}, {}, "model.embedding_dim a multiple of 4"),
    ({"embedding_dim": 8}, {}, "takes no embedding regularization"),  # MBA, the default
    ({"embedding_dim": 8, "embedding_regularization": "l2"}, {},
     "takes no embedding regularization"),  # DeepCTR's full-table L2
    ({**TORCHREC_MODEL, "sparse_embeddings": True}, {}, "model.sparse_embeddings"),
    (TORCHREC_MODEL, {"optimizer": "rmsprop"}, "training.optimizer must be one of sgd, "
     "adagrad, adam"),
    (TORCHREC_MODEL, {"optimizer": "adam"}, "FBGEMM's CPU kernels fuse sgd and adagrad only"),
])
def test_torchrec_refuses_what_sharded_tables_cannot_take(model, training, needle) -> None:
    message = error_of(distributed={"embeddings": "torchrec"}, model=model, training=training)
    assert needle in message
    assert "distributed.embeddings = 'torchrec'" in message


def test_torchrec_takes_dims_of_4k_without_embedding_regularization() -> None:
    config = make(distributed={"embeddings": "torchrec", "sharding": "table_wise"},
                  model=TORCHREC_MODEL, training={"optimizer": "adagrad"})
    assert (config.distributed.embeddings, config.distributed.sharding) == ("torchrec",
                                                                            "table_wise")
