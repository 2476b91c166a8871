"""K/V heads shared by tiling (JetMoE: `key.repeat(1, r, 1, 1)`, so query head i * KV + j reads KV
head j) instead of TensorRT-LLM's grouping (query head j * r + i reads KV head j): the attention
pass regroups the query heads before the op and restores the model's order after it.

JetMoE itself stops later (its mixture-of-attention-heads routing is MoE work), so a tiny Llama
is made to tile: transformers' SDPA path with its repeat_kv replaced by `repeat`, for Hugging
Face and the export alike. hf vs fx vs replay logits in float32 within 1e-4 of the largest logit;
without the regrouping the heads read the wrong K/V (far out of bound)."""

import pytest
import torch

from ditto.pipeline import load_program
from tests.tiny_models import SMALL, assert_backends_match_hf, save_tiny


def _tiled(hidden_states, n_rep):
    return hidden_states if n_rep == 1 else hidden_states.repeat(1, n_rep, 1, 1)


@pytest.mark.needs_tensorrt
def test_tiled_kv_heads_are_regrouped(tmp_path, monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    monkeypatch.setattr(sdpa, "repeat_kv", _tiled)
    monkeypatch.setattr(sdpa, "use_gqa_in_sdpa", lambda *args, **kwargs: False)
    if hasattr(sdpa, "pack_gqa"):  # after 5.17, 1-token queries outside compilation pack GQA heads
        monkeypatch.setattr(sdpa, "is_torchdynamo_compiling", lambda: True)  # no pack_gqa in generation steps
    path = save_tiny(tmp_path, "llama", **SMALL)
    program = load_program(path)
    assert [(p.num_heads, p.num_kv_heads) for p in program.attention] == [(4, 2), (4, 2)]
    permutes = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.aten.permute.default]
    assert len(permutes) >= 2 * len(program.attention)  # regrouped in and out
    assert_backends_match_hf(path)
