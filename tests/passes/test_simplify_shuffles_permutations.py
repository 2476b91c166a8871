"""`simplify_shuffles` on small exported graphs: the folded graph computes what the original
computed, on permutations whose composition order matters and on concatenations of slices
that do and do not cover their source in order. The tiny models' graphs only compose
permutations that commute, so model parity cannot tell the order apart."""

from types import SimpleNamespace

import pytest
import torch

from ditto.passes.simplify_shuffles import simplify_shuffles

aten = torch.ops.aten


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


CASES = {
    # (fn, how many rewrites the pass reports)
    "permutes_that_do_not_commute": (lambda x: x.permute(1, 0, 2).permute(0, 2, 1) * 2, 1),
    "transpose_then_permute": (lambda x: x.transpose(0, 2).permute(2, 0, 1) * 2, 1),
    "identity_permute": (lambda x: x.permute(0, 1, 2) * 2, 1),
    "slices_covering_in_order": (lambda x: torch.cat([x[:, :, :2], x[:, :, 2:5], x[:, :, 5:]], dim=2) * 2, 1),
    "slices_out_of_order": (lambda x: torch.cat([x[:, :, 3:], x[:, :, :3]], dim=2) * 2, 0),
    "slices_with_a_gap": (lambda x: torch.cat([x[:, :, :2], x[:, :, 3:]], dim=2) * 2, 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_folded_graph_computes_the_same(name):
    fn, rewrites = CASES[name]
    x = torch.randn(2, 3, 7)
    gm = torch.export.export(Fn(fn), (x,)).module()
    assert simplify_shuffles(SimpleNamespace(graph=gm.graph)) == rewrites
    gm.recompile()
    torch.testing.assert_close(gm(x), fn(x), rtol=0, atol=0)
