"""`eager_attention_to_sdpa`: softmax(q @ k^T * s + mask) @ v becomes one SDPA node."""

import torch

from tests.passes._helpers import FLOAT32, check_pass, module_context

SDPA = torch.ops.aten.scaled_dot_product_attention.default


class EagerAttention(torch.nn.Module):
    def forward(self, q, k, v, mask):
        p = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * 0.5 + mask, dim=-1)
        return torch.matmul(p, v)


def case():
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    ctx, feeds = module_context(EagerAttention(), q, k, v, torch.randn(1, 1, 5, 5))
    return dict(ctx=ctx, feeds=feeds, pass_name="eager_attention_to_sdpa", matches=1, tolerance=FLOAT32)


def test_eager_attention_becomes_sdpa():
    c = case()
    check_pass(**c)
    sdpa = [n for n in c["ctx"].graph.nodes if n.target == SDPA]
    assert len(sdpa) == 1 and sdpa[0].kwargs["scale"] == 0.5
