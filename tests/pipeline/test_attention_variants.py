"""Attention variants as parameters of the one `gpt_attention` op, checked on tiny random
models of the architectures that use them: hf vs fx vs replay logits (float32, 1e-4 of the
largest logit, the parity bound), the recognised parameter, and the TensorRT-LLM plugin field
it becomes."""

import pytest
import torch

from ditto.errors import DittoError
from ditto.pipeline import load_program
from tests.tiny_models import SMALL, assert_backends_match_hf, plugin_field, save_tiny


@pytest.mark.needs_tensorrt
def test_gemma2_logit_softcapping_is_a_parameter(tmp_path):
    # a cap of 1 bends scores of the size random weights give: ignoring it fails the parity bound
    path = save_tiny(tmp_path, "gemma2", **SMALL, attn_logit_softcapping=1.0, final_logit_softcapping=5.0,
                     sliding_window=4, query_pre_attn_scalar=16)
    program = load_program(path)
    assert [p.attn_logit_softcapping_scale for p in program.attention] == [1.0, 1.0]
    assert float(plugin_field(program.attention[0], "attn_logit_softcapping_scale")) == 1.0
    assert_backends_match_hf(path)


@pytest.mark.needs_tensorrt
def test_attention_sink_through_logsumexp_is_a_sink_parameter(tmp_path):
    # Granite-SWA scales each head's output by sigmoid(logsumexp(scores) - sink), which equals a sink
    # logit in the softmax's denominator. (Converted once with only the softmax replaced, generation
    # steps took the logsumexp over the new token alone; then it was refused.) Now it becomes the op's
    # attention_sinks, and hf, fx and replay agree.
    path = save_tiny(tmp_path, "granite_swa", **SMALL, layer_types=["sliding_attention", "full_attention"],
                     sliding_window=4)
    program = load_program(path)
    attention = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.ditto.gpt_attention.default]
    assert len(attention) == 2 and all(n.kwargs.get("attention_sinks") is not None for n in attention)
    assert_backends_match_hf(path)


def test_long_rope_is_refused_with_the_reason(tmp_path):
    # issue 9 defect 4: Phi-3 long-RoPE switches frequency tables by sequence length (TensorRT-LLM:
    # PositionEmbeddingType.long_rope, extra inputs, short/long m-scales); one probed table is wrong
    # for one of the two regimes, so the model is refused rather than converted
    rope = dict(rope_type="longrope", rope_theta=10000.0, original_max_position_embeddings=64,
                short_factor=[1.0 + 0.1 * i for i in range(8)], long_factor=[2.0 + 0.5 * i for i in range(8)])
    path = save_tiny(tmp_path, "phi3", **SMALL, rope_parameters=rope, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with pytest.raises(DittoError, match=r"long-RoPE[\s\S]*PositionEmbeddingType.long_rope"):
        load_program(path)


def test_yarn_attention_factor_kept_by_native_refused_by_plugin(tmp_path):
    # issue 9 defect 4: YaRN scales cos/sin by its attention factor (0.1 ln 4 + 1 = 1.139 here).
    # fx/native use the probed table (factor included); the plugin's generation kernel rebuilds
    # RoPE from inv_freq (atan2 of the table: factor lost) times m_scale 1.0, so it is refused.
    from ditto.trtllm.gpt_attention_plugin import plugin_rotary_cos_sin

    rope = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=64)
    path = save_tiny(tmp_path, "llama", **SMALL, rope_parameters=rope)
    program = load_program(path)
    table = program.weights.load(next(n for n in program.weights.names() if n.startswith("rotary_cos_sin")))
    half = table.shape[1] // 2
    assert torch.allclose(table[:, :half].hypot(table[:, half:]), torch.tensor(1.0 + 0.1 * torch.log(torch.tensor(4.0))), atol=1e-5)
    with pytest.raises(DittoError, match=r"attention factor[\s\S]*--attention native"):
        plugin_rotary_cos_sin(table.numpy())
    plugin_rotary_cos_sin((table / table[:, :half].hypot(table[:, half:]).repeat(1, 2)).numpy())  # unit pairs pass
    assert_backends_match_hf(path, backends=("fx",), steps=2)
