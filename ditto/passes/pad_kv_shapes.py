"""Give every attention layer the same KV shape, so that one paged KV-cache pool holds them all.

ditto's runtimes and engines hold ONE pool [blocks, layers, 2, kv_heads, tokens_per_block,
head_size] (TensorRT-LLM's engine path also sizes its pools by one `head_size`). Models whose
layers differ in KV shape (MiMo-V2-Flash: 2 or 4 KV heads; Gemma 4: head_dim on sliding
layers, global_head_dim on full ones) are padded up to the largest shape, exactly:

- KV heads: each K/V head is repeated r = KV' / KV times (repeat-interleaved). Query head h read
  KV head floor(h * KV / H); with the copies it reads head floor(h * KV' / H), a copy of
  floor(floor(h * KV' / H) / r) = floor(h * KV / H): the same values. KV' is the least common
  multiple of the layers' KV-head counts and must divide every layer's query-head count.
- head size: Q, K and V are zero-padded from D to D' (q.k is unchanged: the padded products
  are 0 * 0); the softmax scale stays the model's (q_scaling' = q_scaling * sqrt(D) / sqrt(D'));
  RoPE rotates the first rotary_embedding_dim channels, which are the model's; the padded V
  channels come out as zeros and are sliced off the op's output.

The cost is KV-cache memory: a padded layer stores KV' * D' values per token instead of KV * D.
The pass logs it, and `PagedKVCache` / the engine config see only the padded, uniform shape.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.insert import fake_value, insert_op
from ditto.ops.gpt_attention import TENSOR_INPUTS
from ditto.ops.params import GPTAttentionParams
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
log = logging.getLogger(__name__)
_QKV = TENSOR_INPUTS.index("qkv")


def padded_kv_shape(attention: list[GPTAttentionParams]) -> tuple[int, int]:
    """(KV heads, head size) every layer is padded to; a DittoError when the heads cannot be
    repeated exactly (the common KV-head count must divide every layer's query heads)."""
    kv_heads = math.lcm(*(p.num_kv_heads for p in attention))
    head_size = max(p.head_size for p in attention)
    uneven = sorted({p.num_heads for p in attention if p.num_heads % kv_heads})
    if uneven:
        raise DittoError(
            f"layers with KV-head counts {sorted({p.num_kv_heads for p in attention})} share one KV-cache pool only "
            f"with {kv_heads} KV heads each, which does not divide {uneven} query heads; TensorRT-LLM's engine "
            "path sizes the cache by one KV shape, so these layers cannot be expressed"
        )
    return kv_heads, head_size


@register_pass("pad_kv_shapes", requires=("replace_attention",), before=("replace_moe",))
def pad_kv_shapes(ctx: PassContext) -> int:
    shapes = {(p.num_kv_heads, p.head_size) for p in ctx.attention}
    if len(shapes) <= 1:
        return 0
    kv_heads, head_size = padded_kv_shape(ctx.attention)
    ops = {n.kwargs["layer_idx"]: n for n in ctx.graph.nodes if n.target is torch.ops.ditto.gpt_attention.default}
    before = sum(p.num_kv_heads * p.head_size for p in ctx.attention)
    count = 0
    for i, params in enumerate(ctx.attention):
        if (params.num_kv_heads, params.head_size) == (kv_heads, head_size):
            continue
        if params.layer_idx not in ops:
            raise DittoError(f"attention layer {params.layer_idx} has no gpt_attention op in the graph")
        padded = dataclasses.replace(
            params,
            num_kv_heads=kv_heads,
            head_size=head_size,
            q_scaling=params.q_scaling * math.sqrt(params.head_size) / math.sqrt(head_size),
        )
        _pad_one(ctx.graph, ops[params.layer_idx], params, padded)
        ctx.attention[i] = padded
        count += 1
    after = len(ctx.attention) * kv_heads * head_size
    log.warning(
        "KV shapes differ between layers %s: padded to %d KV heads x head size %d in one KV-cache pool; "
        "the cache holds %.2fx the values the model needs", sorted(shapes), kv_heads, head_size, after / before,
    )
    return count


def _pad_one(graph: torch.fx.Graph, op: Node, old: GPTAttentionParams, new: GPTAttentionParams) -> None:
    H, KV, D = old.num_heads, old.num_kv_heads, old.head_size
    repeats, extra = new.num_kv_heads // KV, new.head_size - D
    qkv = op.args[_QKV]
    with graph.inserting_before(op):
        heads = insert_op(graph, aten.reshape.default, (qkv, [-1, H + 2 * KV, D]))
        q = insert_op(graph, aten.slice.Tensor, (heads, 1, 0, H))
        k = insert_op(graph, aten.slice.Tensor, (heads, 1, H, H + KV))
        v = insert_op(graph, aten.slice.Tensor, (heads, 1, H + KV, H + 2 * KV))
        if repeats > 1:
            k, v = (_repeat_heads(graph, x, KV, repeats, D) for x in (k, v))
        if extra:
            q, k, v = (_zero_pad_last(graph, x, extra) for x in (q, k, v))
        packed = insert_op(graph, aten.cat.default, ([q, k, v], 1))
        rows = insert_op(graph, aten.reshape.default, (packed, [-1, new.qkv_width]))
    op.update_arg(_QKV, rows)
    op.kwargs = {**op.kwargs, **dataclasses.asdict(new)}
    op.meta["val"] = fake_value(graph, op.target, op.args, op.kwargs)
    users = list(op.users)
    with graph.inserting_before(op.next):
        out = insert_op(graph, aten.reshape.default, (op, [-1, H, new.head_size]))
        if extra:
            out = insert_op(graph, aten.slice.Tensor, (out, 2, 0, D))
        out = insert_op(graph, aten.reshape.default, (out, [-1, H * D]))
    for user in users:
        user.replace_input_with(op, out)


def _repeat_heads(graph, x: Node, kv: int, repeats: int, d: int) -> Node:
    """[T, KV, D] -> [T, KV * r, D], head j * r + i a copy of head j."""
    x = insert_op(graph, aten.unsqueeze.default, (x, 2))
    x = insert_op(graph, aten.expand.default, (x, [-1, kv, repeats, d]))
    return insert_op(graph, aten.reshape.default, (x, [-1, kv * repeats, d]))


def _zero_pad_last(graph, x: Node, extra: int) -> Node:
    """[T, n, D] -> [T, n, D + extra], the new channels zero."""
    edge = insert_op(graph, aten.slice.Tensor, (x, 2, 0, 1))
    zeros = insert_op(graph, aten.zeros_like.default, (edge,))
    zeros = insert_op(graph, aten.expand.default, (zeros, [-1, -1, extra]))
    return insert_op(graph, aten.cat.default, ([x, zeros], 2))
