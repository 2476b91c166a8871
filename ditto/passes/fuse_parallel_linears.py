"""Fuse projections that read the same input into one (QKV, gate/up).

before: a = linear(x, Wq[, bq]); b = linear(x, Wk[, bk]); c = linear(x, Wv[, bv])
after:  y = linear(x, cat([Wq, Wk, Wv])[, cat([bq, bk, bv])])
        a = slice(y, -1, 0, nq); b = slice(y, -1, nq, nq + nk); c = slice(y, -1, nq + nk, end)

The fused weight is lazy (`Concat` of the sources); a missing bias becomes zeros. Its name
joins the parts' names: q_proj + k_proj + v_proj -> q_k_v_proj.
"""

from __future__ import annotations

import os

import torch

from ditto.graph.insert import insert_op
from ditto.graph.nodes import fake, is_call
from ditto.models.weights import Concat, InMemoryTensor, WeightSpec
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten


# after the recognisers: they match the separate q/k/v, router and lm_head projections
@register_pass("fuse_parallel_linears", after=("replace_attention", "replace_moe", "gather_last_token"))
def fuse_parallel_linears(ctx: PassContext) -> int:
    groups: dict = {}
    for node in ctx.graph.nodes:
        if is_call(node, aten.linear.default) and _fusable(ctx, node):
            groups.setdefault(node.args[0], []).append(node)
    count = 0
    for linears in groups.values():
        if len(linears) > 1:
            _fuse(ctx, linears)
            count += 1
    return count


def _fusable(ctx: PassContext, node) -> bool:
    weight = node.args[1]
    bias = node.args[2] if len(node.args) > 2 else None
    ok = weight.op == "get_attr" and weight.target in ctx.weights and len(weight.users) == 1
    if bias is not None:
        ok = ok and bias.op == "get_attr" and bias.target in ctx.weights
    return ok and len(fake(weight).shape) == 2


def _fuse(ctx: PassContext, linears: list) -> None:
    graph = ctx.graph
    weights = [n.args[1] for n in linears]
    biases = [n.args[2] if len(n.args) > 2 else None for n in linears]
    widths = [int(fake(w).shape[0]) for w in weights]
    dtype = fake(weights[0]).dtype
    name = _joined_name([w.target for w in weights])
    weight_spec = WeightSpec(
        (sum(widths), int(fake(weights[0]).shape[1])), dtype, Concat(tuple(ctx.weights.spec(w.target).source for w in weights))
    )
    fused_weight = ctx.add_weight(name, weight_spec)
    fused_bias = None
    if any(b is not None for b in biases):
        parts = tuple(
            ctx.weights.spec(b.target).source if b is not None else InMemoryTensor(torch.zeros(width, dtype=dtype))
            for b, width in zip(biases, widths)
        )
        bias_name = _joined_name([b.target for b in biases if b is not None])
        fused_bias = ctx.add_weight(bias_name, WeightSpec((sum(widths),), dtype, Concat(parts)))
    first = linears[0]  # collected in graph order
    with graph.inserting_before(first):
        args = (first.args[0], fused_weight) + ((fused_bias,) if fused_bias is not None else ())
        fused = insert_op(graph, aten.linear.default, args, name=name.removesuffix("_weight"))
        start = 0
        for node, width in zip(linears, widths):
            part = insert_op(graph, aten.slice.Tensor, (fused, -1, start, start + width))
            start += width
            part.meta["nn_module_stack"] = node.meta.get("nn_module_stack", {})
            node.replace_all_uses_with(part)
    for node in linears:
        graph.erase_node(node)
    for attr in [*weights, *[b for b in biases if b is not None]]:
        if not attr.users:
            graph.erase_node(attr)
            ctx.weights.remove(attr.target)



def _joined_name(names: list[str]) -> str:
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("_") + 1]
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]
    suffix = suffix[suffix.find("_") :] if "_" in suffix else ""
    middles = [n[len(prefix) : len(n) - len(suffix)] for n in names]
    return prefix + "_".join(middles) + suffix
