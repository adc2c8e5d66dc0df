from __future__ import annotations

import copy

import pytest
import torch

from dinrec.models import DIN
from dinrec.training.weight_average import WeightAverage, dense_parameters


def _set(p: torch.nn.Parameter, value: float) -> None:
    with torch.no_grad():
        p.fill_(value)


def test_average_follows_tfs_warm_up_then_the_momentum() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    avg = WeightAverage([w], momentum=0.5)
    _set(w, 1.0)
    avg.update()  # decay min(0.5, 2/11) = 2/11: average = 9/11
    _set(w, 2.0)
    avg.update()  # decay min(0.5, 3/12) = 1/4: average = 1/4 * 9/11 + 3/4 * 2
    _set(w, 4.0)
    avg.update()  # decay min(0.5, 4/13) = 4/13
    expected = (4 / 13) * (0.25 * 9 / 11 + 1.5) + (9 / 13) * 4.0
    avg.use_average()
    assert w.tolist() == pytest.approx([expected, expected], abs=1e-6)
    avg.use_raw()
    assert w.tolist() == [4.0, 4.0]
    for _ in range(200):  # long after the warm-up the decay is the momentum
        avg.update()
    avg.use_average()
    assert float(w.detach()[0]) == pytest.approx(4.0, abs=1e-6)


def test_swaps_are_idempotent_and_update_needs_the_raw_weights() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    avg = WeightAverage([w], momentum=0.9)
    _set(w, 3.0)
    avg.update()  # decay 2/11: 1 + 9/11 * 2
    avg.use_average()
    avg.use_average()
    assert float(w) == pytest.approx(1 + 18 / 11)
    with pytest.raises(RuntimeError, match="holds the average"):
        avg.update()
    avg.use_raw()
    avg.use_raw()
    assert float(w) == 3.0


def test_weights_changed_while_the_average_is_in_become_raw_and_average() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    avg = WeightAverage([w], momentum=0.9)
    _set(w, 3.0)
    avg.update()
    avg.use_average()
    _set(w, 7.0)  # e.g. load_weights or restore_best_weights after fit
    avg.use_raw()
    assert float(w) == 7.0
    avg.use_average()
    assert float(w) == 7.0


def test_momentum_outside_the_unit_interval_is_refused() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="ema_momentum must be in"):
            WeightAverage([w], bad)


def test_dense_parameters_leave_out_the_embedding_tables(random_data) -> None:
    _, _, cols, hist = random_data
    model = DIN(cols, hist)
    tables = {id(p) for p in model.embeddings.parameters()}
    dense = dense_parameters(model)
    assert dense and not any(id(p) in tables for p in dense)
    assert len(dense) + len(tables) == len([p for p in model.parameters() if p.requires_grad])


def _fit(random_data, ema: float | None, epochs: int = 2) -> DIN:
    x, y, cols, hist = random_data
    model = DIN(cols, hist, seed=3)
    model.compile("adam", ema_momentum=ema)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return model


def test_averaging_changes_what_is_scored_not_how_training_goes(random_data) -> None:
    plain, averaged = _fit(random_data, None), _fit(random_data, 0.9)
    # The embedding tables are not averaged, and training itself is the same run.
    for name, table in plain.embeddings.state_dict().items():
        assert torch.equal(table, averaged.embeddings.state_dict()[name]), name
    trainer = averaged.trainer
    assert trainer.averaging is not None and trainer.averaging.holds_average
    raw = trainer.averaging.other  # the raw weights, held while the model holds the average
    for p_plain, p_raw in zip(dense_parameters(plain), raw, strict=True):
        assert torch.equal(p_plain, p_raw)
    assert any(not torch.equal(p_raw, p_avg)
               for p_raw, p_avg in zip(raw, dense_parameters(averaged), strict=True))
    x = random_data[0]
    assert not torch.allclose(torch.from_numpy(plain.predict(x)),
                              torch.from_numpy(averaged.predict(x)))


def test_a_second_fit_continues_from_the_raw_weights(random_data) -> None:
    x, y, _, _ = random_data
    straight = _fit(random_data, 0.9, epochs=2)
    split = _fit(random_data, 0.9, epochs=1)
    split.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0, shuffle=False)
    for a, b in zip(straight.state_dict().values(), split.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_trainer_state_resumes_the_average_exactly(random_data) -> None:
    x, y, _, _ = random_data
    straight = _fit(random_data, 0.9, epochs=2)
    first = _fit(random_data, 0.9, epochs=1)
    state = copy.deepcopy(first.trainer.state_dict())
    resumed = _fit(random_data, 0.9, epochs=1)  # same architecture, then overwritten
    resumed.trainer.load_state_dict(state)
    resumed.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
