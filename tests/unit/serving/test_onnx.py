"""ONNX export of the serving forward pass and the ONNX Runtime backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'serve' extra")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")

from tests.support.demo_bundle import DemoSpec, demo_history

from dinrec.cli.main import main
from dinrec.serving.http.app import create_app
from dinrec.serving.onnx_export import DATA_FILE, MODEL_FILE, ONNX_DIR
from dinrec.serving.scorer import Scorer, bundle_version
from dinrec.serving.service import ServeConfig

TOL = 1e-5


@pytest.fixture(scope="module")
def exported(demo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo bundle exported by `dinrec export` (once for the module: ~5 s)."""
    bundle = tmp_path_factory.mktemp("onnx") / "bundle"
    shutil.copytree(demo_bundle, bundle)
    assert main(["export", str(bundle), "--format", "onnx"]) == 0
    return bundle


def test_export_writes_graph_and_separate_weights_inside_the_bundle(exported: Path) -> None:
    folder = exported / ONNX_DIR
    assert (folder / MODEL_FILE).is_file()
    assert (folder / DATA_FILE).stat().st_size > 1000  # the weights live here, not in the graph
    meta = json.loads((folder / "export.json").read_text())
    assert meta["bundle_version"] == bundle_version(exported)
    assert meta["candidate_inputs"] == ["item_id", "cate_id"]
    assert not [p for p in exported.iterdir() if p.name.startswith(".onnx")]  # no temp dirs


def test_onnx_backend_matches_torch_for_rank_and_score(exported: Path, spec: DemoSpec) -> None:
    torch_scorer = Scorer.load(exported)
    onnx_scorer = Scorer.load(exported, backend="onnx")
    assert onnx_scorer.backend.name == "onnx"
    items = [spec.item(i) for i in range(spec.n_items)]
    cats = [spec.category_of(i) for i in items]
    for length in (0, 3, spec.maxlen):
        history = demo_history(spec, 1, length=length)
        user = torch_scorer.encoder.user("u1", {"gender": "m"}, history)
        cands = torch_scorer.encoder.items(items, cats)
        want = torch_scorer.backend.logits(user.arrays, cands)
        got = onnx_scorer.backend.logits(user.arrays, cands)
        assert np.abs(got - want).max() <= TOL
    rows = [{"user_id": f"u{i}", "gender": "f", "item_id": items[i], "cate_id": cats[i],
             "hist_item_id": [h[0] for h in demo_history(spec, i, length=i % 5)],
             "hist_cate_id": [h[1] for h in demo_history(spec, i, length=i % 5)]}
            for i in range(9)]
    user_rows, cand_rows = torch_scorer.encoder.rows(rows)
    want = torch_scorer.backend.logits(user_rows, cand_rows)
    got = onnx_scorer.backend.logits(user_rows, cand_rows)
    assert np.abs(got - want).max() <= TOL


def test_new_weights_under_the_same_manifest_version_make_the_export_stale(
    exported: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported, copy)
    assert json.loads((copy / "manifest.json").read_text())["extra"]["version"] == "v1"
    weights = copy / "weights.safetensors"
    state = {k: v * 2 if v.is_floating_point() else v
             for k, v in load_file(str(weights)).items()}
    save_file(state, str(weights))  # the manifest keeps saying "v1"
    with pytest.raises(ValueError, match="re-run `dinrec export"):
        Scorer.load(copy, backend="onnx")


def test_missing_export_says_how_to_make_one(demo_bundle: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dinrec export"):
        Scorer.load(demo_bundle, backend="onnx")


def test_server_ranks_with_the_onnx_backend(exported: Path, tmp_path: Path) -> None:
    import asyncio

    import httpx

    config = ServeConfig(str(exported), store=f"sqlite:///{tmp_path / 's.db'}", backend="onnx")
    app = create_app(config)
    torch_scores = Scorer.load(exported).rank("u1", ["i1", "i2"], [None, None]).probabilities

    async def call() -> dict[str, object]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            model = (await client.get("/v1/model")).json()
            assert model["backend"] == "onnx"
            response = await client.post("/v1/rank", json={"user_id": "u1",
                                                           "candidates": ["i1", "i2"]})
            assert response.status_code == 200
            return dict(response.json())

    body = asyncio.run(call())
    got = {item["item_id"]: item["score"] for item in body["items"]}  # type: ignore[attr-defined]
    assert abs(got["i1"] - float(torch_scores[0])) <= TOL
    app.state.service.close()


@pytest.mark.parametrize("search", ["topk", "category"])
def test_onnx_export_of_a_searched_history_matches_torch(
    search: str, spec: DemoSpec, tmp_path: Path
) -> None:
    # Exported with a 2-behavior example (below k = 3), scored on histories above k: the
    # first stage must stay a graph of T, not the branch the example took.
    from tests.support.demo_bundle import demo_columns, demo_vocab, spread_weights

    from dinrec.bundle import save_model
    from dinrec.models import DIN
    from dinrec.serving.onnx_export import export_onnx

    vocabs = demo_vocab(spec)
    model = DIN(demo_columns(spec, vocabs), ["item_id", "cate_id"], seed=spec.seed,
                history_search=search, history_search_k=3)
    spread_weights(model, spec.seed)
    bundle = save_model(model.eval(), tmp_path / "b", vocab=vocabs.to_json_dict())
    export_onnx(bundle)
    torch_scorer, onnx_scorer = Scorer.load(bundle), Scorer.load(bundle, backend="onnx")
    items = [spec.item(i) for i in range(spec.n_items)]
    cands = torch_scorer.encoder.items(items, [spec.category_of(i) for i in items])
    for length in (0, 2, spec.maxlen):
        user = torch_scorer.encoder.user("u1", {"gender": "m"}, demo_history(spec, 1, length))
        want = torch_scorer.backend.logits(user.arrays, cands)
        got = onnx_scorer.backend.logits(user.arrays, cands)
        assert np.abs(got - want).max() <= TOL


def test_the_export_check_runs_one_users_rank_call_too(exported: Path) -> None:
    """_check compares ORT with torch on rows of two users and on one user's call: a module
    that is wrong only for one user (the If nodes' other branch) is caught."""
    import torch

    from dinrec.models import load_model
    from dinrec.serving.broadcast import PositionalForward, candidate_inputs, user_inputs
    from dinrec.serving.onnx_export import _check, _example_inputs

    model = load_model(exported)
    users, cands = user_inputs(model.schema), candidate_inputs(model.schema)

    class WrongForOneUser(PositionalForward):
        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out = super().forward(*tensors)
            return out + 1.0 if tensors[0].shape[0] == 1 else out

    example, _ = _example_inputs(model.schema, users, cands)
    _check(PositionalForward(model, users, cands).eval(), exported / ONNX_DIR, example)
    with pytest.raises(RuntimeError, match="differs from torch by 1"):
        _check(WrongForOneUser(model, users, cands).eval(), exported / ONNX_DIR, example)
