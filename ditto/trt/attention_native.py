"""`gpt_attention` lowered to TensorRT's own layers (no TensorRT-LLM plugin), for TensorRT-RTX
and TensorRT without TensorRT-LLM.

TensorRT cannot follow `host_kv_cache_pool_pointers`, so a native engine takes the paged
pool itself as the input `kv_cache_pool` [num_blocks, num_layers, 2, kv_heads, tokens_per_block,
head_size] and returns the updated pool as the output `present_kv_cache_pool`; every other
input is the plugin engine's. Per layer, with T packed tokens and S = max(sequence_length):

- sequence of each token: the number of `last_token_ids` at or below its index;
- RoPE at `position_ids` (TensorRT-LLM's runtime feeds past + i there, the position the
  plugin derives from the sequence lengths), from the same cos/sin table as the reference op;
  then an RMSNorm over each head when the op has `query_norm_after_rope` / `key_norm_after_rope`;
- the new K/V are scattered into their (block unit, slot), units as in `ditto.ops.kv_cache`;
- each token gathers its sequence's keys/values for positions 0..S-1 and attends to those at
  or before its own position (within the sliding window if any), scores and softmax float32;
  ALiBi adds slope_h * (key position - query position) to the scaled scores; attention sinks
  add exp(sink_h) to the softmax's denominator.

Correct but not fast: it materialises [T, S, kv_heads, head_size] keys per layer. It exists so
the whole network builds and can be checked where no TensorRT-LLM runs.
"""

from __future__ import annotations

import math

import torch

from ditto.ops.kv_cache import layer_unit
from ditto.ops.params import GPTAttentionParams
from ditto.ops.rope import GPTJ, rotate_pair
from ditto.trt.context import ConversionContext

POOL_INPUT = "kv_cache_pool"
POOL_OUTPUT = "present_kv_cache_pool"


def _ew(ctx, a, b, op):
    return ctx.elementwise(a, b, getattr(ctx.trt.ElementWiseOperation, op))


def _int(ctx, value):
    return ctx.constant(torch.tensor([value], dtype=torch.int32), "i")


def _unsqueeze_last(ctx, x):
    return ctx.reshape(x, [ctx.dim(x, i) for i in range(len(x.shape))] + [1])


def _rope(ctx, x, cos, sin, params: GPTAttentionParams):
    """x [T, h, D] float32; cos/sin [T, 1, R/2]: `ditto.ops.rope.rotate_pair` in TensorRT layers."""
    rot, half, size = params.rotary_embedding_dim, params.rotary_embedding_dim // 2, params.head_size
    arithmetic = tuple(lambda a, b, op=op: _ew(ctx, a, b, op) for op in ("PROD", "SUM", "SUB"))
    if params.position_embedding_type == GPTJ:
        pairs = ctx.reshape(ctx.columns(x, 0, rot), [ctx.dim(x, 0), ctx.dim(x, 1), half, 2])
        even = ctx.reshape(ctx.columns(pairs, 0, 1), [ctx.dim(x, 0), ctx.dim(x, 1), half])
        odd = ctx.reshape(ctx.columns(pairs, 1, 2), [ctx.dim(x, 0), ctx.dim(x, 1), half])
        first, second = rotate_pair(even, odd, cos, sin, arithmetic)
        layer = ctx.network.add_concatenation([_unsqueeze_last(ctx, first), _unsqueeze_last(ctx, second)])
        layer.axis = 3
        rotated = ctx.reshape(ctx.out(layer, "interleave"), [ctx.dim(x, 0), ctx.dim(x, 1), rot])
    else:
        first, second = rotate_pair(ctx.columns(x, 0, half), ctx.columns(x, half, rot), cos, sin, arithmetic)
        layer = ctx.network.add_concatenation([first, second])
        layer.axis = 2
        rotated = ctx.out(layer, "rotated")
    if rot == size:
        return rotated
    layer = ctx.network.add_concatenation([rotated, ctx.columns(x, rot, size)])
    layer.axis = 2
    return ctx.out(layer, "rope")


def _stack_last(ctx, parts):
    layer = ctx.network.add_concatenation([_unsqueeze_last(ctx, p) for p in parts])
    layer.axis = len(parts[0].shape)
    return ctx.out(layer, "stack")


def _gather_nd(ctx, data, indices):
    layer = ctx.network.add_gather_v2(data, indices, ctx.trt.GatherMode.ND)
    return ctx.out(layer, "gather_nd")


def _softmax_with_sinks(ctx, scores, sinks, kv_heads: int, group: int):
    """softmax over [scores, sink_h] without the sink's column: exp(s - m) / (sum exp(s - m) + exp(sink - m)),
    m = max(max(s), sink); scores [T, KV, G, S], sinks [num_heads]."""
    trt = ctx.trt
    sink = ctx.reshape(sinks, [1, kv_heads, group, 1])
    row_max = ctx.out(ctx.network.add_reduce(scores, trt.ReduceOperation.MAX, 1 << 3, True), "row_max")
    top = _ew(ctx, row_max, sink, "MAX")  # finite: the sink is
    exp = lambda x: ctx.out(ctx.network.add_unary(x, trt.UnaryOperation.EXP), "exp")  # noqa: E731
    weights = exp(_ew(ctx, scores, top, "SUB"))
    total = ctx.out(ctx.network.add_reduce(weights, trt.ReduceOperation.SUM, 1 << 3, True), "row_sum")
    total = _ew(ctx, total, exp(_ew(ctx, sink, top, "SUB")), "SUM")
    return _ew(ctx, weights, total, "DIV")


def _rms_norm_after_rope(ctx, x, norm, head_size: int):
    """x [T, heads, D] float32 * rsqrt(mean(x^2, -1) + eps) * weight; `norm` [D + 1] is the weight then eps."""
    trt = ctx.trt
    norm = ctx.cast(norm, torch.float32)
    weight = ctx.reshape(ctx.columns(ctx.reshape(norm, [1, head_size + 1]), 0, head_size), [1, 1, head_size])
    eps = ctx.reshape(ctx.columns(ctx.reshape(norm, [1, head_size + 1]), head_size, head_size + 1), [1, 1, 1])
    mean = ctx.out(ctx.network.add_reduce(_ew(ctx, x, x, "PROD"), trt.ReduceOperation.AVG, 1 << 2, True), "mean_square")
    root = ctx.out(ctx.network.add_unary(_ew(ctx, mean, eps, "SUM"), trt.UnaryOperation.SQRT), "rms")
    return _ew(ctx, _ew(ctx, x, root, "DIV"), weight, "PROD")


def lower(ctx: ConversionContext, params: GPTAttentionParams, inputs: dict, state: dict):
    """Native lowering of one gpt_attention; `state` carries the pool from layer to layer."""
    trt = ctx.trt
    H, KV, D, tpb = params.num_heads, params.num_kv_heads, params.head_size, params.tokens_per_block
    qkv = inputs["qkv"]
    dtype = ctx.torch_dtype(qkv.dtype)
    tokens = ctx.dim(qkv, 0)
    q = ctx.cast(ctx.reshape(ctx.columns(qkv, 0, H * D), [tokens, H, D]), torch.float32)
    k = ctx.cast(ctx.reshape(ctx.columns(qkv, H * D, (H + KV) * D), [tokens, KV, D]), torch.float32)
    v = ctx.reshape(ctx.columns(qkv, (H + KV) * D, (H + 2 * KV) * D), [tokens, KV, D])

    positions = ctx.cast(state["position_ids"], torch.int32)
    if params.has_rope:
        table = ctx.network.add_gather(inputs["rotary_cos_sin"], positions, 0)
        rows = ctx.out(table, "cos_sin")  # [T, R] float32
        half = params.rotary_embedding_dim // 2
        cos = ctx.reshape(ctx.columns(rows, 0, half), [tokens, 1, half])
        sin = ctx.reshape(ctx.columns(rows, half, 2 * half), [tokens, 1, half])
        q, k = _rope(ctx, q, cos, sin, params), _rope(ctx, k, cos, sin, params)
    if "query_norm_after_rope" in inputs:
        q = _rms_norm_after_rope(ctx, q, inputs["query_norm_after_rope"], D)
    if "key_norm_after_rope" in inputs:
        k = _rms_norm_after_rope(ctx, k, inputs["key_norm_after_rope"], D)
    if "query_position_scale" in inputs:  # q * table[position], after RoPE
        factor = ctx.out(ctx.network.add_gather(ctx.cast(inputs["query_position_scale"], torch.float32), positions, 0),
                         "query_scale")
        q = _ew(ctx, q, ctx.reshape(factor, [tokens, 1, 1]), "PROD")

    # which sequence each token belongs to, its block and slot
    ones = _ew(ctx, _ew(ctx, positions, _int(ctx, 0), "PROD"), _int(ctx, 1), "SUM")
    axis = ctx.constant(torch.tensor(0, dtype=torch.int32), keep_0d=True)
    cumulative = ctx.network.add_cumulative(ones, axis, trt.CumulativeOperation.SUM, True, False)
    index = ctx.out(cumulative, "token_index")  # 0..T-1
    last = ctx.cast(state["last_token_ids"], torch.int32)
    before = _ew(ctx, ctx.reshape(last, [1, ctx.dim(last, 0)]), ctx.reshape(index, [tokens, 1]), "LESS")
    before_or_at = _ew(ctx, before, _ew(ctx, ctx.reshape(last, [1, ctx.dim(last, 0)]), ctx.reshape(index, [tokens, 1]), "EQUAL"), "OR")
    seq = ctx.out(ctx.network.add_reduce(ctx.cast(before_or_at, torch.int32), trt.ReduceOperation.SUM, 2, False), "seq")
    block = _ew(ctx, positions, _int(ctx, tpb), "FLOOR_DIV")
    slot = _ew(ctx, positions, _ew(ctx, block, _int(ctx, tpb), "PROD"), "SUB")
    offsets = inputs["kv_cache_block_offsets"]
    offsets = ctx.reshape(offsets, [ctx.dim(offsets, 1), 2, ctx.dim(offsets, 3)])  # [B, 2, M]
    layer_units = _int(ctx, layer_unit(0, params.layer_idx))  # native engines hold one pool

    def unit(kv: int, seq_ids, blocks):
        which = _ew(ctx, _ew(ctx, seq_ids, _int(ctx, 0), "PROD"), _int(ctx, kv), "SUM")
        return _ew(ctx, _gather_nd(ctx, offsets, _stack_last(ctx, [seq_ids, which, blocks])), layer_units, "SUM")

    # write the new K and V
    pool = state["pool"]  # [units, tokens_per_block, kv_heads, head_size]
    for kv, values in ((0, k), (1, v)):
        where = _stack_last(ctx, [unit(kv, seq, block), slot])
        scatter = ctx.network.add_scatter(pool, where, ctx.cast(values, ctx.torch_dtype(pool.dtype)), trt.ScatterMode.ND)
        pool = ctx.out(scatter, "kv_write")
    state["pool"] = pool

    # read every position 0..S-1 of each token's sequence, S the longest sequence rounded up to whole
    # KV blocks (at most the arange's max_seq_len): the positions past a sequence's end are masked
    # below, and S changes once per block of decode steps instead of every step, so a runtime that
    # keeps one plan per input shape (a CUDA graph in ditto.replay) reuses it for a block of steps
    longest = ctx.out(ctx.network.add_reduce(ctx.cast(inputs["sequence_length"], torch.int32), trt.ReduceOperation.MAX, 1, True), "longest")
    blocks = _ew(ctx, _ew(ctx, longest, _int(ctx, tpb - 1), "SUM"), _int(ctx, tpb), "FLOOR_DIV")
    span_limit = ctx.cast(ctx.dim(state["arange"], 0), torch.int32)
    longest = _ew(ctx, _ew(ctx, blocks, _int(ctx, tpb), "PROD"), span_limit, "MIN")
    key_pos = ctx.network.add_slice(state["arange"], (0,), (1,), (1,))
    key_pos.set_input(2, ctx.cast_int64(longest))
    key_pos = ctx.out(key_pos, "key_positions")  # [S]
    span = ctx.dim(key_pos, 0)
    key_block = _ew(ctx, key_pos, _int(ctx, tpb), "FLOOR_DIV")
    key_slot = _ew(ctx, key_pos, _ew(ctx, key_block, _int(ctx, tpb), "PROD"), "SUB")
    zeros = _ew(ctx, ctx.reshape(key_pos, [1, span]), _int(ctx, 0), "PROD")  # [1, S]
    seq_grid = _ew(ctx, ctx.reshape(seq, [tokens, 1]), zeros, "SUM")  # [T, S]
    block_grid = _ew(ctx, _ew(ctx, ctx.reshape(seq, [tokens, 1]), _int(ctx, 0), "PROD"), ctx.reshape(key_block, [1, span]), "SUM")
    slot_grid = _ew(ctx, _ew(ctx, ctx.reshape(seq, [tokens, 1]), _int(ctx, 0), "PROD"), ctx.reshape(key_slot, [1, span]), "SUM")
    keys = _gather_nd(ctx, pool, _stack_last(ctx, [unit(0, seq_grid, block_grid), slot_grid]))  # [T, S, KV, D]
    values = _gather_nd(ctx, pool, _stack_last(ctx, [unit(1, seq_grid, block_grid), slot_grid]))

    group = H // KV
    q = ctx.reshape(q, [tokens, KV, group, D])
    keys_t = ctx.transpose(ctx.cast(keys, torch.float32), [0, 2, 3, 1])  # [T, KV, D, S]
    op = trt.MatrixOperation
    scores = ctx.out(ctx.network.add_matrix_multiply(q, op.NONE, keys_t, op.NONE), "scores")  # [T, KV, G, S]
    scale = 1.0 / (math.sqrt(D) * params.q_scaling)
    scores = _ew(ctx, scores, ctx.scalar(scale, scores), "PROD")
    if params.attn_logit_softcapping_scale > 0:
        cap = params.attn_logit_softcapping_scale
        scores = _ew(ctx, scores, ctx.scalar(1.0 / cap, scores), "PROD")
        scores = ctx.out(ctx.network.add_activation(scores, trt.ActivationType.TANH), "softcap")
        scores = _ew(ctx, scores, ctx.scalar(cap, scores), "PROD")
    query_pos = ctx.reshape(positions, [tokens, 1])
    keys_row = ctx.reshape(key_pos, [1, span])
    if params.has_alibi:  # slope_h * (key - query), heads as [KV, G]
        distance = ctx.cast(ctx.reshape(_ew(ctx, keys_row, query_pos, "SUB"), [tokens, 1, 1, span]), torch.float32)
        slopes = ctx.reshape(ctx.cast(inputs["alibi_slopes"], torch.float32), [1, KV, group, 1])
        scores = _ew(ctx, scores, _ew(ctx, slopes, distance, "PROD"), "SUM")
    allowed = _ew(ctx, _ew(ctx, keys_row, query_pos, "LESS"), _ew(ctx, keys_row, query_pos, "EQUAL"), "OR")
    if params.sliding_window > 0:
        oldest = _ew(ctx, query_pos, _int(ctx, params.sliding_window), "SUB")
        allowed = _ew(ctx, allowed, _ew(ctx, keys_row, oldest, "GREATER"), "AND")
    allowed = ctx.reshape(allowed, [tokens, 1, 1, span])
    masked = ctx.to_rank(ctx.scalar(float("-inf"), scores), 4)
    allowed_b = ctx.to_rank(allowed, 4)
    select = ctx.network.add_select(allowed_b, scores, masked)
    scores = ctx.out(select, "masked")
    if "attention_sinks" in inputs:
        probs = _softmax_with_sinks(ctx, scores, ctx.cast(inputs["attention_sinks"], torch.float32), KV, group)
    else:
        softmax = ctx.network.add_softmax(scores)
        softmax.axes = 1 << 3
        probs = ctx.out(softmax, "probs")
    values_t = ctx.transpose(ctx.cast(values, torch.float32), [0, 2, 1, 3])  # [T, KV, S, D]
    out = ctx.out(ctx.network.add_matrix_multiply(probs, op.NONE, values_t, op.NONE), "context")  # [T, KV, G, D]
    return ctx.cast(ctx.reshape(out, [tokens, H * D]), dtype)
