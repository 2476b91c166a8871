"""Give every attention layer the same KV shape, so that one paged KV-cache pool holds them all.

ditto's runtimes and engines hold ONE pool [blocks, layers, 2, kv_heads, tokens_per_block,
head_size] (TensorRT-LLM's engine path also sizes its pools by one `head_size`). Models whose
layers differ in KV shape (MiMo-V2-Flash: 2 or 4 KV heads; Gemma 4: head_dim on sliding
layers, global_head_dim on full ones) are padded up to the largest shape, exactly:

- KV heads: each K/V head is repeated r = KV' / KV times (repeat-interleaved). Query head h read
  KV head floor(h * KV / H); with the copies it reads head floor(h * KV' / H), a copy of
  floor(floor(h * KV' / H) / r) = floor(h * KV / H): the same values. KV' is the least common
  multiple of the layers' KV-head counts.
- query heads, where KV' does not divide a layer's H (Dots3: 4 heads on indexed layers, 2 on
  sliding ones, each with as many KV heads): each query head is repeated s = lcm(H, KV') / H times
  (repeat-interleaved, H' = H * s; refused with per-head ALiBi slopes or sinks). Copy i of head h, head
  h * s + i, reads KV' head floor((h * s + i) * KV' / H'), a copy of floor((h + i / s) * KV / H) =
  floor(h * KV / H) (with g = H / KV and h = a g + b, b + i / s < g): its own K/V. The op's output
  keeps copy 0 of each head. The cost is compute: the layer attends with s times its heads.
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
    """(KV heads, head size) every layer is padded to: the least common multiple of the KV-head
    counts, the widest head."""
    return math.lcm(*(p.num_kv_heads for p in attention)), max(p.head_size for p in attention)


def query_repeats(num_heads: int, kv_heads: int) -> int:
    """How many times each of a layer's `num_heads` query heads is repeated so that `kv_heads` KV
    heads divide them: 1 when they already do."""
    return math.lcm(num_heads, kv_heads) // num_heads


@register_pass("pad_kv_shapes", requires=("replace_attention",), before=("replace_moe",))
def pad_kv_shapes(ctx: PassContext) -> int:
    shapes = {(p.num_kv_heads, p.head_size) for p in ctx.attention}
    if len(shapes) <= 1:
        return 0
    kv_heads, head_size = padded_kv_shape(ctx.attention)
    ops = {n.kwargs["layer_idx"]: n for n in ctx.graph.nodes if n.target is torch.ops.ditto.gpt_attention.default}
    before = sum(p.num_kv_heads * p.head_size for p in ctx.attention)
    repeated = sorted({p.num_heads for p in ctx.attention if query_repeats(p.num_heads, kv_heads) > 1})
    count = 0
    for i, params in enumerate(ctx.attention):
        if (params.num_kv_heads, params.head_size) == (kv_heads, head_size):
            continue
        if params.layer_idx not in ops:
            raise DittoError(f"attention layer {params.layer_idx} has no gpt_attention op in the graph")
        per_head = [name for name in ("alibi_slopes", "attention_sinks") if ops[params.layer_idx].kwargs.get(name) is not None]
        if query_repeats(params.num_heads, kv_heads) > 1 and per_head:
            raise DittoError(
                f"attention layer {params.layer_idx} has {params.num_heads} query heads, which {kv_heads} KV heads (the "
                f"least common multiple of the layers' {sorted({p.num_kv_heads for p in ctx.attention})}, one KV-cache "
                f"pool) do not divide, and per-head {' and '.join(per_head)}: ditto repeats query heads only without "
                "them, so these layers cannot share one KV shape yet")
        padded = dataclasses.replace(
            params,
            num_heads=params.num_heads * query_repeats(params.num_heads, kv_heads),
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
    if repeated:
        log.warning("layers with %s query heads have them repeated to a multiple of %d KV heads; they attend with "
                    "that many more heads", repeated, kv_heads)
    return count


def _pad_one(graph: torch.fx.Graph, op: Node, old: GPTAttentionParams, new: GPTAttentionParams) -> None:
    H, KV, D = old.num_heads, old.num_kv_heads, old.head_size
    repeats, extra = new.num_kv_heads // KV, new.head_size - D
    copies = new.num_heads // H  # of each query head
    qkv = op.args[_QKV]
    with graph.inserting_before(op):
        heads = insert_op(graph, aten.reshape.default, (qkv, [-1, H + 2 * KV, D]))
        q = insert_op(graph, aten.slice.Tensor, (heads, 1, 0, H))
        k = insert_op(graph, aten.slice.Tensor, (heads, 1, H, H + KV))
        v = insert_op(graph, aten.slice.Tensor, (heads, 1, H + KV, H + 2 * KV))
        if repeats > 1:
            k, v = (_repeat_heads(graph, x, KV, repeats, D) for x in (k, v))
        if copies > 1:
            q = _repeat_heads(graph, q, H, copies, D)
        if extra:
            q, k, v = (_zero_pad_last(graph, x, extra) for x in (q, k, v))
        packed = insert_op(graph, aten.cat.default, ([q, k, v], 1))
        rows = insert_op(graph, aten.reshape.default, (packed, [-1, new.qkv_width]))
    op.update_arg(_QKV, rows)
    op.kwargs = {**op.kwargs, **dataclasses.asdict(new)}
    op.meta["val"] = fake_value(graph, op.target, op.args, op.kwargs)
    users = list(op.users)
    with graph.inserting_before(op.next):
        out = insert_op(graph, aten.reshape.default, (op, [-1, H, copies, new.head_size]))
        out = insert_op(graph, aten.select.int, (out, 2, 0))  # copy 0 of each query head
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
