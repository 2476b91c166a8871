"""A top-k left in the graph (ditto/passes/unsupported.py) is named for what it chooses among:
the tokens of the sequence (a sparse-attention indexer, DeepSeek-V3.2 / HY-V4) or a fixed
number of experts (an MoE router no pattern matched). Planted bug this kills: the token test
reading a static axis (every router would be called sparse attention, or none)."""

import pytest
import torch
from torch.export import Dim

from ditto.errors import DittoError
from ditto.passes.check_supported import check_supported


class _Ctx:
    def __init__(self, module, x):
        gm = torch.export.export(module, (x,), dynamic_shapes=({0: Dim("tokens", min=3, max=64)},)).module()
        self.graph, self.attention = gm.graph, [object()]


class Indexer(torch.nn.Module):
    def forward(self, x):  # [tokens, 8]: each token picks 2 keys among the tokens
        scores = x @ x.t()
        return scores.topk(2, dim=-1).indices


class Router(torch.nn.Module):
    def forward(self, x):  # [tokens, 8]: each token picks 2 of 8 experts
        return x.softmax(-1).topk(2, dim=-1).indices


def test_top_k_over_tokens_is_named_sparse_attention():
    with pytest.raises(DittoError, match=r"test_unsupported_topk.py.*picks among the tokens.*sparse attention"):
        check_supported(_Ctx(Indexer(), torch.randn(5, 8)))


def test_top_k_over_experts_is_named_an_unmatched_router():
    with pytest.raises(DittoError, match=r"no pattern matched the top-k .*test_unsupported_topk.py.*mixture-of-experts"):
        check_supported(_Ctx(Router(), torch.randn(5, 8)))
