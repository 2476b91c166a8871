"""Replay of TensorRT-LLM's GPTAttention plugin with ALiBi (position_embedding_type 4, the slopes as
the ALIBI_SLOPES input between ROTARY_COS_SIN's place and HOST_CONTEXT_LENGTH, no RoPE inputs):
the same numbers as ditto's reference op given the slopes, exactly (the same kernel runs)."""

import torch

from ditto.ops.kv_cache import unregister_pool
from ditto.replay.registry import REPLAYS
from tests.replay._helpers import (
    HEAD_SIZE,
    HEADS,
    KV_HEADS,
    LENGTHS,
    OP_FIELDS,
    gpt_attention_call,
    new_pool,
    plugin_fields,
    plugin_inputs,
)


def test_alibi_plugin_maps_to_the_reference_op():
    fields = plugin_fields(4, 0)  # PositionEmbeddingType.alibi, no RoPE
    slopes = torch.tensor([0.5, 0.25, 0.125, 1.0])
    qkv = torch.randn(sum(LENGTHS), (HEADS + 2 * KV_HEADS) * HEAD_SIZE, generator=torch.Generator().manual_seed(0))

    def feed(pool):
        return plugin_inputs(pool, qkv, {"alibi_slopes": slopes})

    pools = [new_pool() for _ in range(2)]
    try:
        replayed = REPLAYS["PLUGIN_V2"].fn(gpt_attention_call(fields, list(feed(pools[0]).values())))
        inputs = feed(pools[1])
        kwargs = {k: fields[k] for k in OP_FIELDS}
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
