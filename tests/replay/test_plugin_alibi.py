"""Replay of TensorRT-LLM's GPTAttention plugin with ALiBi (position_embedding_type 4, the slopes as
the ALIBI_SLOPES input between ROTARY_COS_SIN's place and HOST_CONTEXT_LENGTH, no RoPE inputs):
the same numbers as ditto's reference op given the slopes, exactly (the same kernel runs)."""

import torch

from ditto.ops.kv_cache import block_offset, register_pool, unregister_pool
from ditto.replay.registry import REPLAYS
from tests.replay.test_layers import _gpt_attention_call


def test_alibi_plugin_maps_to_the_reference_op():
    heads, kv_heads, size, tpb = 4, 2, 8, 4
    lengths = [3, 2]
    fields = {
        "layer_idx": 0, "num_heads": heads, "num_kv_heads": kv_heads, "num_kv_heads_origin": kv_heads, "head_size": size,
        "q_scaling": 1.0, "attn_logit_softcapping_scale": 0.0, "position_embedding_type": 4, "rotary_embedding_dim": 0,
        "rotary_embedding_base": 10000.0, "rotary_embedding_scale_type": 0, "rotary_embedding_scale": 1.0,
        "rotary_embedding_max_positions": 16, "rotary_embedding_original_max_positions": 16, "tokens_per_block": tpb,
        "unidirectional": 1, "mask_type": [1], "paged_kv_cache": 1, "remove_input_padding": 1, "type_id": [0],
    }
    slopes = torch.tensor([0.5, 0.25, 0.125, 1.0])
    qkv = torch.randn(sum(lengths), (heads + 2 * kv_heads) * size, generator=torch.Generator().manual_seed(0))
    i32 = torch.int32

    def feed(pool):
        pointer = register_pool(pool)
        offsets = torch.tensor([[[[block_offset(b * 4 + j, 1, kv) for j in range(4)] for kv in (0, 1)] for b in range(2)]], dtype=i32)
        return {
            "qkv": qkv, "sequence_length": torch.tensor(lengths, dtype=i32), "host_past_key_value_lengths": torch.zeros(2, dtype=i32),
            "host_max_attention_window_sizes": torch.tensor([16], dtype=i32), "host_sink_token_length": torch.zeros(1, dtype=i32),
            "context_lengths": torch.tensor(lengths, dtype=i32), "cache_indirection": torch.zeros((2, 1, 16), dtype=i32),
            "host_request_types": torch.zeros(2, dtype=i32), "kv_cache_block_offsets": offsets, "host_kv_cache_block_offsets": offsets,
            "host_kv_cache_pool_pointers": torch.tensor([[pointer, 0]], dtype=torch.int64),
            "host_kv_cache_pool_mapping": torch.tensor([[0, 0]], dtype=i32),
            "alibi_slopes": slopes,
            "host_context_lengths": torch.tensor(lengths, dtype=i32), "host_runtime_perf_knobs": torch.full((16,), -1, dtype=torch.int64),
            "host_context_progress": torch.zeros(1, dtype=torch.int64),
        }

    pools = [torch.zeros((8, 1, 2, kv_heads, tpb, size)) for _ in range(2)]
    try:
        replayed = REPLAYS["PLUGIN_V2"].fn(_gpt_attention_call(fields, list(feed(pools[0]).values())))
        inputs = feed(pools[1])
        kwargs = {k: fields[k] for k in ("layer_idx", "num_heads", "num_kv_heads", "head_size", "q_scaling",
                                           "attn_logit_softcapping_scale", "rotary_embedding_dim", "rotary_embedding_base",
                                           "rotary_embedding_scale", "rotary_embedding_max_positions",
                                           "rotary_embedding_original_max_positions", "tokens_per_block")}
        expected = torch.ops.ditto.gpt_attention(**inputs, **kwargs, rotary_inv_freq=None, rotary_cos_sin=None,
                                                 position_embedding_type="alibi", rotary_embedding_scale_type="none",
                                                 sliding_window=16)
        assert torch.equal(replayed, expected)
        without = {k: v for k, v in inputs.items() if k != "alibi_slopes"}
        plain = torch.ops.ditto.gpt_attention(**without, **kwargs, rotary_inv_freq=None, rotary_cos_sin=None,
                                              position_embedding_type="alibi", rotary_embedding_scale_type="none",
                                              sliding_window=16)
        assert not torch.allclose(plain, expected, atol=1e-3)  # the slopes were applied
    finally:
        for pool in pools:
            unregister_pool(pool)
