"""Normalise eager attention to SDPA so one recogniser handles both.

before: p = softmax(matmul(q, transpose(k, -2, -1)) * s + mask, -1) [casts, dropout(train=False)]
        o = matmul(p, v)
after:  o = scaled_dot_product_attention(q, k, v, mask, scale=s)

Attention logit soft-capping (Gemma 2: scores = cap * tanh(scores / cap) between the scale and
the mask) has no SDPA argument: the SDPA node carries it as `node.meta["attn_logit_softcapping"]`
and `replace_attention` turns it into the op's `attn_logit_softcapping_scale`, TensorRT-LLM's
field with the same formula (applied after the 1/sqrt(d)*q_scaling scale).

Other spellings folded in: score biases (baddbmm's bias, `scores + bias`, masked_fill masks) join
the SDPA mask (`replace_attention` decides whether they are ALiBi); `x - max(x)` and clamps at
finfo.min are dropped (no effect on softmax); a softmax over flattened heads [b*h, s, t] (XGLM);
attention sinks, either a per-head logit concatenated to the scores whose column is dropped after
the softmax (gpt-oss) or sigmoid(logsumexp(scores) - sink) scaling the output (Granite-SWA), are
recorded as `node.meta["attention_sinks"]` (the per-head values).
"""

from __future__ import annotations

import operator

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
SINKS_META = "attention_sinks"


# after remove_export_artifacts: the softmax/matmul chain is matched with export's identity ops gone
@register_pass("eager_attention_to_sdpa", after=("remove_export_artifacts",))
def eager_attention_to_sdpa(ctx: PassContext) -> int:
    count = 0
    for softmax in [n for n in ctx.graph.nodes if is_call(n, *_SOFTMAX)]:
        match = _match(softmax, ctx.weights.load)
        if match is None:
            continue
        q, k, v, mask, scale, softcap, sinks, out = match
        lse_sink = _lse_sink(softmax, out)
        if lse_sink is not None and sinks is None:  # out * sigmoid(logsumexp(scores) - sink): a sink logit
            sinks, scaled = lse_sink
            scaled.replace_all_uses_with(out)
        with ctx.graph.inserting_before(out):
            sdpa = insert_op(ctx.graph, aten.scaled_dot_product_attention.default, (q, k, v, mask), {"scale": scale})
        if "stack_trace" in softmax.meta:  # errors about this attention name the model's line
            sdpa.meta["stack_trace"] = softmax.meta["stack_trace"]
        if softcap:
            sdpa.meta[SOFTCAP_META] = softcap
        if sinks is not None:
            sdpa.meta[SINKS_META] = _sink_values(ctx, sinks, int(fake(q).shape[1]))
        out.replace_all_uses_with(sdpa)
        count += 1
    if count:
        ctx.graph.eliminate_dead_code()
    return count


def _skip_casts(node: Node) -> Node:
    while is_call(node, *_CASTS) or (is_call(node, aten.dropout.default) and node.args[2] is False):
        node = node.args[0]
    return node


def _match(softmax: Node, load=None):
    if softmax.args[1] not in (-1, len(fake(softmax).shape) - 1):
        return None
    scores = _peel_clamp(_unflatten(_peel_row_max(_skip_casts(softmax.args[0]))))
    scores, sinks = _peel_sinks(scores)
    scores, mask = _peel_masked_fill(_peel_row_max(scores), softmax)
    scores, mask = _peel_multiplicative_mask(scores, mask, softmax, load)
    if is_call(scores, aten.add.Tensor):
        scores, term = scores.args
        if is_call(term, aten.matmul.default, aten.mul.Tensor, aten.div.Tensor):
            scores, term = term, scores
        mask = _add_term(mask, term, softmax)
    if is_call(scores, aten.add.Tensor):  # scores + bias (MPT's ALiBi), the mask added outside
        first, second = scores.args
        if is_call(_skip_casts(first), aten.matmul.default, aten.mul.Tensor, aten.div.Tensor):
            scores, mask = first, _add_term(mask, second, softmax)
        elif is_call(_skip_casts(second), aten.matmul.default, aten.mul.Tensor, aten.div.Tensor):
            scores, mask = second, _add_term(mask, first, softmax)
    scale = 1.0
    scores = _skip_casts(scores)
    scores, mask = _peel_where_mask(scores, mask, softmax)
    scores, softcap = _peel_softcap(scores)
    if is_call(scores, aten.mul.Tensor, aten.div.Tensor) and isinstance(scores.args[1], (int, float)):
        scale = float(scores.args[1]) if scores.target == aten.mul.Tensor else 1.0 / float(scores.args[1])
        scores = scores.args[0]
    flat = _match_baddbmm(scores)
    if flat is not None:
        q, k_t, alpha, bias = flat
        scale *= alpha
        if bias is not None:  # baddbmm(bias, q, kᵀ) adds the bias after alpha (BLOOM's ALiBi)
            mask = _add_term(mask, bias, softmax)
    elif is_call(scores, *_MATMUL):
        q, k_t = scores.args
    else:
        return None
    key = _untransposed_key(k_t)
    if key is None:
        return None
    # follow the probabilities to the matmul with V (past the sinks' column, which attends to nothing)
    probs, dropped = softmax, sinks is None
    while len(probs.users) == 1:
        user = next(iter(probs.users))
        if is_call(user, *_MATMUL) and user.args[0] is probs:
            return (q, key(), user.args[1], mask, scale, softcap, sinks, user) if dropped else None
        flat_out = _flat_probs_matmul(user)
        if flat_out is not None and sinks is None:  # view(probs) [b*h, s, t] @ view(v) [b*h, t, d], back to rank 4 (BLOOM)
            v, out = flat_out
            return q, key(), v, mask, scale, softcap, sinks, out
        if not dropped and _drops_last_column(user):
            probs, dropped = user, True
            continue
        if is_call(user, *_CASTS) or is_call(user, aten.dropout.default):
            probs = user
            continue
        if is_call(user, *_VIEWS) and len(fake(user).shape) == 4 and len(fake(softmax).shape) == 3:
            probs = user  # XGLM: the flat softmax viewed back to [b, h, s, t] (then flattened for bmm)
            continue
        return None
    return None


def _unflatten(scores: Node) -> Node:
    """view(x [b, h, s, t], [b*h, s, t]) (a softmax over flattened heads, XGLM) -> x."""
    if is_call(scores, *_VIEWS) and len(fake(scores).shape) == 3 and len(fake(scores.args[0]).shape) == 4:
        return _skip_casts(scores.args[0])
    return scores


def _peel_clamp(scores: Node) -> Node:
    """max(x, full(-big)) (XGLM clamps scores at finfo.min: no effect on softmax) -> x."""
    if is_call(scores, aten.max.other, aten.maximum.default):
        x, floor = scores.args
        if is_call(floor, aten.full.default) and isinstance(floor.args[1], (int, float)) and floor.args[1] <= _MASKED:
            return _skip_casts(x)
    if is_call(scores, aten.clamp_min.default, aten.clamp.default) and isinstance(scores.args[1], (int, float)):
        if scores.args[1] <= _MASKED and (len(scores.args) < 3 or scores.args[2] is None):
            return _skip_casts(scores.args[0])
    return scores


def _lse_sink(softmax: Node, out: Node):
    """Granite-SWA's sink: the scores also feed sigmoid(logsumexp(scores, -1) - sink) (one learned value per
    head), which multiplies the attention's output; equal to a sink logit in the softmax's denominator
    (sum e / (sum e + e^sink) = sigmoid(lse - sink)). -> (the sink node, the scaled output), or None."""
    scores = softmax.args[0]
    while is_call(scores, *_CASTS):
        scores = scores.args[0]
    readers = [u for u in scores.users if u is not softmax and not is_call(u, *_CASTS)]
    if len(readers) != 1 or not is_call(readers[0], aten.logsumexp.default):
        return None
    lse = readers[0]
    if list(lse.args[1]) not in ([-1], [len(fake(scores).shape) - 1]) or (len(lse.args) > 2 and lse.args[2]):
        return None
    node = _single_user(lse)
    if not is_call(node, aten.sub.Tensor) or node.args[0] is not lse or not isinstance(node.args[1], Node):
        return None
    sink = node.args[1]
    node = _single_user(node)
    while is_call(node, *_CASTS):
        node = _single_user(node)
    if not is_call(node, aten.sigmoid.default):
        return None
    node = _single_user(node)
    if not is_call(node, aten.unsqueeze.default) or node.args[1] not in (-1, 3):
        return None
    node = _single_user(node)
    while is_call(node, *_CASTS):
        node = _single_user(node)
    if not is_call(node, aten.mul.Tensor) or out not in node.args:
        return None
    return sink, node


def _single_user(node: Node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _peel_row_max(scores: Node) -> Node:
    """x - max(x, -1, keepdim) (a no-op under softmax, written for stability) -> x."""
    if not is_call(scores, aten.sub.Tensor):
        return scores
    x, top = scores.args
    if is_call(top, operator.getitem) and top.args[1] == 0:
        top = top.args[0]
        if is_call(top, aten.max.dim) and top.args[0] is x and top.args[1] in (-1, len(fake(x).shape) - 1):
            return _skip_casts(x)
    if is_call(top, aten.amax.default) and top.args[0] is x and list(top.args[1]) in ([-1], [len(fake(x).shape) - 1]):
        return _skip_casts(x)
    return scores


def _peel_sinks(scores: Node):
    """cat([scores, sinks], -1) with sinks [., heads, ., 1] not read from the tokens (gpt-oss's learned
    per-head logits) -> (scores, the sinks node), else (scores, None)."""
    if not is_call(scores, aten.cat.default) or scores.args[1] not in (-1, 3) or len(scores.args[0]) != 2:
        return scores, None
    inner, sinks = scores.args[0]
    if len(fake(sinks).shape) != 4 or fake(sinks).shape[-1] != 1:
        return scores, None
    return _skip_casts(inner), sinks


def _drops_last_column(node: Node) -> bool:
    """slice(x, -1, 0, -1): every column but the last."""
    return (is_call(node, aten.slice.Tensor) and node.args[1] in (-1, 3) and node.args[2] in (0, None)
            and len(node.args) > 3 and node.args[3] == -1 and (len(node.args) < 5 or node.args[4] == 1))


def _sink_values(ctx: PassContext, sinks: Node, heads: int):
    """The per-head sink logits [heads] float32: the sinks node must broadcast one learned value per head
    (reshape/expand/cast of a weight)."""
    from ditto.errors import DittoError
    from ditto.graph.nodes import source_line

    node = sinks
    while is_call(node, aten.expand.default, aten.reshape.default, aten.view.default, aten.unsqueeze.default, *_CASTS):
        node = node.args[0]
    if node.op != "get_attr" or fake(node).numel() != heads:
        raise DittoError(f"attention sinks at {sinks.name} ({source_line(sinks)}) are not one learned value per head "
                         f"({heads} heads); ditto's attention takes a per-head sink logit")
    return ctx.weights.load(node.target).float().reshape(heads).clone()


def _flat_probs_matmul(view: Node):
    """view(probs, [b*h, s, t]) -> bmm(., view(v4, [b*h, t, d])) -> view(., [b, h, s, d]): (v4, last view)."""
    if not is_call(view, *_VIEWS) or len(fake(view).shape) != 3 or len(view.users) != 1:
        return None
    product = next(iter(view.users))
    if not is_call(product, *_MATMUL) or product.args[0] is not view or len(product.users) != 1:
        return None
    v3, out = product.args[1], next(iter(product.users))
    if not (is_call(v3, *_VIEWS) and len(fake(v3.args[0]).shape) == 4 and is_call(out, *_VIEWS)):
        return None
    v = v3.args[0]
    if tuple(fake(out).shape) != tuple(fake(v).shape[:2]) + tuple(fake(view).shape[1:2]) + tuple(fake(v).shape[3:]):
        return None
    return v, out


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
    """view(baddbmm(bias, view(q), transpose(view(k), 1, 2), beta, alpha=a), [b, h, t, s]) -> (q, kᵀ, a,
    beta * bias as a rank-4 score term, or None for beta 0 / zeros) with q and kᵀ rank 4 (GPT-NeoX-Japanese
    and BLOOM write their scores this way)."""
    if not is_call(scores, *_VIEWS) or len(fake(scores).shape) != 4:
        return None
    product = scores.args[0]
    if is_call(product, aten.bmm.default):  # XGLM: bmm of the flattened heads
        base, (q3, kt3), beta, alpha = None, product.args[:2], 0, 1
    elif is_call(product, aten.baddbmm.default):
        base, q3, kt3 = product.args[:3]
        beta = product.kwargs.get("beta", product.args[3] if len(product.args) > 3 else 1)
        alpha = product.kwargs.get("alpha", product.args[4] if len(product.args) > 4 else 1)
    else:
        return None
    if not isinstance(alpha, (int, float)) or not isinstance(beta, (int, float)):
        return None
    if not (is_call(q3, *_VIEWS) and is_call(kt3, aten.transpose.int) and is_call(kt3.args[0], *_VIEWS)):
        return None
    q, k = q3.args[0], kt3.args[0].args[0]
    if len(fake(q).shape) != 4 or len(fake(k).shape) != 4 or sorted(d % 3 for d in kt3.args[1:]) != [1, 2]:
        return None
    graph = scores.graph
    with graph.inserting_before(scores):
        k_t = insert_op(graph, aten.transpose.int, (k, -2, -1))
        bias = None
        if not (beta == 0 or _is_zeros(base)):
            bias = _bias_as_scores(graph, base, float(beta), scores)
            if bias is None:
                return None
    return q, k_t, float(alpha), bias


def _bias_as_scores(graph, base: Node, beta: float, scores: Node) -> Node | None:
    """baddbmm's bias [b*h, 1 or s, t] in the rank-4 layout of the viewed scores [b, h, s, t] (times beta)."""
    shape = fake(base).shape
    size = list(scores.args[1])
    if len(shape) != 3 or len(size) != 4:
        return None
    rows = 1 if isinstance(shape[1], int) and shape[1] == 1 else size[2]
    bias = insert_op(graph, aten.reshape.default, (base, [size[0], size[1], rows, -1]))
    return bias if beta == 1 else insert_op(graph, aten.mul.Tensor, (bias, beta))


def _add_term(mask, term: Node, softmax: Node) -> Node:
    """mask + term (an additive score term: a mask or a bias), built before the softmax."""
    if mask is None:
        return term
    with softmax.graph.inserting_before(softmax):
        return insert_op(softmax.graph, aten.add.Tensor, (mask, term))


_MASKED = -1e4  # a fill value at or below this removes the score (finfo.min, -inf, -1e9, ...)


def _peel_masked_fill(scores: Node, softmax: Node):
    """masked_fill(x, blocked, -big) (MPT) -> (x, additive mask where(blocked, -big, 0)), else (scores, None)."""
    if not is_call(scores, aten.masked_fill.Scalar):
        return scores, None
    x, blocked, value = scores.args
    if not isinstance(value, (int, float)) or value > _MASKED or fake(blocked).dtype != torch.bool:
        return scores, None
    with softmax.graph.inserting_before(softmax):
        additive = insert_op(softmax.graph, aten.where.Scalar, (blocked, float(value), 0.0))
    return _skip_casts(x), additive


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


def _untransposed_key(k_t: Node):
    """Kᵀ [b, h, d, t] as a transpose of its last two axes or as a permute of the projected heads
    (OpenAI-GPT: permute(view(k) [b, t, h, d], [0, 2, 3, 1])) -> a function giving K [b, h, t, d]
    (a permute node is inserted for the second spelling), else None."""
    if is_call(k_t, aten.transpose.int) and sorted(d % 4 for d in k_t.args[1:]) == [2, 3]:
        return lambda: k_t.args[0]
    if is_call(k_t, aten.permute.default) and len(k_t.args[1]) == 4:
        dims = [d % 4 for d in k_t.args[1]]

        def key():
            with k_t.graph.inserting_after(k_t):
                return insert_op(k_t.graph, aten.permute.default, (k_t.args[0], [dims[0], dims[1], dims[3], dims[2]]))
        return key
    return None


def _peel_multiplicative_mask(scores: Node, mask, softmax: Node, load):
    """x * b + c * (1 - b) with b a 0/1 buffer (OpenAI-GPT's causal `bias`, sliced) and c <= -1e4
    -> (x, the additive mask c * (1 - b) merged with `mask`); equal wherever b is 0 or 1, which is
    checked on the buffer b is sliced from. Anything else -> (scores, mask)."""
    if not is_call(scores, aten.add.Tensor) or load is None:
        return scores, mask
    for product, term in (scores.args, scores.args[::-1]):
        if not (is_call(product, aten.mul.Tensor) and is_call(term, aten.mul.Tensor)):
            continue
        fill = next((a for a in term.args if isinstance(a, (int, float)) and not isinstance(a, bool)), None)
        complement = next((a for a in term.args if isinstance(a, Node)), None)
        if fill is None or fill > _MASKED or not is_call(complement, aten.rsub.Scalar) or complement.args[1] != 1:
            continue
        b = complement.args[0]
        if b not in product.args or not _is_zero_one_buffer(b, load):
            continue
        x = product.args[1] if product.args[0] is b else product.args[0]
        return _skip_casts(x), _add_term(mask, term, softmax)
    return scores, mask


def _is_zero_one_buffer(node: Node, load) -> bool:
    """`node` slices/views/casts a constant (get_attr) whose every value is 0 or 1."""
    while is_call(node, aten.slice.Tensor, aten.view.default, aten.reshape.default, aten.unsqueeze.default, *_CASTS):
        node = node.args[0]
    if node.op != "get_attr":
        return False
    try:
        value = load(node.target)
    except Exception:  # noqa: BLE001  (not a loadable constant: not a mask this recognises)
        return False
    return bool(((value == 0) | (value == 1)).all())
