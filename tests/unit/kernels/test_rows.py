from __future__ import annotations

import pytest
import torch

from dinrec.kernels import rows as kernels
from dinrec.kernels.build import load

pytestmark = pytest.mark.skipif(load("rows") is None,
                                reason="no C compiler: native kernels unavailable")


def test_index_add_rows_sums_repeated_ids():
    out = torch.zeros(3, 2)
    ids = torch.tensor([2, 0, 2, 2])
    src = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    assert kernels.index_add_rows(out, ids, src) is out
    assert out.tolist() == [[3.0, 4.0], [0.0, 0.0], [13.0, 16.0]]
    big = torch.randn(500, 16)
    many = torch.randint(0, 7, (500,))
    assert torch.allclose(kernels.index_add_rows(torch.zeros(7, 16), many, big),
                          torch.zeros(7, 16).index_add_(0, many, big), atol=1e-5)


def test_index_add_rows_checks_ids_and_shapes():
    with pytest.raises(IndexError, match=r"\[0, 3\), got \[0, 3\]"):
        kernels.index_add_rows(torch.zeros(3, 2), torch.tensor([0, 3]), torch.ones(2, 2))
    with pytest.raises((IndexError, RuntimeError)):  # torch names the shape mismatch
        kernels.index_add_rows(torch.zeros(3, 2), torch.tensor([0, 1]), torch.ones(2, 5))


def test_weighted_row_sum_values_and_gradients():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    rows = torch.tensor([0, 0, 2])
    out = kernels.weighted_row_sum(w, src, rows, batch=3)
    assert out.tolist() == [[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]]  # batch row 1: no behavior
    out.backward(torch.tensor([[1.0, 10.0], [5.0, 5.0], [100.0, 0.0]]))
    assert w.grad.tolist() == [1.0, 10.0, 100.0]  # <g[row], src[i]>
    assert src.grad.tolist() == [[1.0, 10.0], [2.0, 20.0], [300.0, 0.0]]  # w[i] * g[row]


def test_key_query_values_and_gradients():
    keys = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    query = torch.tensor([[10.0, 20.0], [-1.0, 0.5]], requires_grad=True)
    rows = torch.tensor([0, 1, 1])
    out = kernels.key_query(keys, query, rows)
    assert out.tolist() == [[1, 2, 10, 40], [3, 4, -3, 2], [5, 6, -5, 3]]
    g = torch.arange(12.0).reshape(3, 4)
    out.backward(g)
    # d/dkeys = g[:, :2] + g[:, 2:] * query[rows];  d/dquery[b] = sum of g[:, 2:] * keys
    assert keys.grad.tolist() == [[20.0, 61.0], [-2.0, 8.5], [-2.0, 14.5]]
    assert query.grad.tolist() == [[2.0, 6.0], [68.0, 94.0]]


@pytest.mark.parametrize("fn", ["weighted_row_sum", "key_query"])
def test_native_and_torch_paths_agree_on_random_inputs(fn):
    torch.manual_seed(0)
    n, e, b = 400, 32, 20
    rows = torch.sort(torch.randint(0, b, (n,))).values
    w, keys, query = torch.randn(n), torch.randn(n, e), torch.randn(b, e)

    def run(native: bool) -> tuple[torch.Tensor, ...]:
        leaves = [t.clone().requires_grad_() for t in (w, keys, query)]
        if fn == "weighted_row_sum":
            out = kernels.weighted_row_sum(leaves[0], leaves[1], rows, b, native=native)
        else:
            out = kernels.key_query(leaves[1], leaves[2], rows, native=native)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads = tuple(t.grad if t.grad is not None else torch.zeros(0) for t in leaves)
        return (out.detach(), *grads)

    for a, b_ in zip(run(True), run(False), strict=True):
        assert torch.allclose(a, b_, atol=1e-5)


def test_rows_outside_the_batch_are_refused():
    with pytest.raises(IndexError, match=r"\[0, 2\), got \[-1, 1\]"):
        kernels.key_query(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([-1, 1]))
    with pytest.raises(IndexError, match=r"\[0, 1\), got \[0, 1\]"):
        kernels.weighted_row_sum(torch.ones(2), torch.ones(2, 3), torch.tensor([0, 1]), 1)


def test_non_contiguous_inputs_take_the_torch_path_with_the_same_result():
    keys = torch.randn(6, 8)[:, ::2]  # [6, 4], strided
    query, rows = torch.randn(2, 4), torch.tensor([0, 0, 0, 1, 1, 1])
    expected = torch.cat([keys, keys * query[rows]], dim=-1)
    assert torch.equal(kernels.key_query(keys, query, rows), expected)


def test_mismatched_shapes_get_torchs_error_not_a_kernel_read_out_of_bounds():
    rows = torch.tensor([0, 1, 1])
    with pytest.raises(RuntimeError):
        kernels.key_query(torch.ones(3, 4), torch.ones(2, 5), rows)  # widths 4 vs 5
    with pytest.raises(RuntimeError):
        kernels.weighted_row_sum(torch.ones(2), torch.ones(3, 4), rows, 2)  # 2 weights, 3 rows
