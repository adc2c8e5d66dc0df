"""Serving a history with weight_name: the broadcast pass, the encoder and the ONNX export
weigh each behavior as model(inputs) does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.support.broadcast_parity import broadcast_max_diff
from tests.support.demo_bundle import spread_weights

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.models import DIN, EmbeddingMLP
from dinrec.serving.broadcast import BroadcastForward, user_inputs
from dinrec.serving.encoding import FeatureEncoder
from dinrec.serving.id_codec import RequestError

TOL = 1e-5


def _columns(weight_norm: bool = False) -> list[Any]:
    return [
        SparseFeat("user_id", 10, embedding_dim=4),
        SparseFeat("item_id", 30, embedding_dim=8),
        SparseFeat("cate_id", 5, embedding_dim=4),
        VarLenSparseFeat(SparseFeat("hist_item_id", 30, embedding_dim=8,
                                    embedding_name="item_id"), 6,
                         weight_name="hist_w", weight_norm=weight_norm),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 5, embedding_dim=4,
                                    embedding_name="cate_id"), 6),
    ]


def _model(cls: Any = DIN, weight_norm: bool = False, **kwargs: Any) -> Any:
    model = cls(_columns(weight_norm), ["item_id", "cate_id"], **kwargs)
    spread_weights(model, seed=2)
    return model.eval()


def _user(length: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(length)
    hist = torch.zeros(1, 6, dtype=torch.long)
    hist[0, :length] = torch.randint(1, 30, (length,), generator=gen)
    cate = torch.where(hist > 0, hist % 4 + 1, 0)
    weights = torch.full((1, 6), 5.0)  # padding's weight must not matter
    weights[0, :length] = torch.rand(length, generator=gen) * 3
    return {"user_id": torch.tensor([3]), "hist_item_id": hist, "hist_cate_id": cate,
            "hist_w": weights}


CANDS = {"item_id": torch.tensor([1, 7, 12, 20, 29]), "cate_id": torch.tensor([1, 2, 3, 4, 0])}


def _max_diff(model: Any, user: dict[str, torch.Tensor],
              row_user: torch.Tensor | None = None) -> float:
    return broadcast_max_diff(model, user, CANDS, row_user)


def test_the_weight_is_a_user_input_of_the_serving_pass():
    assert "hist_w" in user_inputs(_model().schema)


@pytest.mark.parametrize("length", [1, 4, 6])
@pytest.mark.parametrize("kwargs", [{}, {"att_weight_normalization": True},
                                    {"weight_norm": True}])
def test_one_user_broadcast_matches_the_model_on_weighted_inputs(length, kwargs):
    assert _max_diff(_model(**kwargs), _user(length)) <= TOL


def test_gathered_rows_and_search_match_the_model_on_weighted_inputs():
    row_user = torch.zeros(len(CANDS["item_id"]), dtype=torch.long)
    assert _max_diff(_model(), _user(5), row_user) <= TOL
    searched = _model(history_search="topk", history_search_k=2, weight_norm=True)
    assert _max_diff(searched, _user(6)) <= TOL


def test_the_base_model_broadcast_matches_on_weighted_inputs():
    assert _max_diff(_model(EmbeddingMLP), _user(4)) <= TOL


def test_the_serving_weights_change_the_scores():
    model = _model()
    user = _user(4)
    with torch.inference_mode():
        weighted = BroadcastForward(model)(user, CANDS)
        ones = BroadcastForward(model)({**user, "hist_w": torch.ones(1, 6)}, CANDS)
    assert float((weighted - ones).abs().max()) > 1e-3


def test_score_rows_carry_history_weights_defaulting_to_one():
    encoder = FeatureEncoder(_model().schema, None)
    row = {"user_id": 3, "item_id": 4, "cate_id": 1, "hist_item_id": [5, 6, 7],
           "hist_cate_id": [1, 2, 3]}
    user, _ = encoder.rows([{**row, "hist_w": [0.5, 2, 1]}, row])
    np.testing.assert_array_equal(user["hist_w"], np.array([[0.5, 2, 1], [1, 1, 1]],
                                                           dtype=np.float32))
    # Beyond maxlen the most recent behaviors and their weights are kept together.
    long = {**row, "hist_item_id": list(range(1, 9)), "hist_cate_id": [1] * 8,
            "hist_w": [float(i) for i in range(8)]}
    user, _ = encoder.rows([long])
    assert user["hist_w"].tolist() == [[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    assert user["hist_item_id"].tolist() == [[3, 4, 5, 6, 7, 8]]


@pytest.mark.parametrize(("value", "message"), [
    ([1.0, 2.0], r"expected 3 number\(s\), got 2"),
    ([1.0, "x", 2.0], r"expected finite numbers"),
    (1.0, r"expected a list"),
])
def test_bad_history_weights_are_errors_naming_the_row_and_input(value, message):
    encoder = FeatureEncoder(_model().schema, None)
    row = {"user_id": 3, "item_id": 4, "cate_id": 1, "hist_item_id": [5, 6, 7],
           "hist_cate_id": [1, 2, 3], "hist_w": value}
    with pytest.raises(RequestError, match=message) as err:
        encoder.rows([row])
    assert err.value.field == "rows[0].hist_w"


def test_onnx_export_of_a_weighted_history_matches_torch(tmp_path: Path):
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'serve' extra")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    from dinrec.serving.onnx_export import OnnxBackend, export_onnx
    from dinrec.serving.scorer import bundle_version

    model = _model()
    model.save(tmp_path / "bundle")
    export_onnx(tmp_path / "bundle")
    backend = OnnxBackend(tmp_path / "bundle", bundle_version(tmp_path / "bundle"))
    assert "hist_w" in backend.inputs
    for length in (1, 4):
        user = {k: v[:, :length].numpy() if v.dim() == 2 else v.numpy()
                for k, v in _user(length).items()}
        cands = {k: v.numpy() for k, v in CANDS.items()}
        with torch.inference_mode():
            want = BroadcastForward(model)({k: torch.from_numpy(v) for k, v in user.items()},
                                           CANDS).numpy()
        assert np.abs(backend.logits(user, cands) - want).max() <= TOL


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_weighted_bundle_scores_rows_and_ranks_as_the_model(tmp_path: Path, backend: str):
    if backend == "onnx":
        pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'serve' extra")
        pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    from dinrec.serving.scorer import Scorer

    model = _model()
    model.save(tmp_path / "bundle")
    if backend == "onnx":
        from dinrec.serving.onnx_export import export_onnx

        export_onnx(tmp_path / "bundle")
    scorer = Scorer.load(tmp_path / "bundle", backend=backend)
    row = {"user_id": 3, "item_id": 4, "cate_id": 1, "hist_item_id": [5, 6, 7],
           "hist_cate_id": [1, 2, 3]}
    x = {"user_id": np.array([3, 3]), "item_id": np.array([4, 4]), "cate_id": np.array([1, 1]),
         "hist_item_id": np.array([[5, 6, 7, 0, 0, 0]] * 2),
         "hist_cate_id": np.array([[1, 2, 3, 0, 0, 0]] * 2),
         "hist_w": np.array([[0.5, 2, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=np.float32)}
    want = model.predict(x)[:, 0]
    assert abs(want[0] - want[1]) > 1e-4  # the weights change the score
    got = scorer.score([{**row, "hist_w": [0.5, 2, 1]}, row])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Behaviors without a weight weigh 1.0 (stored ones: tests/unit/serving/
    # test_weighted_store_serving.py).
    ranked = scorer.rank(3, [4], [1], history=[(5, 1), (6, 2), (7, 3)])
    np.testing.assert_allclose(ranked.probabilities, want[1:], atol=1e-5)
