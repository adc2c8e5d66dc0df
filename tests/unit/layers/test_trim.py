"""Per-batch dynamic padding (dinrec.layers.trim): exact widths, and the same logits."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.layers.trim import SequenceGroup, batch_width, sequence_groups, trim_padding
from dinrec.models import DIN


def test_width_by_ids_is_the_last_column_with_an_id_in_any_row() -> None:
    ids = torch.tensor([[0, 4, 0, 0, 0], [1, 0, 2, 0, 0]])  # front padding stays
    assert batch_width({"h": ids}, SequenceGroup(("h",), None)) == 3


def test_width_by_length_ignores_ids_past_the_lengths() -> None:
    batch = {"h": torch.tensor([[7, 7, 7, 7], [7, 7, 7, 7]]), "n": torch.tensor([1, 2])}
    out = trim_padding(batch, (SequenceGroup(("h",), "n"),))
    assert out["h"].tolist() == [[7, 7], [7, 7]]
    assert out["n"] is batch["n"]


def test_all_padding_keeps_one_column_and_groups_cut_together() -> None:
    batch = {"a": torch.zeros(2, 4, dtype=torch.long), "w": torch.ones(2, 4),
             "b": torch.tensor([[1, 2, 3, 0]])}
    out = trim_padding(batch, (SequenceGroup(("a", "w"), None), SequenceGroup(("b",), None)))
    assert out["a"].shape == (2, 1) and out["w"].shape == (2, 1) and out["b"].shape == (1, 3)


def _columns(length_name: str | None) -> list[Any]:
    return [
        SparseFeat("item_id", 20, embedding_dim=4),
        SparseFeat("cate_id", 5, embedding_dim=2),
        VarLenSparseFeat(SparseFeat("tags", 9, embedding_dim=3), maxlen=6, combiner="mean",
                         weight_name="tag_w"),
        VarLenSparseFeat(SparseFeat("hist_item_id", 20, embedding_dim=4,
                                    embedding_name="item_id"), 8, length_name=length_name),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 5, embedding_dim=2,
                                    embedding_name="cate_id"), 8, length_name=length_name),
    ]


@pytest.mark.parametrize("length_name", [None, "seq_length"])
@pytest.mark.parametrize("training", [True, False])
def test_dynamic_padding_gives_the_logits_of_full_padding(
    length_name: str | None, training: bool
) -> None:
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([3, 1, 2, 3])  # the longest is 3 of maxlen 8
    valid = torch.arange(8).unsqueeze(0) < lengths.unsqueeze(1)  # [4, 8]
    inputs = {
        "item_id": torch.randint(1, 20, (4,), generator=gen),
        "cate_id": torch.randint(1, 5, (4,), generator=gen),
        "hist_item_id": torch.randint(1, 20, (4, 8), generator=gen) * valid,
        "hist_cate_id": torch.randint(1, 5, (4, 8), generator=gen) * valid,
        "tags": torch.tensor([[1, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0]] * 2),
        "tag_w": torch.rand(4, 6, generator=gen),
    }
    if length_name is not None:
        inputs["seq_length"] = lengths
    model = DIN(_columns(length_name), ["item_id", "cate_id"], seed=5).train(training)
    with torch.no_grad():
        trimmed = model(inputs)  # forward cuts the lists to 3 (history) and 2 (tags)
        full = model.out(model.mlp(model.features(inputs)))  # the [B, 8] layout throughout
    torch.testing.assert_close(trimmed, full, rtol=1e-6, atol=1e-7)
    assert trim_padding(inputs, model.sequence_groups)["hist_item_id"].shape == (4, 3)
    assert trim_padding(inputs, model.sequence_groups)["tag_w"].shape == (4, 2)


def test_a_history_weight_is_cut_with_its_history() -> None:
    cols = _columns(None)
    cols[3] = VarLenSparseFeat(cols[3].sparsefeat, 8, weight_name="hist_w")
    groups = sequence_groups(DIN(cols, ["item_id", "cate_id"]).schema)
    assert groups[0].columns == ("hist_item_id", "hist_cate_id", "hist_w")
    batch = {"hist_item_id": torch.tensor([[4, 5, 0, 0, 0, 0, 0, 0]]),
             "hist_cate_id": torch.tensor([[1, 2, 0, 0, 0, 0, 0, 0]]),
             "hist_w": torch.tensor([[0.5, 2.0, 5, 5, 5, 5, 5, 5]])}
    assert trim_padding(batch, groups)["hist_w"].tolist() == [[0.5, 2.0]]
