"""explain_user: the weights are model.interest()'s for the user's history, ids are raw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dinrec.data.dataset import load_dataset
from dinrec.experiment.config import config_from_dict
from dinrec.experiment.explain import explain_user, pick_demo_case, user_history
from dinrec.experiment.runner import build_experiment_model
from dinrec.inputs import prepare_inputs


@pytest.fixture
def setup(tiny_dataset: Path, tiny_raw_config: dict):
    dataset = load_dataset(tiny_dataset)
    model = build_experiment_model(config_from_dict(tiny_raw_config), dataset)
    return model, dataset, dataset.vocabularies().to_json_dict()


def test_weights_are_the_attention_of_the_valid_behaviors(setup) -> None:
    model, dataset, vocab = setup
    user, candidates = pick_demo_case(dataset, min_per_category=1)
    ex = explain_user(model, vocab, dataset, user, candidates)
    x = user_history(dataset, user)
    n_valid = int(x["hist_len"][0])
    assert ex.weights.shape == (2, n_valid) and len(ex.behaviors) == n_valid
    items = dataset.vocabularies()["item_id"]
    assert [b[0] for b in ex.behaviors] == items.decode(x["hist_item_id"][0][:n_valid]).tolist()
    # recompute the first candidate by hand
    batch = dict(x)
    batch["item_id"] = items.encode(np.array([candidates[0]]))
    batch["cate_id"] = dataset.vocabularies()["cate_id"].encode(np.array([ex.candidates[0][1]]))
    model.eval()
    with torch.no_grad():
        _, weights = model.interest(prepare_inputs(model.schema, batch))
    np.testing.assert_allclose(ex.weights[0], weights[0, :n_valid].numpy(), rtol=1e-6)
    assert ex.attention and 0.0 < ex.scores[0] < 1.0


def test_demo_case_picks_candidates_from_two_history_categories(setup) -> None:
    _, dataset, _ = setup
    user, candidates = pick_demo_case(dataset, min_per_category=1)
    ex = explain_user(setup[0], setup[2], dataset, user, candidates)
    history_categories = {c for _, c in ex.behaviors}
    cand_categories = [c for _, c in ex.candidates]
    assert len(set(cand_categories)) == 2 and set(cand_categories) <= history_categories


def test_table_has_one_row_per_behavior_and_a_score_row(setup) -> None:
    model, dataset, vocab = setup
    user, candidates = pick_demo_case(dataset, min_per_category=1)
    table = explain_user(model, vocab, dataset, user, candidates).format_table().splitlines()
    n_valid = int(user_history(dataset, user)["hist_len"][0])
    assert len(table) == 2 + n_valid + 1
    assert table[0].startswith(f"user {user}: {n_valid} past behaviors")


def test_unknown_candidate_and_user_are_named(setup) -> None:
    model, dataset, vocab = setup
    user, _ = pick_demo_case(dataset, min_per_category=1)
    with pytest.raises(ValueError, match="candidate item 'nope'"):
        explain_user(model, vocab, dataset, user, ["nope"])
    with pytest.raises(ValueError, match="user 'nobody'"):
        explain_user(model, vocab, dataset, "nobody", ["i1"])
