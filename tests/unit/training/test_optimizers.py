from __future__ import annotations

import torch

from dinrec.training.optimizers import make_optimizer


def test_adam_on_dense_cpu_parameters_is_the_fused_kernel_with_the_same_updates():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fused = make_optimizer("adam", a, lr=0.01)
    plain = torch.optim.Adam(b, lr=0.01)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(3):
        grads = [torch.randn_like(p) for p in a]
        for pa, pb, g in zip(a, b, grads, strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for pa, pb in zip(a, b, strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_adam_with_no_trainable_parameter_still_builds():
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    opt = make_optimizer("adam", [frozen, torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.Adam)
