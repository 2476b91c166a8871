"""`functionalize_inplace` on an in-place update of a view: allowed when the view is the only reader
of an intermediate base (transformers' MoE: `bmm(w, x).squeeze(-1).add_(bias)`), refused when the
base is read again after the update (removing the mutation would change what that reader sees).
Numbers: the rewritten graph against eager torch, exactly (same ops)."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.passes.functionalize_inplace import functionalize_graph


class SoleView(torch.nn.Module):
    def forward(self, w, x, bias):
        out = torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)
        out.add_(bias)
        return out * 2


class BaseReadAgain(torch.nn.Module):
    def forward(self, w, x, bias):
        base = torch.bmm(w, x.unsqueeze(-1))
        out = base.squeeze(-1)
        out.add_(bias)
        return out * 2, base + 1  # base + 1 sees the update in eager torch


def _graph(module, args):
    gm = torch.export.export(module, args).graph_module
    return gm


ARGS = (torch.randn(3, 4, 5), torch.randn(3, 5), torch.randn(4))


def test_update_of_the_sole_view_of_an_intermediate_is_rewritten():
    gm = _graph(SoleView(), ARGS)
    assert functionalize_graph(gm.graph) == 1
    gm.recompile()
    assert not any(str(n.target).endswith("add_.Tensor") for n in gm.graph.nodes)
    assert torch.equal(gm(*ARGS)[0], SoleView()(*ARGS))


def test_update_of_a_view_whose_base_is_read_again_is_refused():
    gm = _graph(BaseReadAgain(), ARGS)
    with pytest.raises(DittoError, match="a view of"):
        functionalize_graph(gm.graph)
