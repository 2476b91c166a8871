"""GPTAttention plugin lowering up to plugin-field construction.

TensorRT-LLM's plugin library cannot be loaded on this machine, so `create_gpt_attention_plugin`
is exercised against a TEST DOUBLE of the TensorRT module (`FakeTrt`: plugin registry, creator,
PluginField/PluginFieldCollection) that records what ditto hands to TensorRT. The expected
tables below are written out from TensorRT-LLM 1.2's `functional.gpt_attention()` (see
ditto/trtllm/gpt_attention_plugin.py for the files read). Running the plugin on a GPU node is not exercised here.
"""

from __future__ import annotations

import numpy as np
import pytest

from ditto.errors import DittoError
from ditto.ops.params import GPTAttentionParams
from ditto.trt.provider import trt_module
from ditto.trtllm.gpt_attention_plugin import (
    PluginOptions,
    create_gpt_attention_plugin,
    gpt_attention_fields,
    gpt_attention_input_names,
    plugin_rotary_cos_sin,
)
from tests.trtllm._helpers import LLAMA, PLUGIN_OPTIONS, FakeTrt

GPT2 = GPTAttentionParams(layer_idx=0, num_heads=12, num_kv_heads=12, head_size=64, tokens_per_block=64)

I32, F32, I8 = np.int32, np.float32, np.int8
SCALAR, ONE = (), (1,)

# (name, dtype, shape) of every field, in TensorRT-LLM's PluginFieldCollection order
FIELD_LAYOUT = [
    ("layer_idx", I32, SCALAR), ("num_heads", I32, SCALAR), ("vision_start", I32, SCALAR),
    ("vision_length", I32, SCALAR), ("num_kv_heads", I32, SCALAR), ("num_kv_heads_origin", I32, SCALAR),
    ("head_size", I32, SCALAR), ("unidirectional", I32, SCALAR), ("q_scaling", F32, SCALAR),
    ("attn_logit_softcapping_scale", F32, SCALAR), ("position_embedding_type", I8, SCALAR),
    ("rotary_embedding_dim", I32, SCALAR), ("rotary_embedding_base", F32, SCALAR),
    ("rotary_embedding_scale_type", I8, SCALAR), ("rotary_embedding_scale", F32, SCALAR),
    ("rotary_embedding_short_m_scale", F32, SCALAR), ("rotary_embedding_long_m_scale", F32, SCALAR),
    ("rotary_embedding_max_positions", I32, SCALAR), ("rotary_embedding_original_max_positions", I32, SCALAR),
    ("tp_size", I32, SCALAR), ("tp_rank", I32, SCALAR), ("unfuse_qkv_gemm", I8, SCALAR),
    ("context_fmha_type", I8, SCALAR), ("kv_cache_quant_mode", I32, SCALAR), ("remove_input_padding", I8, SCALAR),
    ("mask_type", I32, ONE), ("block_sparse_block_size", I32, ONE), ("block_sparse_homo_head_pattern", I8, SCALAR),
    ("block_sparse_num_local_blocks", I32, ONE), ("block_sparse_vertical_stride", I32, ONE),
    ("paged_kv_cache", I32, SCALAR), ("tokens_per_block", I32, SCALAR), ("type_id", I32, ONE),
    ("max_context_length", I32, SCALAR), ("qkv_bias_enabled", I8, SCALAR), ("do_cross_attention", I8, SCALAR),
    ("max_distance", I32, SCALAR), ("pos_shift_enabled", I8, SCALAR), ("dense_context_fmha", I8, SCALAR),
    ("use_paged_context_fmha", I8, SCALAR), ("use_fp8_context_fmha", I8, SCALAR),
    ("has_full_attention_mask", I8, SCALAR), ("use_cache", I32, ONE), ("is_spec_decoding_enabled", I8, SCALAR),
    ("spec_decoding_is_generation_length_variable", I8, SCALAR), ("spec_decoding_max_generation_length", I32, SCALAR),
    ("is_mla_enabled", I8, SCALAR), ("q_lora_rank", I32, SCALAR), ("kv_lora_rank", I32, SCALAR),
    ("qk_nope_head_dim", I32, SCALAR), ("qk_rope_head_dim", I32, SCALAR), ("v_head_dim", I32, SCALAR),
    ("fuse_fp4_quant", I8, SCALAR), ("skip_attn", I8, ONE), ("cp_size", I32, SCALAR), ("cp_rank", I32, SCALAR),
    ("cp_group", I32, ONE), ("use_logn_scaling", I8, SCALAR),
]

# the same for every model built this way (one GPU, no quantization, paged KV, packed input)
COMMON_VALUES = {
    "vision_start": -1, "vision_length": -1, "unidirectional": 1, "attn_logit_softcapping_scale": 0.0,
    "rotary_embedding_short_m_scale": 1.0, "rotary_embedding_long_m_scale": 1.0, "tp_size": 1, "tp_rank": 0,
    "unfuse_qkv_gemm": 0, "context_fmha_type": 1, "kv_cache_quant_mode": 0, "remove_input_padding": 1,
    "mask_type": 1, "block_sparse_block_size": 64, "block_sparse_homo_head_pattern": 0,
    "block_sparse_num_local_blocks": 16, "block_sparse_vertical_stride": 8, "paged_kv_cache": 1,
    "tokens_per_block": 64, "type_id": 7, "max_context_length": 1024, "qkv_bias_enabled": 0,
    "do_cross_attention": 0, "max_distance": 0, "pos_shift_enabled": 0, "dense_context_fmha": 0,
    "use_paged_context_fmha": 1, "use_fp8_context_fmha": 0, "has_full_attention_mask": 0, "use_cache": 1,
    "is_spec_decoding_enabled": 0, "spec_decoding_is_generation_length_variable": 0,
    "spec_decoding_max_generation_length": 1, "is_mla_enabled": 0, "q_lora_rank": 0, "kv_lora_rank": 0,
    "qk_nope_head_dim": 0, "qk_rope_head_dim": 0, "v_head_dim": 0, "fuse_fp4_quant": 0, "skip_attn": 0,
    "cp_size": 1, "cp_rank": 0, "cp_group": 0, "use_logn_scaling": 0,
}
MODEL_VALUES = {
    "llama": (LLAMA, {
        "layer_idx": 3, "num_heads": 32, "num_kv_heads": 8, "num_kv_heads_origin": 8, "head_size": 128,
        "q_scaling": 1.0, "position_embedding_type": 2, "rotary_embedding_dim": 128,
        "rotary_embedding_base": 500000.0, "rotary_embedding_scale_type": 1, "rotary_embedding_scale": 2.0,
        "rotary_embedding_max_positions": 8192, "rotary_embedding_original_max_positions": 4096,
    }),
    "gpt2": (GPT2, {
        "layer_idx": 0, "num_heads": 12, "num_kv_heads": 12, "num_kv_heads_origin": 12, "head_size": 64,
        "q_scaling": 1.0, "position_embedding_type": 0, "rotary_embedding_dim": 0,
        "rotary_embedding_base": 10000.0, "rotary_embedding_scale_type": 0, "rotary_embedding_scale": 1.0,
        "rotary_embedding_max_positions": 1024, "rotary_embedding_original_max_positions": 1024,
    }),
}


@pytest.mark.parametrize("model", sorted(MODEL_VALUES))
def test_fields_names_order_dtypes_and_values(model):
    params, values = MODEL_VALUES[model]
    fields = gpt_attention_fields(params, PLUGIN_OPTIONS)
    assert [name for name, _ in fields] == [name for name, _, _ in FIELD_LAYOUT]
    expected = {**COMMON_VALUES, **values}
    for (name, value), (_, dtype, shape) in zip(fields, FIELD_LAYOUT):
        assert value.dtype == np.dtype(dtype), name
        assert value.shape == shape, name
        assert value.reshape(-1)[0] == pytest.approx(expected[name], rel=1e-7, abs=0), name


def test_field_values_follow_build_options():
    options = PluginOptions(dtype="float16", tokens_per_block=64, max_context_length=77, context_fmha=False,
                            use_paged_context_fmha=False, streamingllm=True)
    fields = dict(gpt_attention_fields(GPT2, options))
    assert int(fields["type_id"][0]) == 1  # trt.DataType.HALF
    assert int(fields["context_fmha_type"]) == 0
    assert int(fields["max_context_length"]) == 77
    assert int(fields["use_paged_context_fmha"]) == 0
    assert int(fields["pos_shift_enabled"]) == int(fields["dense_context_fmha"]) == 1


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_type_ids_are_tensorrt_data_types():
    trt = trt_module("tensorrt_rtx")
    for dtype, trt_type in (("float32", trt.DataType.FLOAT), ("float16", trt.DataType.HALF),
                            ("bfloat16", trt.DataType.BF16)):
        options = PluginOptions(dtype=dtype, tokens_per_block=64, max_context_length=8)
        assert int(dict(gpt_attention_fields(GPT2, options))["type_id"][0]) == int(trt_type)


def test_mismatched_tokens_per_block_is_refused():
    options = PluginOptions(dtype="float16", tokens_per_block=32, max_context_length=8)
    with pytest.raises(DittoError, match="tokens per KV block"):
        gpt_attention_fields(LLAMA, options)


def test_input_names_for_rope_and_learned_positions():
    kv = ["sequence_length", "host_past_key_value_lengths", "host_max_attention_window_sizes",
          "host_sink_token_length", "context_lengths", "cache_indirection", "host_request_types",
          "kv_cache_block_offsets", "host_kv_cache_block_offsets", "host_kv_cache_pool_pointers",
          "host_kv_cache_pool_mapping"]
    tail = ["host_context_lengths", "host_runtime_perf_knobs", "host_context_progress"]
    assert gpt_attention_input_names(LLAMA, PLUGIN_OPTIONS) == ["qkv", *kv, "rotary_inv_freq", "rotary_cos_sin", *tail]
    assert gpt_attention_input_names(GPT2, PLUGIN_OPTIONS) == ["qkv", *kv, *tail]


def test_rotary_cos_sin_in_plugin_layout():
    positions, dim, base = 5, 8, 10000.0
    inv_freq = 1.0 / base ** (np.arange(0, dim, 2) / dim)
    angles = np.outer(np.arange(positions), inv_freq)
    halves = np.concatenate([np.cos(angles), np.sin(angles)], axis=1)  # ditto: [cos | sin]
    table = plugin_rotary_cos_sin(halves)
    assert table.shape == (1, positions * dim) and table.dtype == np.float32
    for p in range(positions):
        for i in range(dim // 2):
            k = 2 * (p * dim // 2 + i)  # TensorRT-LLM: float2 (cos, sin) per (position, frequency)
            assert table[0, k] == pytest.approx(np.cos(angles[p, i]), abs=1e-7)
            assert table[0, k + 1] == pytest.approx(np.sin(angles[p, i]), abs=1e-7)


def test_create_plugin_through_the_registry():
    creator = FakeTrt.Creator([name for name, _, _ in FIELD_LAYOUT])
    trt = FakeTrt(creator)
    plugin = create_gpt_attention_plugin(trt, LLAMA, PLUGIN_OPTIONS)
    assert plugin is not None
    assert trt.lookups == [("GPTAttention", "1", "tensorrt_llm")]
    [(name, collection)] = creator.created
    assert name == "causal_attn"
    assert [f.name for f in collection] == [name for name, _, _ in FIELD_LAYOUT]
    kinds = {np.dtype(I32): "INT32", np.dtype(F32): "FLOAT32", np.dtype(I8): "INT8"}
    assert [f.type for f in collection] == [kinds[np.dtype(dtype)] for _, dtype, _ in FIELD_LAYOUT]


def test_missing_plugin_library_says_what_to_do():
    with pytest.raises(DittoError, match="plugin library is not loaded"):
        create_gpt_attention_plugin(FakeTrt(None), LLAMA, PLUGIN_OPTIONS)


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_tensorrt_rtx_has_no_trtllm_plugins():
    trt = trt_module("tensorrt_rtx")
    with pytest.raises(DittoError, match="plugin library is not loaded"):
        create_gpt_attention_plugin(trt, LLAMA, PLUGIN_OPTIONS)


def test_plugin_version_mismatch_is_reported():
    creator = FakeTrt.Creator([name for name, _, _ in FIELD_LAYOUT] + ["a_field_from_a_newer_release"])
    with pytest.raises(DittoError, match="a_field_from_a_newer_release"):
        create_gpt_attention_plugin(FakeTrt(creator), LLAMA, PLUGIN_OPTIONS)


def test_rejected_fields_are_reported():
    creator = FakeTrt.Creator([name for name, _, _ in FIELD_LAYOUT], accept=False)
    with pytest.raises(DittoError, match="rejected the GPTAttention fields of layer 3"):
        create_gpt_attention_plugin(FakeTrt(creator), LLAMA, PLUGIN_OPTIONS)
