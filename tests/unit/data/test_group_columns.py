"""`build_dataset(..., history_groups=...)`: one history per behavior-type group, strictly
earlier events, the latest maxlen, padded with 0, with exact time gaps (log1p hours)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dinrec.cli.data import parse_history_groups
from dinrec.cli.main import UsageError
from dinrec.data.build import build_dataset

# user, item, category, behavior, timestamp (Taobao UserBehavior's columns)
LOG = """\
1,10,100,pv,1000
1,11,100,cart,2000
1,12,101,pv,3000
1,13,101,buy,4000
1,14,100,pv,5000
1,15,101,pv,6000
2,10,100,pv,1500
2,12,101,buy,2500
2,11,100,pv,3500
2,13,101,pv,4500
2,14,100,pv,5500
"""


def _gap(seconds: float) -> float:
    return math.log1p(seconds / 3600)


def _build(tmp_path: Path, **kwargs: object) -> Path:
    csv = tmp_path / "UserBehavior.csv"
    csv.write_text(LOG)
    out = tmp_path / "out"
    build_dataset("taobao", csv, "next-item", out, maxlen=3, **kwargs)  # type: ignore[arg-type]
    return out


def test_groups_hold_only_their_types_strictly_before_each_sample(tmp_path: Path) -> None:
    out = _build(tmp_path, history_groups={"buy": ["buy", "cart"]}, sample_behaviors=["pv"],
                 history_time_gap=True)
    train = pq.read_table(out / "train.parquet").to_pydict()
    test = pq.read_table(out / "test.parquet").to_pydict()
    # Samples are pv events only; their positives at t = 3000, 5000 (user 1), 3500, 4500.
    assert train["timestamp"] == [3000, 3000, 5000, 5000, 3500, 3500, 4500, 4500]
    # Ids encoded: item 10 -> 2, 11 -> 3, 12 -> 4, 13 -> 5, 14 -> 6; padding 0, oldest first.
    assert train["hist_item_id"][::2] == [[2, 0, 0], [2, 4, 0], [2, 0, 0], [2, 3, 0]]
    assert train["buy_hist_item_id"][::2] == [[3, 0, 0], [3, 5, 0], [4, 0, 0], [4, 0, 0]]
    assert train["buy_hist_len"][::2] == [1, 2, 1, 1]
    # user 1 at 5000: the cart at 2000 and the buy at 4000; the pv events never enter "buy".
    assert train["buy_hist_time_gap"][2] == pytest.approx([_gap(3000), _gap(1000), 0.0])
    assert train["hist_time_gap"][2] == pytest.approx([_gap(4000), _gap(2000), 0.0])
    assert test["buy_hist_item_id"][::2] == [[3, 5, 0], [4, 0, 0]]
    assert test["buy_hist_time_gap"][2] == pytest.approx([_gap(3000), 0.0, 0.0])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["history_groups"] == {"buy": ["buy", "cart"]}


@pytest.mark.parametrize(("groups", "said"), [
    ({"buy": ["click"]}, "history group 'buy': unknown behavior type 'click'"),
    ({"b-y": ["buy"]}, "history group name 'b-y' must start with a letter"),
])
def test_a_bad_group_is_refused_naming_it(tmp_path: Path, groups: dict[str, list[str]],
                                          said: str) -> None:
    with pytest.raises(ValueError, match=said):
        _build(tmp_path, history_groups=groups)


def test_history_group_flags_parse_and_refuse_a_repeated_name() -> None:
    assert parse_history_groups(["buy=buy,cart", "fav=fav"]) == {
        "buy": ["buy", "cart"], "fav": ["fav"]}
    with pytest.raises(UsageError, match="'buy' is given twice"):
        parse_history_groups(["buy=buy", "buy=cart"])
    with pytest.raises(UsageError, match="expected NAME=TYPE"):
        parse_history_groups(["buy"])
