"""Architectures no test names elsewhere, built from their transformers configs: they must work
with no ditto code of their own, or fail fast naming the nodes no pattern matched."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import run_program
from tests.parity import FLOAT32_BOUND, forced_request, materialized, worst_errors
from tests.tiny_models import COMMON, save_tiny

# what each exercises beyond the built-in tiny models
ARCHITECTURES = {
    "stablelm": dict(COMMON, num_key_value_heads=2, partial_rotary_factor=0.25),  # LayerNorm, quarter rotary
    "cohere": dict(COMMON, num_key_value_heads=2),  # interleaved (GPT-J style) RoPE, parallel block
    "olmo2": dict(COMMON, num_key_value_heads=2),  # QK-norm over the whole projection
    "granite": dict(COMMON, num_key_value_heads=2),  # residual/embedding/logit multipliers
    "gptj": dict(vocab_size=256, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=256),  # partial interleaved
    "gpt_neox": dict(COMMON, rotary_pct=0.25),  # checkpoint key renamed at load (embed_out -> lm_head)
    "opt": dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                max_position_embeddings=256, word_embed_proj_dim=64),  # offset learned positions, no MLP module
}


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_unnamed_architecture_matches_hf(tmp_path, model_type):
    path = save_tiny(tmp_path, model_type, weight_std=None, **ARCHITECTURES[model_type])
    request = forced_request(path, steps=4, probes=["layers.1.out"])
    errors = worst_errors(get_backend("hf").run(request), get_backend("fx").run(request))
    assert max(errors.values()) <= FLOAT32_BOUND, errors


def test_eager_attention_is_normalised(tmp_path):
    path = save_tiny(tmp_path, "llama", weight_std=None, **COMMON, num_key_value_heads=2)
    program = load_program(path, attn_implementation="eager")
    assert dict(program.pass_log)["eager_attention_to_sdpa"] == 2
    assert dict(program.pass_log)["replace_attention"] == 2
    materialized(program)
    request = forced_request(path, steps=3, probes=[])
    errors = worst_errors(get_backend("hf").run(request), run_program(program, request))
    assert errors["logits"] <= FLOAT32_BOUND


def test_unsupported_attention_fails_fast_naming_nodes(tmp_path, monkeypatch):
    # BLOOM (ALiBi) is converted (tests/ops/test_attention_alibi.py); made to normalise its scores over
    # the query axis instead of the keys, its softmax is no attention any pattern matches
    import transformers.models.bloom.modeling_bloom as bloom

    class QueryAxisSoftmax:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def softmax(x, dim=-1, dtype=None):
            return torch.nn.functional.softmax(x, dim=-2, dtype=dtype)

    monkeypatch.setattr(bloom, "F", QueryAxisSoftmax())
    path = save_tiny(tmp_path, "bloom", weight_std=None, vocab_size=256, hidden_size=64, n_layer=2, n_head=4)
    with pytest.raises(DittoError, match=r"no pattern matched \d+ node\(s\)[\s\S]*softmax[\s\S]*modeling_bloom.py"):
        load_program(path)


def test_pass_log_counts(tmp_path):
    program = load_program("tiny-mistral")
    log = dict(program.pass_log)
    assert log["replace_attention"] == 2
    assert log["fuse_parallel_linears"] == 4  # QKV and gate/up in each of 2 layers
    assert log["gather_last_token"] == 1
    targets = [n.target for n in program.graph_module.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.ditto.gpt_attention.default) == 2
    assert torch.ops.aten.scaled_dot_product_attention.default not in targets
    inputs = [n.name for n in program.graph_module.graph.nodes if n.op == "placeholder"]
    from ditto.trtllm.inputs import ENGINE_INPUTS

    assert inputs == [spec.name for spec in ENGINE_INPUTS]
    params = program.attention[0]
    assert (params.num_heads, params.num_kv_heads, params.head_size) == (4, 2, 16)
    assert params.position_embedding_type == "rope_gpt_neox" and params.rotary_embedding_dim == 16


def test_partial_rotary_and_learned_positions_are_recognised():
    phi3 = load_program("tiny-phi3").attention[0]
    assert phi3.rotary_embedding_dim == 8 and phi3.position_embedding_type == "rope_gpt_neox"
    gpt2 = load_program("tiny-gpt2").attention[0]
    assert gpt2.position_embedding_type == "learned_absolute" and gpt2.rotary_embedding_dim == 0
