from __future__ import annotations

import pytest

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.schema import FeatureSchema


def test_shared_tables_resolve_to_largest_vocabulary(seed_data):
    _, _, cols, hist = seed_data
    schema = FeatureSchema.resolve(cols, hist)
    assert set(schema.tables) == {"user", "gender", "item_id", "cate_id"}
    assert schema.tables["item_id"].features == ("item_id", "hist_item_id")
    assert schema.query_dim == 12
    # sparse 10+4+8+4, interest 12, dense 1
    assert schema.mlp_input_dim() == 26 + 12 + 1
    assert schema.history_length_name == "seq_length"


def test_dim_conflict_warns_naming_both_and_the_last_wins_as_in_deepctr():
    cols = [
        VarLenSparseFeat(
            SparseFeat("hist_cate_id", 3, embedding_dim=3, embedding_name="cate_id"), 4
        ),
        SparseFeat("cate_id", 5, embedding_dim=4),
    ]
    # DeepCTR builds SparseFeats first, then VarLenSparseFeats: hist_cate_id is last.
    with pytest.warns(UserWarning, match="different vocabulary_size"), \
            pytest.warns(UserWarning, match="'cate_id'.*'hist_cate_id'.*embedding_dim 3"):
        schema = FeatureSchema.resolve(cols, ["cate_id"])
    assert schema.tables["cate_id"].dim == 3
    assert schema.tables["cate_id"].num_embeddings == 5
    assert schema.tables["cate_id"].settings_from == "hist_cate_id"
    assert schema.query_dim == 3


def test_schema_saved_without_its_rules_reads_back_with_the_first_dim():
    cols = [
        SparseFeat("cate_id", 5, embedding_dim=4),
        VarLenSparseFeat(
            SparseFeat("hist_cate_id", 3, embedding_dim=3, embedding_name="cate_id"), 4
        ),
    ]
    with pytest.warns(UserWarning):
        data = FeatureSchema.resolve(cols, ["cate_id"]).to_dict()
    assert (data["id_hash"], data["shared_tables"]) == ("fnv1a64-table", "deepctr-last")
    old = {k: v for k, v in data.items() if k in ("columns", "history_feature_list")}
    legacy = FeatureSchema.from_dict(old)
    assert legacy.tables["cate_id"].dim == 4
    assert (legacy.id_hash, legacy.table_rule) == ("blake2b-column", "first-declared")
    assert FeatureSchema.from_dict(data).tables["cate_id"].dim == 3


def test_missing_history_sequence_is_named():
    with pytest.raises(ValueError, match="'hist_item_id'"):
        FeatureSchema.resolve([SparseFeat("item_id", 3)], ["item_id"])


def test_missing_candidate_is_named():
    cols = [VarLenSparseFeat(SparseFeat("hist_item_id", 3), 2)]
    with pytest.raises(ValueError, match="SparseFeat named 'item_id'"):
        FeatureSchema.resolve(cols, ["item_id"])


def test_duplicate_column_is_named():
    with pytest.raises(ValueError, match="'a' is declared twice"):
        FeatureSchema.resolve([SparseFeat("a", 2), SparseFeat("a", 3)], [])


def test_schema_round_trips(seed_data):
    _, _, cols, hist = seed_data
    schema = FeatureSchema.resolve(cols, hist)
    again = FeatureSchema.from_dict(schema.to_dict())
    assert again.tables == schema.tables
    assert again.history_feature_list == schema.history_feature_list


def _weighted_schema() -> FeatureSchema:
    cols = [SparseFeat("item", 10, 4),
            VarLenSparseFeat(SparseFeat("hist_item", 10, 4, embedding_name="item"), maxlen=3,
                             weight_name="hist_w", weight_norm=False)]
    return FeatureSchema.resolve(cols, ["item"])


def test_a_weighted_history_round_trips_with_its_weights() -> None:
    data = _weighted_schema().to_dict()
    assert data["history_weights"] == "used"
    back = FeatureSchema.from_dict(data)
    assert back.column("hist_item").weight_name == "hist_w"  # type: ignore[union-attr]
    assert "history_weights" not in FeatureSchema.resolve(
        [SparseFeat("item", 10, 4)], []).to_dict()


def test_a_schema_saved_when_history_weights_were_ignored_keeps_them_unused() -> None:
    data = _weighted_schema().to_dict()
    del data["history_weights"]  # what a bundle saved before they were used holds
    with pytest.warns(UserWarning, match=r"'hist_item'.*stay unused"):
        back = FeatureSchema.from_dict(data)
    assert back.column("hist_item").weight_name is None  # type: ignore[union-attr]
    assert "history_weights" not in back.to_dict()  # and saves again as it trains: unweighted
