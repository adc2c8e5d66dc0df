"""The fused activation-unit kernel gives the eager unit's scores, or steps aside."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dinrec.kernels import unit as native
from dinrec.layers.activation import Dice, PReLU
from dinrec.layers.attention import ActivationUnit
from dinrec.serving import broadcast, unit_kernel
from dinrec.serving.unit_kernel import unit_scores

pytestmark = pytest.mark.skipif(
    not native.available(torch.zeros(1)),
    reason="native kernels unavailable (no C compiler, or DINREC_NATIVE_KERNELS=0)",
)


def _unit(dim: int, hidden: tuple[int, ...], activation: str, seed: int = 0) -> ActivationUnit:
    torch.manual_seed(seed)
    unit = ActivationUnit(dim, hidden, activation)
    with torch.no_grad():
        for p in unit.parameters():
            p.uniform_(-0.6, 0.6)
        for m in unit.modules():
            if isinstance(m, Dice):  # moving statistics far from the (0, 1) defaults
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
    return unit.eval()


def _inputs(c: int, t: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(c * 100 + t)
    return torch.randn(t, dim, generator=gen), torch.randn(c, dim, generator=gen)


def _eager(unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """The unit's own forward on every (candidate, behavior) pair: [C, T]."""
    return unit(query, keys.expand(query.shape[0], *keys.shape))


@pytest.mark.parametrize(("activation", "hidden"), [
    ("dice", (80, 40)), ("dice", (7, 5)), ("prelu", (80, 40)), ("relu", (16,)),
    ("dice", (33, 17, 9)),
])
@pytest.mark.parametrize("t", [1, 5, 50])
def test_fused_scores_equal_the_eager_unit(activation: str, hidden: tuple[int, ...],
                                           t: int) -> None:
    unit = _unit(12, hidden, activation)
    keys, query = _inputs(9, t, 12)
    with torch.inference_mode():
        got = unit_scores(unit, keys, query)
        want = _eager(unit, keys, query)
    assert got is not None and got.shape == (9, t)
    assert want.std() > 1e-2  # the check compares something
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))


def test_weights_changed_in_place_or_replaced_are_read_again() -> None:
    unit = _unit(8, (20, 10), "dice")
    keys, query = _inputs(4, 6, 8)
    with torch.inference_mode():
        before = unit_scores(unit, keys, query)
    with torch.no_grad():  # what an optimizer step does between two calls
        unit.rest.linears[0].weight.mul_(-2.0)
        assert isinstance(unit.first_act, Dice)
        unit.first_act.running_mean.add_(0.3)
    with torch.inference_mode():
        after = unit_scores(unit, keys, query)
        want = _eager(unit, keys, query)
    assert before is not None and after is not None
    assert float((after - before).abs().max()) > 1e-2
    assert float((after - want).abs().max()) <= 1e-5
    unit.out.weight = nn.Parameter(unit.out.weight.detach() * 3.0)  # a replaced tensor
    with torch.inference_mode():
        replaced = unit_scores(unit, keys, query)
        want = _eager(unit, keys, query)
    assert replaced is not None and float((replaced - want).abs().max()) <= 1e-5


def test_training_mode_autograd_and_batch_norm_fall_back_to_torch() -> None:
    unit = _unit(8, (20, 10), "prelu")
    keys, query = _inputs(4, 6, 8)
    assert isinstance(unit.first_act, PReLU)
    assert unit_scores(unit, keys, query) is None  # autograd on: the kernel has no backward
    with torch.inference_mode():
        assert unit_scores(unit, keys, query) is not None
        unit.train()
        assert unit_scores(unit, keys, query) is None  # Dice / dropout differ in training
    unit.eval()
    unit.rest.norms[0] = nn.BatchNorm1d(10).eval()
    with torch.inference_mode():
        assert unit_scores(unit, keys, query) is None  # not in the kernel


def test_a_unit_made_under_inference_mode_is_prepared_every_call() -> None:
    with torch.inference_mode():  # its tensors have no version counter to cache by
        unit = _unit(8, (20, 10), "dice")
        keys, query = _inputs(4, 6, 8)
        first = unit_scores(unit, keys, query)
        unit.rest.linears[0].weight.mul_(-2.0)
        second = unit_scores(unit, keys, query)
        want = _eager(unit, keys, query)
    assert first is not None and second is not None
    assert float((second - first).abs().max()) > 1e-2
    assert float((second - want).abs().max()) <= 1e-5


def test_widths_not_padded_to_the_vector_width_are_refused() -> None:
    w = torch.zeros(4, 20)
    layer = native.Layer(20, "relu", None)
    with pytest.raises(ValueError, match="multiples of 16"):
        native.PaddedUnit(w, w, w, torch.zeros(20), [layer], torch.zeros(20), 0.0)


def test_a_rank_forward_gives_the_same_logits_with_and_without_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.serving.test_broadcast import _candidates, _model, _user

    model = _model()
    forward = broadcast.BroadcastForward(model)
    ran: list[bool] = []

    def spy(unit: ActivationUnit, keys: torch.Tensor, query: torch.Tensor
            ) -> torch.Tensor | None:
        scores = unit_scores(unit, keys, query)
        ran.append(scores is not None)
        return scores

    monkeypatch.setattr(broadcast, "unit_scores", spy)
    with torch.inference_mode():
        fused = forward(_user(4), _candidates())
        assert ran == [True]
        monkeypatch.setattr(broadcast, "unit_scores", lambda *_: None)  # the torch ops
        eager = forward(_user(4), _candidates())
    assert eager.std() > 1e-3
    assert float((fused - eager).abs().max()) <= 1e-5


def test_a_call_shares_its_candidates_between_free_threads_with_the_same_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unit = _unit(8, (20, 10), "dice")
    keys, query = _inputs(9, 4000, 8)  # 36,000 pairs: 4 threads' worth (PAIRS_PER_THREAD 8,192)
    asked: list[int] = []
    scores = native.PaddedUnit.scores

    def spy(self: native.PaddedUnit, k: torch.Tensor, q: torch.Tensor, threads: int = 1
            ) -> torch.Tensor:
        asked.append(threads)
        return scores(self, k, q, threads)

    monkeypatch.setattr(native.PaddedUnit, "scores", spy)
    results = {}
    for limit in (1, 3, 8):
        monkeypatch.setattr(unit_kernel.budget, "limit", limit)
        with torch.inference_mode():
            results[limit] = unit_scores(unit, keys, query)
    with torch.inference_mode():
        small = unit_scores(unit, keys[:10], query)  # 90 pairs: one thread whatever is free
        want = _eager(unit, keys, query)
    assert asked == [1, 3, 4, 1]
    assert small is not None and torch.equal(small, results[8][:, :10])
    assert torch.equal(results[1], results[3]) and torch.equal(results[1], results[8])
    assert float((results[1] - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))


def test_no_candidates_give_an_empty_score_table() -> None:
    unit = _unit(8, (16,), "relu")
    keys, query = _inputs(0, 3, 8)
    with torch.inference_mode():
        got = unit_scores(unit, keys, query)
    assert got is not None and got.shape == (0, 3)


def test_the_core_budget_gives_each_call_what_is_free_and_at_least_one_thread() -> None:
    budget = unit_kernel.CoreBudget(3)
    with budget.take(2) as first:
        with budget.take(5) as second, budget.take(5) as third:
            assert (first, second, third) == (2, 1, 1)  # the third oversubscribes by one
        with budget.take(0) as fourth:
            assert fourth == 1
    with budget.take(5) as alone:
        assert alone == 3
    with pytest.raises(ValueError, match="thread limit must be >= 1, got 0"):
        budget.limit = 0
