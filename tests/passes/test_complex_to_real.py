"""`complex_to_real`: a complex RoPE (polar, view_as_complex, mul, view_as_real) in real tensors."""

import torch

from tests.passes._helpers import FLOAT32, check_pass, module_context


class ComplexRope(torch.nn.Module):
    def forward(self, x, angles):
        c = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        f = torch.polar(torch.ones_like(angles), angles)
        return torch.view_as_real(c * f).flatten(-2)


def case():
    ctx, feeds = module_context(ComplexRope(), torch.randn(2, 5, 8), torch.randn(5, 4))
    # polar, view_as_complex, mul, view_as_real
    return dict(ctx=ctx, feeds=feeds, pass_name="complex_to_real", matches=4, tolerance=FLOAT32)


def test_complex_rope_becomes_real_arithmetic():
    c = case()
    check_pass(**c)
    for node in c["ctx"].graph.nodes:
        val = node.meta.get("val")
        assert not (isinstance(val, torch.Tensor) and val.dtype.is_complex), node.format_node()
