"""`simplify_shuffles`: two permutes that do not commute fold into one; a concatenation of slices
covering their source in order becomes the source (tests/passes/test_simplify_shuffles_permutations.py has more cases)."""

import torch

from tests.passes._helpers import EXACT, check_pass, module_context

aten = torch.ops.aten


class Shuffles(torch.nn.Module):
    def forward(self, x):
        y = x.permute(1, 0, 2).permute(0, 2, 1)
        z = torch.cat([x[:, :, :2], x[:, :, 2:5], x[:, :, 5:]], dim=2)
        return y * 2, z * 3


def case():
    ctx, feeds = module_context(Shuffles(), torch.randn(2, 3, 7))
    return dict(ctx=ctx, feeds=feeds, pass_name="simplify_shuffles", matches=2, tolerance=EXACT)


def test_permutes_fold_and_covering_slices_disappear():
    c = case()
    check_pass(**c)
    permutes = [n for n in c["ctx"].graph.nodes if n.target == aten.permute.default]
    assert len(permutes) == 1 and list(permutes[0].args[1]) == [1, 2, 0]
    assert not any(n.target == aten.cat.default for n in c["ctx"].graph.nodes)
