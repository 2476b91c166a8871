"""replace_attention on sparse attention (a lightning indexer's top-k over the keys builds the mask):
the top-k term is dropped, exactly, when the top-k keeps k = min(K, keys) (or K) keys and the mask
with every key kept is its other operand; the limit K is recorded. Anything else stays refused by name.

- the pass on tiny DeepSeek-V3.2 (index_topk 8, 6 tokens): 2 attentions replaced, the graph computes
  what it computed before within float32 rounding, limit 8 recorded per layer;
- K is read from the graph: a constant k or min(K, the axis size) along a token axis; not k = n - 1,
  not a top-k over a static axis (experts) or over twice the tokens (K would not bound the sequence);
- a mask built from only part of the picks (the first key each query picks) is not "every key kept":
  refused as sparse attention (the check that the kept-all mask equals the other operand)."""

import pytest
import torch
from torch.export import Dim

from ditto.errors import DittoError
from ditto.passes.manager import run_passes
from ditto.passes.replace_attention import _keep_all_shape
from ditto.pipeline import load_program
from tests.passes._helpers import FLOAT32, check_pass, model_context
from tests.tiny_models import save_sweep_model


def test_keep_all_top_k_term_dropped_and_limit_recorded(tmp_path):
    path = save_sweep_model(tmp_path, "deepseek_v32", index_topk=8)
    ctx, feeds = model_context(path, num_tokens=6)
    run_passes(ctx, ["functionalize_inplace"])  # DeepSeek's keys assembled in place in a new_empty
    check_pass(ctx, feeds, "replace_attention", 2, FLOAT32)
    assert [limit.tokens for limit in ctx.sequence_limits] == [8, 8]


class _TopK(torch.nn.Module):
    def __init__(self, k, twice=False):
        super().__init__()
        self.k, self.twice = k, twice

    def forward(self, x):  # [tokens, tokens] scores of the keys for each query
        if self.twice:  # [2 * tokens, 2 * tokens]: K keys kept would bound the sequence at K / 2
            x = torch.cat([x, x], dim=0)
            x = torch.cat([x, x], dim=-1)
        return x.topk(self.k(x.shape[-1]), dim=-1).indices


def _topk_node(k, dims=None, twice=False):
    x = torch.randn(10, 10)
    n = Dim("n", min=8, max=64)
    gm = torch.export.export(_TopK(k, twice), (x,), dynamic_shapes=(dims or {0: n, 1: n},)).module()
    return next(node for node in gm.graph.nodes if node.target == torch.ops.aten.topk.default)


@pytest.mark.parametrize("k, keep", [
    (lambda n: min(6, n), 6),  # DeepSeek-V3.2's min(index_topk, keys)
    (lambda n: min(n, 7), 7),
    (lambda n: 5, 5),  # a constant K
    (lambda n: n - 1, None),  # all keys but one: never all of them
])
def test_k_read_from_the_graph(k, keep):
    assert _keep_all_shape(_topk_node(k))[1] == keep


def test_top_k_over_a_static_axis_or_twice_the_tokens_is_not_over_the_keys():
    assert _keep_all_shape(_topk_node(lambda n: min(3, n), dims={0: Dim("n", min=8, max=64)}))[1] is None
    assert _keep_all_shape(_topk_node(lambda n: min(6, n), twice=True))[1] is None


def test_mask_from_part_of_the_picks_stays_refused(tmp_path, monkeypatch):
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as modeling

    indexer = modeling.DeepseekV32Indexer.forward
    monkeypatch.setattr(modeling.DeepseekV32Indexer, "forward", lambda self, *a, **kw: indexer(self, *a, **kw)[..., :1])
    path = save_sweep_model(tmp_path, "deepseek_v32", index_topk=8)
    with pytest.raises(DittoError, match=r"sparse attention: the attention mask comes from the top-k"):
        load_program(path)
