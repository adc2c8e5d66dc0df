"""DeepCTR's tutorial DIN example, exactly as written, trains, prints and predicts."""

from __future__ import annotations

import re
import runpy
import warnings

import numpy as np
import pytest

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.models import DIN

from .conftest import EXAMPLES


def test_the_tutorial_columns_are_the_issue_s(tutorial):
    x, _, cols, hist = tutorial
    assert cols[0] == SparseFeat("item_id", vocabulary_size=3, embedding_dim=8)
    assert cols[1] == SparseFeat("cate_id", vocabulary_size=2, embedding_dim=4)
    assert cols[3] == VarLenSparseFeat(
        SparseFeat("hist_cate_id", 3, embedding_dim=3, embedding_name="cate_id"), maxlen=4
    )
    assert x["item_id"].tolist() == [1, 2, 3] and "seq_length" not in x
    assert hist == ["item_id", "cate_id"]


def test_tables_follow_deepctr_and_the_warnings_name_the_columns(tutorial):
    _, _, cols, hist = tutorial
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = DIN(cols, hist)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3
    assert any("'item_id' (vocabulary_size 3), 'hist_item_id' (vocabulary_size 4)" in m
               for m in messages)
    assert any("'cate_id' (embedding_dim 4), 'hist_cate_id' (embedding_dim 3)" in m
               for m in messages)
    assert {name: (t.num_embeddings, t.dim) for name, t in model.schema.tables.items()} == {
        "item_id": (4, 8), "cate_id": (3, 3)
    }
    assert model.schema.query_dim == 8 + 3
    assert tuple(model.embeddings.table("cate_id").weight.shape) == (3, 3)


def test_the_example_trains_ten_epochs_verbosely_and_predicts(tutorial, capsys):
    x, y, cols, hist = tutorial
    with pytest.warns(UserWarning):
        model = DIN(cols, hist)
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    history = model.fit(x, y, verbose=1, epochs=10)
    out = capsys.readouterr().out
    lines = re.findall(r"^Epoch (\d+)/10 - .* - loss: ([\d.]+) - binary_crossentropy: ([\d.]+)$",
                       out, flags=re.M)
    assert [int(n) for n, _, _ in lines] == list(range(1, 11))
    assert history.epoch == list(range(10))
    losses = history.history["loss"]
    assert len(losses) == 10 and losses[-1] < losses[0]
    probs = model.predict(x)
    assert probs.shape == (3, 1) and probs.dtype == np.float32
    assert np.all((probs > 0) & (probs < 1))


def test_an_id_beyond_the_shared_table_is_still_refused(tutorial):
    x, _y, cols, hist = tutorial
    with pytest.warns(UserWarning):
        model = DIN(cols, hist)
    with pytest.raises(ValueError, match=r"'item_id': id 4 is outside its table 'item_id' "
                                         r"\[0, 4\)"):
        model.predict({**x, "item_id": np.array([1, 2, 4])})


def test_the_example_file_runs_as_a_script(capsys):
    with pytest.warns(UserWarning):
        runpy.run_path(str(EXAMPLES / "deepctr_din_shared_vocab.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.count("/10 - ") == 10 and "Epoch 10/10" in out
