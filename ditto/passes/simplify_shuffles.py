"""Fold the shape shuffles the attention rewrite and fusion leave behind.

- permute(permute(x, a), b) -> permute(x, a∘b); transpose is a permute; identity -> x
- reshape/view(reshape/view(x)) -> reshape(x); reshape to x's own shape -> x
- cat([slice(y, d, 0, a), slice(y, d, a, b), ..., slice(y, d, z, end)], d) -> y, and the same
  for the getitems of one split(y): the packed QKV becomes the fused projection itself.
"""

from __future__ import annotations

import operator

import torch

from ditto.graph.nodes import SLICE_END, fake, is_call
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def _perm(node) -> list[int] | None:
    if not is_call(node, aten.permute.default, aten.transpose.int):
        return None
    rank = len(fake(node).shape)
    if is_call(node, aten.permute.default):
        return [d % rank for d in node.args[1]]
    if is_call(node, aten.transpose.int):
        perm = list(range(rank))
        a, b = node.args[1] % rank, node.args[2] % rank
        perm[a], perm[b] = perm[b], perm[a]
        return perm
    return None


# after fuse_parallel_linears: folds the slices of fused projections back into them
@register_pass("simplify_shuffles", after=("fuse_parallel_linears",))
def simplify_shuffles(ctx: PassContext) -> int:
    count = 0
    for node in list(ctx.graph.nodes):
        if node not in ctx.graph.nodes or node.op != "call_function":
            continue
        perm = _perm(node)
        if perm is not None:
            if perm == sorted(perm):
                node.replace_all_uses_with(node.args[0])
                count += 1
                continue
            inner = _perm(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
            if inner is not None:
                node.target = aten.permute.default
                node.args = (node.args[0].args[0], [inner[p] for p in perm])
                count += 1
        elif is_call(node, *_VIEWS):
            source = node.args[0]
            if _same_shape(fake(source).shape, fake(node).shape):
                node.replace_all_uses_with(source)
                count += 1
            elif is_call(source, *_VIEWS):
                node.args = (source.args[0], node.args[1])
                node.target = aten.reshape.default
                count += 1
        elif is_call(node, aten.cat.default):
            whole = _covered_source(node)
            if whole is not None:
                node.replace_all_uses_with(whole)
                count += 1
    if count:
        ctx.graph.eliminate_dead_code()
    return count


def _same_shape(a, b) -> bool:
    """Equal shapes, symbolic sizes compared by their expression."""
    return len(a) == len(b) and all(str(x) == str(y) for x, y in zip(a, b))


def _covered_source(cat):
    parts = cat.args[0]
    dim = cat.args[1] if len(cat.args) > 1 else 0
    if len(parts) < 2:
        return None
    if all(is_call(p, aten.slice.Tensor) for p in parts):
        source = parts[0].args[0]
        rank = len(fake(source).shape)
        if any(p.args[0] is not source or p.args[1] % rank != dim % rank or (p.args[4] if len(p.args) > 4 else 1) != 1 for p in parts):
            return None
        size = fake(source).shape[dim]
        position = 0
        for p in parts:
            start, end = p.args[2], p.args[3]
            if start != position:
                return None
            position = end
        if position in (SLICE_END, None) or position == size:
            return source
        return None
    if all(is_call(p, operator.getitem) for p in parts):
        split = parts[0].args[0]
        if not is_call(split, aten.split.Tensor, aten.split_with_sizes.default):
            return None
        rank = len(fake(split.args[0]).shape)
        split_dim = split.args[2] if len(split.args) > 2 else 0
        if split_dim % rank != dim % rank:
            return None
        if [p.args[0] for p in parts] != [split] * len(parts) or [p.args[1] for p in parts] != list(range(len(parts))):
            return None
        if len(parts) != len(fake_list(split)):
            return None
        return split.args[0]
    return None


def fake_list(node):
    val = node.meta.get("val")
    return val if isinstance(val, (list, tuple)) else []
