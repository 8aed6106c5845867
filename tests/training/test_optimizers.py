"""The recipes' Adam optimisers: fused where torch has a kernel for the parameters, the same update rule either way."""

from __future__ import annotations

import torch

from vla_parl.training.optimizers import adam, adamw, can_fuse


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(net: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> list[torch.Tensor]:
    data = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        net(data).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return [p.detach().clone() for p in net.parameters()]


def test_plain_cpu_parameters_get_the_fused_kernel_and_the_same_update_as_torchs_default():
    for make, reference in ((adamw, torch.optim.AdamW), (adam, torch.optim.Adam)):
        fused_net, plain_net = _net(0), _net(0)
        optimizer = make(fused_net.parameters(), lr=1e-2, weight_decay=0.1)
        assert optimizer.param_groups[0]["fused"] is True
        initial = [p.detach().clone() for p in fused_net.parameters()]
        got = _train(fused_net, optimizer)
        assert all(not torch.equal(g, p0) for g, p0 in zip(got, initial))
        want = _train(plain_net, reference(plain_net.parameters(), lr=1e-2, weight_decay=0.1, foreach=False))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_parameters_the_fused_kernel_cannot_take_get_torchs_default():
    assert not can_fuse([])
    assert not can_fuse([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    assert not can_fuse([torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3, device="meta"))])
    optimizer = adamw([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=1e-3)
    assert not optimizer.param_groups[0]["fused"]
