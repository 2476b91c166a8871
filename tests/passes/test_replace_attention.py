"""`replace_attention`: each SDPA of a tiny Llama (with its RoPE and causal mask) becomes one
`gpt_attention` op reading the engine inputs; one context step gives the same logits."""

import torch

from tests.passes._helpers import check_pass, model_context

# the op computes RoPE from a cos/sin table and attention through the paged KV cache: float32
# sums in another order than HF's eager path
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def case():
    ctx, feeds = model_context("tiny-llama")
    return dict(ctx=ctx, feeds=feeds, pass_name="replace_attention", matches=2, tolerance=TOLERANCE)


def test_each_layer_attention_becomes_one_gpt_attention():
    c = case()
    check_pass(**c)
    ops = [n for n in c["ctx"].graph.nodes if n.target is torch.ops.ditto.gpt_attention.default]
    assert len(ops) == len(c["ctx"].attention) == c["ctx"].loaded.config.num_hidden_layers == 2


def test_an_attention_input_without_a_dynamic_token_axis_is_refused():
    """A token count fixed before replace_attention (by export or a fake kernel) is named, never a bare StopIteration."""
    import pytest

    from ditto.errors import DittoError
    from ditto.passes.replace_attention import _to_heads

    graph = torch.export.export(torch.nn.Identity(), (torch.randn(1, 4, 6, 8),)).graph  # static: no dynamic axis
    (x,) = [n for n in graph.nodes if n.op == "placeholder"]
    with pytest.raises(DittoError, match=r"attention input \w+ .* static shape \(1, 4, 6, 8\): its token count"):
        _to_heads(graph, x, 4)
