"""A model whose weights give NaN / inf scores is never saved, loaded, started or reloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tests.unit.serving.bundles import poisoned_copy
from tests.unit.serving.conftest import plain_columns

from dinrec.cli.main import main
from dinrec.models import DIN
from dinrec.serving.encoding import RequestError
from dinrec.serving.scorer import NonFiniteModelError, Scorer
from dinrec.serving.service import RankingService, ServeConfig


def test_scorer_load_refuses_weights_that_score_nan(demo_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteModelError, match=r"non-finite scores .* on a probe batch"):
        Scorer.load(poisoned_copy(demo_bundle, tmp_path / "nan"))


def test_reload_of_a_nan_bundle_keeps_the_old_model_serving(
    demo_bundle: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    shutil.copytree(demo_bundle, good)
    poisoned_copy(demo_bundle, tmp_path / "nan")
    service = RankingService(ServeConfig(str(good), store=f"sqlite:///{tmp_path / 's.db'}"))
    try:
        before = service.scorer.version
        with pytest.raises(RequestError, match="non-finite scores"):
            service.reload("nan")
        assert service.scorer.version == before
        assert 'dinrec_model_reloads_total{result="failed"} 1' in service.metrics.render()
    finally:
        service.close()


def test_serve_refuses_to_start_on_a_nan_bundle(
    demo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nan = poisoned_copy(demo_bundle, tmp_path / "nan")
    assert main(["serve", str(nan), "--store", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    assert "non-finite scores" in err and "Traceback" not in err


def test_save_refuses_non_finite_weights_and_leaves_the_old_bundle(tmp_path: Path) -> None:
    model = DIN(plain_columns(), ["item_id", "cate_id"])
    target = tmp_path / "bundle"
    model.save(target)
    before = (target / "weights.safetensors").read_bytes()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match=r"weights: .* non-finite value\(s\)"):
        model.save(target)
    assert (target / "weights.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary left behind
