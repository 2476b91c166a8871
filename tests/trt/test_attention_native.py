"""The native TensorRT lowering of `gpt_attention` (ditto/trt/attention_native.py), layer by
layer, against the dense reference of tests/ops/test_gpt_attention_reference.py.

Two attention layers are lowered into one hand-made network (the pool passes from one to the
next, as in `ditto build`), replayed step by step over a paged cache with 4 tokens per block:
several blocks per sequence, GQA, a sliding window shorter than the sequences, soft-capping,
q_scaling != 1, halves and interleaved RoPE on part of the head. The built-in tiny models
reach none of the window, soft-cap, interleaved or multi-block paths through TensorRT.

Tolerance: float32 on both sides, summation order only: 1e-5 of the largest value.
"""

from __future__ import annotations

import pytest
import torch

from ditto.ops.params import GPTAttentionParams
from ditto.replay import replay_network
from ditto.runtime.paged_cache import PagedKVCache
from ditto.trt import attention_native
from ditto.trt.context import ConversionContext
from tests import attention_reference as ref
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip("tensorrt_rtx")
TOKENS_PER_BLOCK = 4


def lowered_network(layers: list[GPTAttentionParams], table: torch.Tensor):
    """A network: qkv0, qkv1 and the engine inputs the lowering reads -> out0, out1 and the pool."""
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    ctx = ConversionContext(trt, network)
    i32 = trt.int32
    inputs = {
        "position_ids": network.add_input("position_ids", i32, (-1,)),
        "last_token_ids": network.add_input("last_token_ids", i32, (-1,)),
        "sequence_length": network.add_input("sequence_length", i32, (-1,)),
        "kv_cache_block_offsets": network.add_input("kv_cache_block_offsets", i32, (1, -1, 2, -1)),
    }
    static = (len(layers), 2, ref.KV, TOKENS_PER_BLOCK, ref.D)
    pool = network.add_input(attention_native.POOL_INPUT, trt.float32, (-1, *static))
    units = ctx.reshape(pool, [-1, ref.KV, TOKENS_PER_BLOCK, ref.D])
    state = {
        "pool": ctx.transpose(units, [0, 2, 1, 3]),
        "arange": ctx.constant(torch.arange(ref.MAX_SEQ_LEN, dtype=torch.int32), "arange"),
        "position_ids": inputs["position_ids"],
        "last_token_ids": inputs["last_token_ids"],
    }
    rotary = ctx.constant(table, "rotary_cos_sin")
    for params in layers:
        qkv = network.add_input(f"qkv{params.layer_idx}", trt.float32, (-1, params.qkv_width))
        out = attention_native.lower(ctx, params, {**inputs, "qkv": qkv, "rotary_cos_sin": rotary}, state)
        out.name = f"out{params.layer_idx}"
        network.mark_output(out)
    present = ctx.reshape(ctx.transpose(state["pool"], [0, 2, 1, 3]), [-1, *static])
    present.name = attention_native.POOL_OUTPUT
    network.mark_output(present)
    return network, (builder, ctx.keep_alive)


@pytest.mark.parametrize("case", sorted(ref.CASES))
def test_native_lowering_matches_dense_attention(case):
    layers = [GPTAttentionParams(layer_idx=i, num_heads=ref.H, num_kv_heads=ref.KV, head_size=ref.D, tokens_per_block=TOKENS_PER_BLOCK,
                                 **ref.CASES[case]) for i in range(2)]
    table = ref.cos_sin_table(ref.MAX_SEQ_LEN, layers[0].rotary_embedding_dim or 2)
    network, _alive = lowered_network(layers, table)
    gen = torch.Generator().manual_seed(1)
    rows = [[torch.randn(ref.MAX_SEQ_LEN, layers[0].qkv_width, generator=gen) * 2 for _ in ref.PROMPTS] for _ in layers]
    cache = PagedKVCache(layers, max_seq_len=ref.MAX_SEQ_LEN, batch=len(ref.PROMPTS), dtype=torch.float32)
    try:
        lengths = [0] * len(ref.PROMPTS)
        for step in range(ref.STEPS):
            new = list(ref.PROMPTS) if step == 0 else [1] * len(ref.PROMPTS)
            inputs = cache.step_inputs([[7] * n for n in new], lengths, ref.PROMPTS, is_context=step == 0)
            feed = {name: inputs[name] for name in ("position_ids", "last_token_ids", "sequence_length", "kv_cache_block_offsets")}
            feed[attention_native.POOL_INPUT] = cache.pool
            for params in layers:
                feed[f"qkv{params.layer_idx}"] = torch.cat([r[n : n + k] for r, n, k in zip(rows[params.layer_idx], lengths, new)])
            got = replay_network(network, feed)
            cache.pool.copy_(got[attention_native.POOL_OUTPUT])
            for params in layers:
                want = torch.cat([ref.dense_attention(r[: n + k], params, table)[n:] for r, n, k in zip(rows[params.layer_idx], lengths, new)])
                error = (got[f"out{params.layer_idx}"] - want).abs().max().item()
                assert error <= ref.TOLERANCE * want.abs().max().item(), (case, step, params.layer_idx, error)
            lengths = [n + k for n, k in zip(lengths, new)]
    finally:
        cache.close()
