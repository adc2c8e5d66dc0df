"""evaluate_bundle: the runs' own evaluation over every row of a split, grouped by user_key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dinrec.experiment.config import config_from_dict
from dinrec.experiment.runner import run_experiment
from dinrec.experiment.scoring import evaluate_bundle, predict_to_parquet
from dinrec.metrics import auc, gauc, logloss


def test_evaluate_bundle_equals_the_metrics_of_its_written_scores_and_the_runs_test(
    tmp_path: Path, tiny_raw_config: dict, tiny_dataset: Path
) -> None:
    result = run_experiment(config_from_dict(tiny_raw_config), tmp_path / "run", verbose=0)
    bundle = tmp_path / "run" / "model"
    metrics = evaluate_bundle(bundle, tiny_dataset, batch_size=50)
    rows = predict_to_parquet(bundle, tiny_dataset, tmp_path / "s.parquet", batch_size=50)
    table = pq.read_table(tmp_path / "s.parquet")
    y = table["label"].to_numpy().astype(np.float32)
    p, users = table["score"].to_numpy(), table["user_key"].to_numpy()
    # Every row once, GAUC per raw user (user_key), each metric from dinrec.metrics.
    assert metrics == {"auc": auc(y, p), "gauc": gauc(y, p, users), "logloss": logloss(y, p),
                       "samples": float(rows)}
    assert len(np.unique(users)) > 10 and len(np.unique(p)) > 10  # the check compares something
    # The run scored its test split in other batches: equal up to float32 rounding.
    assert result.test == pytest.approx({k: metrics[k] for k in ("auc", "gauc", "logloss")},
                                        abs=1e-6)
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        evaluate_bundle(bundle, tiny_dataset, batch_size=0)

