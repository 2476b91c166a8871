"""Normalise eager attention to SDPA so one recogniser handles both.

before: p = softmax(matmul(q, transpose(k, -2, -1)) * s + mask, -1) [casts, dropout(train=False)]
        o = matmul(p, v)
after:  o = scaled_dot_product_attention(q, k, v, mask, scale=s)

Attention logit soft-capping (Gemma 2: scores = cap * tanh(scores / cap) between the scale and
the mask) has no SDPA argument: the SDPA node carries it as `node.meta["attn_logit_softcapping"]`
and `replace_attention` turns it into the op's `attn_logit_softcapping_scale`, TensorRT-LLM's
field with the same formula (applied after the 1/sqrt(d)*q_scaling scale).
"""

from __future__ import annotations

import torch
from torch.fx import Node

from ditto.graph.insert import insert_op
from ditto.graph.nodes import fake, is_call
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_CASTS = (aten._to_copy.default, aten.to.dtype)
_SOFTMAX = (aten._softmax.default, aten.softmax.int)
_MATMUL = (aten.matmul.default, aten.bmm.default)
SOFTCAP_META = "attn_logit_softcapping"


@register_pass("eager_attention_to_sdpa")
def eager_attention_to_sdpa(ctx: PassContext) -> int:
    count = 0
    for softmax in [n for n in ctx.graph.nodes if is_call(n, *_SOFTMAX)]:
        match = _match(softmax)
        if match is None:
            continue
        q, k, v, mask, scale, softcap, out = match
        with ctx.graph.inserting_before(out):
            sdpa = insert_op(ctx.graph, aten.scaled_dot_product_attention.default, (q, k, v, mask), {"scale": scale})
        if softcap:
            sdpa.meta[SOFTCAP_META] = softcap
        out.replace_all_uses_with(sdpa)
        count += 1
    if count:
        ctx.graph.eliminate_dead_code()
    return count


def _skip_casts(node: Node) -> Node:
    while is_call(node, *_CASTS) or (is_call(node, aten.dropout.default) and node.args[2] is False):
        node = node.args[0]
    return node


def _match(softmax: Node):
    if softmax.args[1] not in (-1, len(fake(softmax).shape) - 1):
        return None
    scores = _skip_casts(softmax.args[0])
    mask = None
    if is_call(scores, aten.add.Tensor):
        scores, mask = scores.args
        if is_call(mask, aten.matmul.default, aten.mul.Tensor, aten.div.Tensor):
            scores, mask = mask, scores
    scale = 1.0
    scores = _skip_casts(scores)
    scores, mask = _peel_where_mask(scores, mask, softmax)
    scores, softcap = _peel_softcap(scores)
    if is_call(scores, aten.mul.Tensor, aten.div.Tensor) and isinstance(scores.args[1], (int, float)):
        scale = float(scores.args[1]) if scores.target == aten.mul.Tensor else 1.0 / float(scores.args[1])
        scores = scores.args[0]
    flat = _match_baddbmm(scores)
    if flat is not None:
        q, k_t, alpha = flat
        scale *= alpha
    elif is_call(scores, *_MATMUL):
        q, k_t = scores.args
    else:
        return None
    if not is_call(k_t, aten.transpose.int) or sorted(d % 4 for d in k_t.args[1:]) != [2, 3]:
        return None
    # follow the probabilities to the matmul with V
    probs = softmax
    while len(probs.users) == 1:
        user = next(iter(probs.users))
        if is_call(user, *_MATMUL) and user.args[0] is probs:
            return q, k_t.args[0], user.args[1], mask, scale, softcap, user
        if is_call(user, *_CASTS) or is_call(user, aten.dropout.default):
            probs = user
            continue
        return None
    return None


def _number(node: Node, target) -> float | None:
    """The Python number `node` multiplies or divides by (as a factor), or None."""
    if is_call(node, target) and isinstance(node.args[1], (int, float)) and not isinstance(node.args[1], bool):
        return float(node.args[1])
    return None


def _peel_softcap(scores: Node) -> tuple[Node, float]:
    """cap * tanh(x / cap) (or x * (1 / cap)) -> (x, cap); anything else -> (scores, 0.0)."""
    cap = _number(scores, aten.mul.Tensor)
    if cap is None or cap <= 0:
        return scores, 0.0
    inner = _skip_casts(scores.args[0])
    if not is_call(inner, aten.tanh.default):
        return scores, 0.0
    divided = _skip_casts(inner.args[0])
    divisor = _number(divided, aten.div.Tensor)
    factor = _number(divided, aten.mul.Tensor)
    if divisor is not None and abs(divisor - cap) <= 1e-6 * cap:
        return _skip_casts(divided.args[0]), cap
    if factor is not None and abs(factor * cap - 1.0) <= 1e-6:
        return _skip_casts(divided.args[0]), cap
    return scores, 0.0


_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def _match_baddbmm(scores: Node):
    """view(baddbmm(0, view(q), transpose(view(k), 1, 2), alpha=a), [b, h, t, s]) -> (q, kᵀ, a)
    with q and kᵀ rank 4 (GPT-NeoX-Japanese writes its scores this way)."""
    if not is_call(scores, *_VIEWS) or len(fake(scores).shape) != 4:
        return None
    product = scores.args[0]
    if not is_call(product, aten.baddbmm.default):
        return None
    base, q3, kt3 = product.args[:3]
    beta = product.kwargs.get("beta", product.args[3] if len(product.args) > 3 else 1)
    alpha = product.kwargs.get("alpha", product.args[4] if len(product.args) > 4 else 1)
    if not isinstance(alpha, (int, float)) or not (beta == 0 or _is_zeros(base)):
        return None
    if not (is_call(q3, *_VIEWS) and is_call(kt3, aten.transpose.int) and is_call(kt3.args[0], *_VIEWS)):
        return None
    q, k = q3.args[0], kt3.args[0].args[0]
    if len(fake(q).shape) != 4 or len(fake(k).shape) != 4 or sorted(d % 3 for d in kt3.args[1:]) != [1, 2]:
        return None
    with scores.graph.inserting_before(scores):
        k_t = insert_op(scores.graph, aten.transpose.int, (k, -2, -1))
    return q, k_t, float(alpha)


def _is_zeros(node) -> bool:
    if is_call(node, aten.zeros.default, aten.zeros_like.default):
        return True
    return is_call(node, aten.full.default) and node.args[1] == 0


def _peel_where_mask(scores: Node, mask, softmax: Node):
    """where(allowed, x, min_value) (GPT-Neo's causal/local band) -> (x, additive mask merged with `mask`)."""
    if not is_call(scores, aten.where.self, aten.where.ScalarOther):
        return scores, mask
    allowed, kept, blocked = scores.args
    if fake(allowed).dtype != torch.bool or not isinstance(kept, Node):
        return scores, mask
    graph = scores.graph
    with graph.inserting_before(softmax):
        target = aten.where.ScalarSelf if isinstance(blocked, Node) else aten.where.Scalar
        additive = insert_op(graph, target, (allowed, 0.0, blocked))
        if mask is not None:
            additive = insert_op(graph, aten.add.Tensor, (additive, mask))
    return kept, additive
