"""Fake values of inserted nodes keep the token count dynamic. torch 2.11's fake kernel for SDPA
with a mask reads the token count as an int, which fixes it to the export's example size for the
whole graph (OpenAI-GPT then failed in replace_attention with a bare StopIteration); SDPA gets a
shape rule, and any op whose fake kernel fixes a dynamic size is refused naming the op."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.graph.insert import insert_op

SDPA = torch.ops.aten.scaled_dot_product_attention.default


def _dynamic_graph():
    """An exported graph with q/k [1, 4, T, 8], v [1, 4, T, 16], an additive mask [1, 1, T, T], T dynamic."""
    class Inputs(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return q + 1, k + 1, v + 1, mask + 0

    t = torch.export.Dim("t", min=2, max=64)
    args = (torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 16), torch.zeros(1, 1, 6, 6))
    shapes = ({2: t}, {2: t}, {2: t}, {2: t, 3: t})
    graph = torch.export.export(Inputs(), args, dynamic_shapes=shapes).graph
    return graph, [n for n in graph.nodes if n.op == "call_function"]


def test_inserted_sdpa_keeps_the_token_count_dynamic():
    graph, (q, k, v, mask) = _dynamic_graph()
    with graph.inserting_before(q.next):
        sdpa = insert_op(graph, SDPA, (q, k, v, mask), {"scale": 0.5})
    shape = sdpa.meta["val"].shape
    assert not isinstance(shape[2], int) and tuple(shape[:2]) == (1, 4) and shape[3] == 16  # v's head size
    assert not isinstance(q.meta["val"].shape[2], int)  # nothing fixed the size for the other nodes


def test_an_op_whose_fake_kernel_fixes_a_dynamic_size_is_refused():
    graph, (q, *_) = _dynamic_graph()

    def reads_token_count(x):
        return x.new_empty((int(x.shape[2]),))

    with pytest.raises(DittoError, match=r"shape of reads_token_count fixed the dynamic size s\w+ = 6 .*_SHAPE_RULES"):
        insert_op(graph, reads_token_count, (q,))
