"""Multi-head latent attention (DeepSeek-V2/V3 style, K/V decompressed per head) as the one
`gpt_attention` op, on the architecture sweep's tiny random DeepSeek-V2 (query/key head 32 =
16 features without RoPE + 16 with, value head 16, complex interleaved RoPE on the trailing 16
features, the key's rotated part one head expanded to all heads, q_lora on):

- the value head is zero-padded to the query/key head size before the op and sliced back after
  it (`value_head_size` records it; the op and its KV cache use one head size);
- RoPE on the trailing run of features becomes the op's partial RoPE on leading features by moving
  that run to the front of q and of k (the same permutation of both keeps every q.k), identified on
  the query's rotated piece and verified on the query's and the key's;
- hf vs fx vs replay logits in float32 within 1e-4 of the largest logit (the project's bound).

Putting the rotated run anywhere but first, or slicing the wrong features back out of the padded
output, is far out of the bound; DeepSeek-V3's interleaved RoPE (a feature permutation after RoPE)
undone the wrong way is refused (tests/mutation/mutants.py: pass_mla_rope_piece_not_first,
pass_mla_output_slice_wrong, pass_mla_rope_permutation_inverted)."""

import pytest
import torch

from ditto.pipeline import load_program
from ditto.trtllm.gpt_attention_plugin import PluginOptions, gpt_attention_fields
from tests.tiny_models import assert_backends_match_hf, save_sweep_model


@pytest.mark.needs_tensorrt
def test_deepseek_v2_mla_matches_hf(tmp_path):
    path = save_sweep_model(tmp_path, "deepseek_v2")
    program = load_program(path)
    assert [(p.num_heads, p.num_kv_heads, p.head_size, p.value_head_size, p.query_key_head_size)
            for p in program.attention] == [(4, 4, 32, 16, 0)] * 2
    assert {(p.position_embedding_type, p.rotary_embedding_dim) for p in program.attention} == {("rope_gptj", 16)}
    attention = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert all(n.kwargs["value_head_size"] == 16 for n in attention)
    # the padded form is a plain GPTAttention: TensorRT-LLM's MLA mode stays off
    options = PluginOptions(dtype="float32", tokens_per_block=program.attention[0].tokens_per_block, max_context_length=64)
    fields = dict(gpt_attention_fields(program.attention[0], options))
    assert int(fields["is_mla_enabled"]) == 0 and int(fields["head_size"]) == 32
    assert_backends_match_hf(path)


@pytest.mark.needs_tensorrt
def test_deepseek_v3_interleaved_rope_permutation_cancels(tmp_path):
    # DeepSeek-V3's rope_interleave rotates pairs (x[2i], x[2i+1]) and writes them de-interleaved to
    # (i, i + 8): GPT-J RoPE followed by a feature permutation, the same for q and k, so it cancels in q.k
    path = save_sweep_model(tmp_path, "deepseek_v3")
    program = load_program(path)
    assert {(p.position_embedding_type, p.rotary_embedding_dim, p.value_head_size) for p in program.attention} == {
        ("rope_gptj", 16, 16)}
    assert_backends_match_hf(path)


@pytest.mark.needs_tensorrt
def test_value_head_wider_than_query_key_pads_query_and_key(tmp_path):
    # the other side of the padding: a value head (48) wider than the query/key head (32): q and k get
    # zero features (nothing added to q.k, the explicit scale kept), the op's head is the value's
    path = save_sweep_model(tmp_path, "deepseek_v2", v_head_dim=48)
    program = load_program(path)
    assert {(p.head_size, p.value_head_size, p.query_key_head_size) for p in program.attention} == {(48, 0, 32)}
    assert_backends_match_hf(path)
