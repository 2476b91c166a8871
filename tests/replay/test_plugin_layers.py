"""Replay of the GPTAttention plugin layer (a test double: TensorRT-RTX has no plugin layers) against
ditto's reference op: RoPE, ALiBi, refused fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ditto.ops.kv_cache import unregister_pool
from ditto.replay import ReplayError
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
    randn,
)

# ---- plugins (test double: TensorRT-RTX has no plugin layers or TensorRT-LLM plugins) ----


def test_gpt_attention_plugin_maps_to_the_reference_op():
    rotary = 8
    fields = plugin_fields(2, rotary)  # PositionEmbeddingType.rope_gpt_neox
    positions = np.arange(16)[:, None] * (10000.0 ** (-np.arange(0, rotary, 2) / rotary))[None]
    cos, sin = np.cos(positions).astype(np.float32), np.sin(positions).astype(np.float32)
    plugin_table = np.stack([cos, sin], axis=-1).reshape(1, -1)  # TensorRT-LLM: a (cos, sin) pair per frequency
    reference_table = np.concatenate([cos, sin], axis=-1)  # ditto's op: all cos, then all sin
    qkv = torch.from_numpy(randn(sum(LENGTHS), (HEADS + 2 * KV_HEADS) * HEAD_SIZE))

    def inputs(pool, table):
        return plugin_inputs(pool, qkv, {"rotary_inv_freq": torch.zeros(rotary // 2), "rotary_cos_sin": torch.from_numpy(table)})

    pools = [new_pool() for _ in range(2)]
    try:
        feed = inputs(pools[0], plugin_table)
        replayed = REPLAYS["PLUGIN_V2"].fn(gpt_attention_call(fields, list(feed.values())))
        feed = inputs(pools[1], reference_table)
        kwargs = {k: fields[k] for k in OP_FIELDS}
        expected = torch.ops.ditto.gpt_attention(**feed, **kwargs, position_embedding_type="rope_gpt_neox",
                                                 rotary_embedding_scale_type="none", sliding_window=16)
        assert torch.equal(replayed, expected)
        assert torch.equal(pools[0], pools[1])  # the same K/V written into the cache

        for bad, match in (({"paged_kv_cache": 0}, "paged_kv_cache = 0"), ({"new_field": 1}, "new_field")):
            with pytest.raises(ReplayError, match=match):
                REPLAYS["PLUGIN_V2"].fn(gpt_attention_call({**fields, **bad}, list(feed.values())))
        with pytest.raises(ReplayError, match="plugin_fields"):
            REPLAYS["PLUGIN_V2"].fn(gpt_attention_call(None, list(feed.values())))
    finally:
        for pool in pools:
            unregister_pool(pool)


def test_alibi_plugin_maps_to_the_reference_op():
    """Replay of TensorRT-LLM's GPTAttention plugin with ALiBi (position_embedding_type 4, the slopes as
    the ALIBI_SLOPES input between ROTARY_COS_SIN's place and HOST_CONTEXT_LENGTH, no RoPE inputs):
    the same numbers as ditto's reference op given the slopes, exactly (the same kernel runs)."""
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
