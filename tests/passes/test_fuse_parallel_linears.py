"""`fuse_parallel_linears`: projections reading one input fuse into one (QKV with a missing bias,
gate/up), the fused weight built lazily from the parts."""

import torch
import torch.nn.functional as F

from tests.passes._helpers import FLOAT32, check_pass, module_context

LINEAR = torch.ops.aten.linear.default


class Projections(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4, bias=False), torch.nn.Linear(8, 4)
        self.gate, self.up = torch.nn.Linear(8, 6, bias=False), torch.nn.Linear(8, 6, bias=False)

    def forward(self, x):
        h = self.q(x) + torch.cat([self.k(x), self.v(x)], -1)
        return F.silu(self.gate(h)) * self.up(h)


def case():
    torch.manual_seed(0)
    ctx, feeds = module_context(Projections(), torch.randn(3, 8))
    return dict(ctx=ctx, feeds=feeds, pass_name="fuse_parallel_linears", matches=2, tolerance=FLOAT32)


def test_qkv_and_gate_up_fuse():
    c = case()
    check_pass(**c)
    widths = sorted(n.meta["val"].shape[-1] for n in c["ctx"].graph.nodes if n.target == LINEAR)
    assert widths == [12, 16]
