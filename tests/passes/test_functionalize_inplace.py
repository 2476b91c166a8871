"""`functionalize_inplace`: in-place ops on a tensor the graph owns become out of place."""

import torch

from ditto.passes.functionalize_inplace import is_inplace
from tests.passes._helpers import EXACT, check_pass, module_context


class InPlaceOnAClone(torch.nn.Module):
    def forward(self, x):
        y = x.clone()
        y.mul_(2)
        y.add_(1)  # reads the mutated y
        return y * 3


def case():
    ctx, feeds = module_context(InPlaceOnAClone(), torch.randn(3, 4))
    return dict(ctx=ctx, feeds=feeds, pass_name="functionalize_inplace", matches=2, tolerance=EXACT)


def test_inplace_ops_on_a_clone_become_out_of_place():
    c = case()
    check_pass(**c)
    assert not any(is_inplace(n) for n in c["ctx"].graph.nodes)
