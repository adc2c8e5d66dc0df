from __future__ import annotations

import copy

import pytest
import torch

from dinrec.models import DIN
from dinrec.training import weight_average
from dinrec.training.weight_average import WeightAverage, dense_parameters, table_weights


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
    assert float(w.detach()) == pytest.approx(1 + 18 / 11)
    with pytest.raises(RuntimeError, match="holds the average"):
        avg.update()
    avg.use_raw()
    avg.use_raw()
    assert float(w.detach()) == 3.0


def test_weights_changed_while_the_average_is_in_become_raw_and_average() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    avg = WeightAverage([w], momentum=0.9)
    _set(w, 3.0)
    avg.update()
    avg.use_average()
    _set(w, 7.0)  # e.g. load_weights or restore_best_weights after fit
    avg.use_raw()
    assert float(w.detach()) == 7.0
    avg.use_average()
    assert float(w.detach()) == 7.0


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
    trainer = averaged.trainer
    assert trainer.averaging is not None and trainer.averaging.holds_average
    assert not trainer.averaging.tables  # small tables: averaged with the dense weights
    # The raw weights (held while the model holds the average) are those of the same run
    # without averaging: averaging does not change training.
    raw = trainer.averaging.other
    plain_params = [*dense_parameters(plain), *table_weights(plain).values()]
    assert len(raw) == len(plain_params)
    for p_plain, p_raw in zip(plain_params, raw, strict=True):
        assert torch.equal(p_plain, p_raw)
    averaged_params = trainer.averaging.params
    assert all(not torch.equal(p_raw, p_avg) for p_raw, p_avg in zip(raw, averaged_params,
                                                                      strict=True))
    x = random_data[0]
    assert not torch.allclose(torch.from_numpy(plain.predict(x)),
                              torch.from_numpy(averaged.predict(x)))


def test_log_decay_is_the_running_sum_of_the_log_decays() -> None:
    for momentum in (0.5, 0.99):
        avg = WeightAverage([torch.nn.Parameter(torch.zeros(1))], momentum)
        steps = torch.arange(0, 2001)
        decays = [min(momentum, (1 + t) / (10 + t)) for t in range(1, 2001)]
        expected = torch.cumsum(torch.log(torch.tensor([1.0, *decays], dtype=torch.float64)), 0)
        assert torch.allclose(avg.log_decay(steps), expected, rtol=0, atol=1e-9)


def test_table_rows_average_lazily_as_if_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that move only when their id is in the batch (sparse updates): the lazy per-row
    average equals averaging the whole table at every step."""
    monkeypatch.setattr(weight_average, "EVERY_STEP_MAX", 4)  # this 5 x 2 table is lazy
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.randn(5, 2, generator=gen))
    avg = WeightAverage([], momentum=0.7, tables={"item": table})
    assert list(avg.tables) == ["item"]
    reference = table.detach().clone()
    batches = [[0, 1], [1, 1, 3], [4], [0, 3], [2], [1], [0, 1, 2, 3, 4], [3]]
    for step, ids in enumerate(batches, start=1):
        rows = torch.tensor(ids)
        avg.before_step({"item": rows, "other": torch.tensor([9])})  # unknown tables: ignored
        with torch.no_grad():  # the optimizer step: only the batch's rows move
            table[rows] = torch.randn(len(ids), 2, generator=gen)
        avg.update()
        decay = min(0.7, (1 + step) / (10 + step))
        reference.lerp_(table.detach(), 1 - decay)
    raw = table.detach().clone()
    avg.use_average()
    assert torch.allclose(table.detach(), reference, atol=1e-6)
    avg.use_raw()
    assert torch.equal(table.detach(), raw)


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


def test_small_tables_are_averaged_at_every_step() -> None:
    table = torch.nn.Parameter(torch.zeros(3, 2))
    avg = WeightAverage([], momentum=0.5, tables={"cate": table})
    assert not avg.tables and avg.params == [table]
    _set(table, 1.0)  # every row moves, in the batch or not (dense Adam's momentum)
    avg.update()
    avg.use_average()
    assert table.detach().flatten().tolist() == pytest.approx([9 / 11] * 6)


def test_a_momentum_that_is_not_a_number_is_refused() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    for bad in ("0.99", True, None):
        with pytest.raises(ValueError, match="ema_momentum must be in"):
            WeightAverage([w], bad)  # type: ignore[arg-type]


def test_a_checkpoint_without_an_average_restarts_it_from_its_weights(random_data) -> None:
    plain = _fit(random_data, None, epochs=1)
    state = copy.deepcopy(plain.trainer.state_dict())
    assert state["weight_average"] is None
    averaged = _fit(random_data, 0.9, epochs=1)
    averaged.trainer.load_state_dict(state)
    avg = averaged.trainer.averaging
    assert avg is not None and avg.updates == 0 and not avg.holds_average
    for p, held in zip(avg.params, avg.other, strict=True):
        assert torch.equal(p, held)  # the average restarts at the loaded weights


def test_lazy_tables_in_a_fit_score_as_averaging_every_step(
    random_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With row-wise Adam a table row moves only in its batches, so the Trainer's lazy
    per-row average of large tables gives the weights that averaging every step gives."""
    x, y, cols, hist = random_data

    def fit() -> DIN:
        model = DIN(cols, hist, seed=3, sparse_embeddings=True)
        model.compile("adam", ema_momentum=0.9)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return model

    every_step = fit()
    assert not every_step.trainer.averaging.tables
    monkeypatch.setattr(weight_average, "EVERY_STEP_MAX", 0)  # every table lazy
    lazy = fit()
    assert set(lazy.trainer.averaging.tables) == set(lazy.schema.tables)
    for (name, a), b in zip(every_step.state_dict().items(), lazy.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
