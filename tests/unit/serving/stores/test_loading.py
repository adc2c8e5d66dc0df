"""`dinrec store load`: a dataset directory -> raw-id histories, profiles and item categories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dinrec.cli.main import main
from dinrec.data.dataset import write_dataset
from dinrec.data.events import EventLog
from dinrec.data.protocols import TimeSplit, build_samples
from dinrec.data.vocabulary import Vocabularies
from dinrec.serving.stores import open_store
from dinrec.serving.stores.loading import load_dataset_into_store


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """u1 rates a..e over time; u2 rates a, b; u3 appears only after the cutoff (test)."""
    rows = [("u1", "a", "x", 1), ("u1", "b", "x", 2), ("u1", "c", "y", 3), ("u1", "d", "y", 4),
            ("u1", "e", "z", 5), ("u2", "a", "x", 1), ("u2", "b", "x", 2), ("u3", "a", "x", 9),
            ("u3", "q", "w", 10)]
    user, item, cate, ts = (np.array(col) for col in zip(*rows, strict=True))
    gender = np.array(["f" if u == "u1" else "m" for u in user])
    gender[user == "u3"] = "n"  # only in test: unknown to the vocabulary
    log = EventLog(user=user, item=item, category=cate, timestamp=ts.astype(np.int64),
                   rating=np.full(len(rows), 5.0, dtype=np.float32), profile={"gender": gender})
    samples = build_samples("rating", log, maxlen=3, split=TimeSplit(cutoff=5))
    vocabs = Vocabularies.fit(samples.fit_values)
    write_dataset(tmp_path / "ds", samples, vocabs)
    return tmp_path / "ds"


def test_latest_history_per_user_is_stored_with_raw_ids(dataset: Path, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    report = load_dataset_into_store(dataset, store)
    record, cats = store.lookup("u1", 10, ["a", "c", "e", "q"])
    # u1's latest sample is e at t=5 (test): its history is the 3 latest earlier events.
    assert [b[:2] for b in record.history] == [("b", "x"), ("c", "y"), ("d", "y")]
    assert {b[3] for b in record.history} == {1.0}  # a dataset holds no behavior weights
    assert record.profile == {"gender": "f"}
    # e and q first appear in the test period: unknown to the vocabulary, so not mapped.
    assert cats == ["x", "y", None, None]
    assert [b[:2] for b in store.lookup("u2", 10, [])[0].history] == [("a", "x")]
    # u3 was never in training: its raw id cannot be recovered from the encoded data.
    assert not store.lookup("u3", 10, [])[0].known
    assert report.skipped_unknown_users == 1
    assert report.users == 2
    store.close()


def test_cli_store_load_then_info(dataset: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["store", "load", str(dataset), "--store", url]) == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["users"] == 2
    assert main(["store", "info", "--store", url]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["users"] == 2 and counts["items"] >= 4


def test_cli_store_load_of_a_missing_dataset_is_one_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["store", "load", str(tmp_path / "nope"), "--store", url]) == 2
    assert "dataset.json is missing" in capsys.readouterr().err
