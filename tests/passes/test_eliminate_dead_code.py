"""`eliminate_dead_code`: a value nothing reads is removed."""

import torch

from tests.passes._helpers import EXACT, check_pass, module_context


class DeadValue(torch.nn.Module):
    def forward(self, x):
        unused = x * 5  # noqa: F841
        return x + 1


def case():
    ctx, feeds = module_context(DeadValue(), torch.randn(3, 8))
    return dict(ctx=ctx, feeds=feeds, pass_name="eliminate_dead_code", matches=1, tolerance=EXACT)


def test_an_unread_value_is_removed():
    c = case()
    check_pass(**c)
    assert [n.target for n in c["ctx"].graph.nodes if n.op == "call_function"] == [torch.ops.aten.add.Tensor]
