"""Scorer and FeatureEncoder: raw ids through the vocabulary, checks, and consistent scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.support.demo_bundle import DemoSpec, demo_history

from dinrec.bundle import load_model
from dinrec.serving.encoding import RequestError
from dinrec.serving.scorer import Scorer, bundle_version, sigmoid


@pytest.fixture(scope="module")
def scorer(demo_bundle: Path) -> Scorer:
    return Scorer.load(demo_bundle)


@pytest.fixture(scope="module")
def plain(plain_bundle: Path) -> Scorer:
    return Scorer.load(plain_bundle, user_feature="user")


def _rows(spec: DemoSpec, user: str, items: list[str], history: list[tuple[str, str]],
          gender: str = "f") -> list[dict[str, object]]:
    return [
        {"user_id": user, "gender": gender, "item_id": item, "cate_id": spec.category_of(item),
         "hist_item_id": [h[0] for h in history], "hist_cate_id": [h[1] for h in history]}
        for item in items
    ]


def test_rank_equals_stateless_score_and_the_model_itself(scorer: Scorer, spec: DemoSpec,
                                                         demo_bundle: Path) -> None:
    items = [spec.item(i) for i in range(0, 60, 7)]
    history = demo_history(spec, 2, length=5)
    ranked = scorer.rank("u2", items, [spec.category_of(i) for i in items], history,
                         {"gender": "f"}).probabilities
    scored = scorer.score(_rows(spec, "u2", items, history))
    user, cands = scorer.encoder.rows(_rows(spec, "u2", items, history))
    model = load_model(demo_bundle)
    maxlen = spec.maxlen
    padded = {k: np.pad(v, ((0, 0), (0, maxlen - v.shape[1]))) if v.ndim == 2 else v
              for k, v in user.items()}
    with torch.inference_mode():
        logits = model({k: torch.from_numpy(v) for k, v in {**padded, **cands}.items()})
    want = torch.sigmoid(logits).squeeze(-1).numpy()
    assert np.abs(ranked - scored).max() <= 1e-6
    assert np.abs(ranked - want).max() <= 1e-6


def test_unknown_raw_ids_become_the_unknown_id_not_an_error(scorer: Scorer) -> None:
    user = scorer.encoder.user("nobody", {"gender": "???"}, [("no-such-item", None)])
    assert user.arrays["user_id"].tolist() == [1]
    assert user.arrays["gender"].tolist() == [1]
    assert user.arrays["hist_item_id"].tolist() == [[1]]
    assert user.arrays["hist_cate_id"].tolist() == [[1]]
    items = scorer.encoder.items(["i3", "zzz", 12345], [None, "c9999", "c1"])
    assert items["item_id"][1:].tolist() == [1, 1]
    assert items["cate_id"][:2].tolist() == [1, 1]


def test_only_the_latest_maxlen_behaviors_are_used(scorer: Scorer, spec: DemoSpec) -> None:
    history = demo_history(spec, 4, length=spec.maxlen + 5)
    encoded = scorer.encoder.user("u4", {}, history).arrays["hist_item_id"]
    latest = scorer.encoder.user("u4", {}, history[-spec.maxlen:]).arrays["hist_item_id"]
    assert encoded.shape == (1, spec.maxlen)
    assert encoded.tolist() == latest.tolist()


def test_history_is_cut_to_the_longest_valid_one_and_padded_with_zero(scorer: Scorer) -> None:
    user, _ = scorer.encoder.rows([
        {"user_id": "u1", "gender": "f", "item_id": "i1", "cate_id": "c1",
         "hist_item_id": ["i1", "i2", "i3"], "hist_cate_id": ["c1", "c2", "c3"]},
        {"user_id": "u2", "gender": "m", "item_id": "i1", "cate_id": "c1",
         "hist_item_id": ["i4"], "hist_cate_id": ["c4"]},
    ])
    assert user["hist_item_id"].shape == (2, 3)
    assert user["hist_item_id"][1, 1:].tolist() == [0, 0]


def test_absent_profile_values_are_defaulted_and_reported(scorer: Scorer) -> None:
    result = scorer.rank("u1", ["i1"], ["c1"], [], {})
    assert result.defaulted == ("gender",)
    assert scorer.rank("u1", ["i1"], ["c1"], [], {"gender": "m"}).defaulted == ()


def test_unknown_profile_feature_is_a_request_error_naming_it(scorer: Scorer) -> None:
    with pytest.raises(RequestError) as err:
        scorer.rank("u1", ["i1"], ["c1"], [], {"age": 3})
    assert err.value.field == "profile.age"


def test_score_rows_name_a_missing_or_unknown_feature(scorer: Scorer) -> None:
    row = {"user_id": "u1", "gender": "f", "item_id": "i1", "cate_id": "c1",
           "hist_item_id": ["i2"], "hist_cate_id": ["c2"]}
    with pytest.raises(RequestError, match=r"rows\[1\]\.gender: missing"):
        scorer.score([row, {k: v for k, v in row.items() if k != "gender"}])
    with pytest.raises(RequestError, match=r"rows\[0\]\.colour"):
        scorer.score([{**row, "colour": "red"}])
    with pytest.raises(RequestError, match=r"rows\[0\]\.hist_cate_id"):
        scorer.score([{**row, "hist_cate_id": ["c1", "c2"]}])
    with pytest.raises(RequestError, match=r"rows\[0\]\.item_id: expected one id"):
        scorer.score([{**row, "item_id": ["i1"]}])


def test_without_vocabulary_ids_are_range_checked_ints(plain: Scorer) -> None:
    row = {"user": 1, "gender": 0, "item_id": 3, "cate_id": 2, "pay_score": 0.5,
           "hist_item_id": [1, 2], "hist_cate_id": [1, 2]}
    assert plain.score([row]).shape == (1,)
    with pytest.raises(RequestError) as err:
        plain.score([row, {**row, "item_id": 4}])
    assert err.value.field == "rows[1].item_id"
    assert "[0, 4)" in err.value.message
    with pytest.raises(RequestError, match="encoded integers"):
        plain.rank(1, ["abc"], [1])
    with pytest.raises(RequestError, match=r"candidates\[1\]"):
        plain.rank(1, [2, 17], [1, 1])
    with pytest.raises(RequestError, match=r"rows\[0\]\.pay_score"):
        plain.score([{**row, "pay_score": "high"}])


def test_without_vocabulary_length_input_is_derived_from_the_history(plain: Scorer) -> None:
    user = plain.encoder.user(1, {"gender": 1, "pay_score": 0.2}, [(1, 1), (3, 2)])
    assert user.arrays["seq_length"].tolist() == [2]
    scores = plain.rank(1, [0, 1, 2, 3], [0, 1, 2, 1], [(1, 1), (3, 2)],
                        {"gender": 1, "pay_score": 0.2})
    assert np.isfinite(scores.probabilities).all()


def test_version_is_a_content_digest_even_when_the_manifest_names_one(
    demo_bundle: Path, plain_bundle: Path, tmp_path: Path
) -> None:
    assert len(bundle_version(demo_bundle)) == 12  # its manifest says "v1": only a label
    relabelled = tmp_path / "relabelled"
    shutil.copytree(demo_bundle, relabelled)
    weights = relabelled / "weights.safetensors"
    state = load_file(str(weights))
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(weights))
    assert bundle_version(relabelled) != bundle_version(demo_bundle)  # same label, new weights
    copy = tmp_path / "copy"
    shutil.copytree(plain_bundle, copy)
    assert bundle_version(copy) == bundle_version(plain_bundle)
    assert len(bundle_version(copy)) == 12
    (copy / "model_config.json").write_text(
        (copy / "model_config.json").read_text().replace('"seed": 1024', '"seed": 7')
    )
    assert bundle_version(copy) != bundle_version(plain_bundle)


def test_describe_lists_features_roles_and_version(scorer: Scorer) -> None:
    info = scorer.describe()
    assert info["version"] == bundle_version(scorer.info.path)
    assert info["label"] == "v1"
    assert info["roles"]["candidate"] == ("item_id",)
    assert info["roles"]["profile"] == ["gender"]
    names = {f["name"]: f for f in info["features"]}
    assert names["hist_item_id"]["raw_ids"] is True
    assert names["hist_item_id"]["maxlen"] == 8


def test_sigmoid_is_stable_for_large_logits() -> None:
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    assert out.tolist() == [0.0, 0.5, 1.0]


def test_unknown_backend_is_rejected(demo_bundle: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        Scorer.load(demo_bundle, backend="tensorflow")
