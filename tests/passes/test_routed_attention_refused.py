"""A token-routed attention (mixture of attention heads: JetMoE's MoA, whose query projection is
chosen per token by a top-k router while keys and values are plain projections) is refused by name
by check_supported, on the architecture sweep's tiny random jetmoe config: TensorRT-LLM's attention
has no routed query/output projections. A routed MLP before an attention (every MoE model) feeds the
query and the keys alike and is not mistaken for one (tests/passes/test_moe_gpt_oss.py converts)."""

from __future__ import annotations

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from tests.tiny_models import arch_sweep


def test_jetmoe_mixture_of_attention_heads_is_refused_by_name(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(arch_sweep().tiny_config("jetmoe")).eval().save_pretrained(tmp_path)
    with pytest.raises(DittoError, match=r"query of attention .* chosen per token by the top-k .*mixture of attention heads"):
        load_program(str(tmp_path))


def test_only_the_routed_query_is_named_not_a_routed_mlp_before_an_attention(tmp_path, monkeypatch):
    # the graph as check_supported sees it: per layer the MoA router's top-k, then the MLP router's
    # (JetMoE's per-expert MLP loop is not recognised; it stays as a top-k before the next attention)
    from transformers import AutoModelForCausalLM

    import ditto.pipeline
    from ditto.passes import check_supported as module

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(arch_sweep().tiny_config("jetmoe")).eval().save_pretrained(tmp_path)
    seen = {}
    monkeypatch.setattr(ditto.pipeline, "check_supported", lambda ctx: seen.setdefault("ctx", ctx))
    load_program(str(tmp_path))
    ctx = seen["ctx"]
    topks = [n for n in ctx.graph.nodes if n.target == torch.ops.aten.topk.default]
    attention = [n for n in ctx.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert len(topks) == 4 and len(attention) == 2
    assert module._routed_query(topks[0], ctx) is attention[0]
    assert module._routed_query(topks[1], ctx) is None  # layer 0's MLP feeds layer 1's query AND keys
    assert module._routed_query(topks[2], ctx) is attention[1]
