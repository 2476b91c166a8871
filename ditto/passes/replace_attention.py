"""Replace each attention (SDPA after `eager_attention_to_sdpa`) by one `gpt_attention` op.

before (per layer, packed row of num_tokens tokens):
    q = rope(transpose(view(q_proj(x))), cos(position_ids), sin(position_ids))
    k = repeat_kv(rope(transpose(view(k_proj(x)))));  v = repeat_kv(transpose(view(v_proj(x))))
    o = scaled_dot_product_attention(q, k, v, causal_mask(position_ids), scale=s)
after:
    qkv = reshape(cat([q_proj(x), k_proj(x), v_proj(x)], -1), [-1, (H + 2 KV) * D])
    o = permute(reshape(gpt_attention(qkv, <engine inputs>, rotary_cos_sin, ..., q_scaling=...), ...))

Recognition is by what the subgraphs compute, not by their spelling:
- RoPE: the nodes between the head projection and the attention input that depend on
  position_ids form the rotary embedding. They are run on probe vectors: basis vectors
  give the rotation matrix (its rotary dimension, and whether halves or interleaved pairs are
  rotated); one probe gives the cos/sin table for every position (covering linear, llama3,
  yarn, ... scalings alike); a random probe verifies the result. Anything else fails fast.
- the mask is run for a single sequence and must be causal (optionally a sliding window).
- repeat_kv (unsqueeze/expand/reshape) is peeled off K and V to find the KV heads; K/V tiled with
  `repeat` (JetMoE) instead have the query heads regrouped around the op.
- variants, each a parameter of the one op: a finite additive score bias in the mask must be ALiBi
  (slope_h * (key - query), position_embedding_type "alibi" + `alibi_slopes`); sinks recorded by
  `eager_attention_to_sdpa` become `attention_sinks`; a position-dependent transform of the query
  alone must be a per-position scale (`query_position_scale`, Beam's NoPE layers); a position-independent
  transform between RoPE and the attention (QK-norm after RoPE, HunYuan) is moved before RoPE when it
  commutes with the rotation (verified by probing), else must be an RMSNorm over each head
  (`query_norm_after_rope` / `key_norm_after_rope`, weight and eps fitted by probing and verified).
- multi-head latent attention (DeepSeek-V2/V3, K/V decompressed per head): a value head narrower
  (or wider) than the query/key head is zero-padded to one op head size and the output sliced
  back (`value_head_size` / `query_key_head_size`); q = cat(q_nope, rope(q_rot)) and
  k = cat(k_nope, expand(rope(k_rot))) with the rotated run not leading, or one head shared by all
  (`_latent_rope_pieces`), go to the op with the rotated run first in q and in k alike (q.k is
  unchanged by the same feature permutation of both), so the op's partial RoPE on leading features
  applies; a feature permutation after RoPE (DeepSeek-V3's rope_interleave) is read at position 0
  and must be the same for q and k.
- sparse attention (DeepSeek-V3.2 / GLM-5 DSA: a lightning indexer's top-k over the keys builds the mask,
  every key it does not pick masked out): when the mask reads the tokens only through top-k indices whose k
  is min(K, keys) or a constant K (read from the graph), and the mask with every key picked is its other
  operand (checked by evaluating it), the top-k term is dropped and the indexer becomes dead code. This is
  exact for sequences of at most K tokens: a query at position p sees p + 1 keys (the indexer scores future
  ones -inf), and a top-k of K >= p + 1 keeps all of them, so the sparse mask removes nothing. The limit K
  is recorded (`ctx.sequence_limits`, the program's `sequence_limit`): `ditto build` caps max_seq_len at it
  and refuses a larger one, fx and replay refuse longer requests. TensorRT-LLM's GPTAttention has no field
  for a sparse (indexed) key selection, so this is the only exact mapping. Any other top-k-built mask (K
  not readable, the picks' values or only some of them in the mask) stays refused by name.
"""

from __future__ import annotations

import math
import operator

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.evaluate import evaluate
from ditto.graph.insert import insert_op
from ditto.graph.nodes import ancestors, fake, is_call, source_line
from ditto.models.weights import InMemoryTensor, WeightSpec
from ditto.ops import gpt_attention as _op  # noqa: F401  (registers torch.ops.ditto.gpt_attention)
from ditto.ops.gpt_attention import OPTIONAL_TENSOR_INPUTS, TENSOR_INPUTS
from ditto.ops.params import GPTAttentionParams
from ditto.ops.rope import GPTJ, NEOX, RopeInfo, apply_rope, no_rope_fields
from ditto.passes.eager_attention_to_sdpa import SINKS_META, SOFTCAP_META
from ditto.passes.manager import PassContext, register_pass
from ditto.program import SequenceLimit

aten = torch.ops.aten
SDPA = aten.scaled_dot_product_attention.default
_MASK_PROBE_TOKENS = 64


# requires engine_inputs: reads ctx.engine_inputs (position_ids, input_ids, KV-cache inputs)
@register_pass("replace_attention", requires=("engine_inputs",))
def replace_attention(ctx: PassContext) -> int:
    graph = ctx.graph
    sdpas = [n for n in graph.nodes if is_call(n, SDPA)]
    if not sdpas:
        return 0
    token_dependent = _data_descendants(ctx.engine_inputs["input_ids"])
    position_only = _data_descendants(ctx.engine_inputs["position_ids"]) - token_dependent
    for node in sdpas:
        _replace_one(ctx, node, position_only, token_dependent)
    return len(sdpas)


def _replace_one(ctx: PassContext, node: Node, position_only: set, token_dependent: set) -> None:
    graph = ctx.graph
    q, k, v, mask, dropout_p, is_causal = _sdpa_args(node)
    if dropout_p:
        _fail(node, "attention dropout is active; export the model in eval mode")
    (k, k_tiled), (v, v_tiled) = _strip_tiled_kv(k), _strip_tiled_kv(v)
    if k_tiled != v_tiled:
        _fail(node, "key and value share their heads with the query heads differently")
    k, v = _strip_repeat_kv(k), _strip_repeat_kv(v)
    q_shape, k_shape, v_shape = (fake(x).shape for x in (q, k, v))
    if len(q_shape) != 4 or q_shape[0] != 1:
        _fail(node, f"expected a [1, heads, tokens, head_size] query, got {tuple(q_shape)}")
    num_heads, head_size = int(q_shape[1]), int(q_shape[3])
    num_kv_heads = int(k_shape[1])
    value_size = int(v_shape[3])
    if tuple(k_shape[:3]) != tuple(v_shape[:3]) or num_heads % num_kv_heads or int(k_shape[3]) != head_size:
        _fail(node, f"query {tuple(q_shape)}, key {tuple(k_shape)}, value {tuple(v_shape)} do not form MHA/GQA/MQA")
    # a value head of another size than the query/key head (multi-head latent attention, DeepSeek-V2/V3 style,
    # decompressed to per-head K/V): the op takes one head size, the larger; the narrower side is zero-padded
    # (zero query/key features add nothing to q.k; zero value features give zero outputs, sliced off)
    op_size = max(head_size, value_size)
    if isinstance(mask, Node) and mask in token_dependent:
        kept = _keep_all_topk_mask(ctx, mask, token_dependent)
        if kept is not None:  # sparse attention that keeps every key up to K tokens: causal attention there
            mask, limit = kept
            ctx.sequence_limits.append(limit)
    if isinstance(mask, Node) and mask in token_dependent:
        picker = _token_topk(mask)
        if picker is not None:  # DeepSeek-V3.2 / GLM-5 style DSA: an indexer's top-k over keys builds the mask
            _fail(node, f"sparse attention: the attention mask comes from the top-k {picker.name} at "
                  f"{source_line(picker)}, which picks among the tokens of the sequence the keys each query attends "
                  "to (a lightning indexer, DeepSeek-V3.2 style); sparse attention is not supported yet")
        _fail(node, "the attention mask depends on the token values, not only on positions (a dynamic mask); "
              "TensorRT-LLM's attention takes causal or sliding-window masks")
    try:
        sliding_window, alibi_slopes = _check_causal(ctx, node, mask, is_causal, num_heads)
    except (ValueError, RuntimeError) as e:
        _fail(node, f"the attention mask could not be computed from positions alone ({e})")

    # RoPE on a trailing part of the head, the key's shared by all heads (DeepSeek-V2/V3 MLA): the pieces
    pieces = _latent_rope_pieces(q, k, num_heads, num_kv_heads, position_only, token_dependent, node)
    rope, query_scale, norms_after_rope, q_raw, k_raw = None, None, (None, None), q, k
    if pieces is not None:
        rope = _identify_piece_rope(ctx, pieces, node)  # verified on the query's and the key's rotated piece
    else:
        q_raw, q_rope, q_operands = _rope_input(q, position_only, token_dependent, node)
        k_raw, k_rope, _ = _rope_input(k, position_only, token_dependent, node)
    if pieces is not None:
        pass  # verified on the rotated pieces
    elif k_rope is None and q_rope is not None:  # the query alone: a per-position scale (scalable softmax)?
        query_scale = _identify_query_scale(ctx, q_raw, q, node)
    elif q_rope is not None or k_rope is not None:
        if q_rope is None or k_rope is None:
            _fail(node, "RoPE is applied to the key only")
        # layers whose RoPE has the same ops and cos/sin values share one identification;
        # each layer is still verified on its own
        try:
            key = _rope_signature(ctx, q_raw, *q_operands)
            if key not in ctx.identified_rope:
                ctx.identified_rope[key] = _identify_rope(ctx, q_raw, q, num_heads, head_size, node)
            rope = ctx.identified_rope[key]
            _verify_rope(ctx, q_raw, q, rope, node)
            _verify_rope(ctx, k_raw, k, rope, node)
        except DittoError as error:
            try:
                moved = _rope_before_post_transform(ctx, ((q_raw, q), (k_raw, k)), num_heads, head_size, node,
                                                    position_only)
            except (ValueError, RuntimeError, IndexError, KeyError):
                moved = None  # the layout the transform after RoPE needs is not there: the first reason stands
            if moved is None:
                raise error
            rope, (q_raw, k_raw), norms_after_rope = moved
    if rope is not None and alibi_slopes is not None:
        _fail(node, "the scores carry both RoPE and an ALiBi bias; TensorRT-LLM's position_embedding_type is one of them")

    scale = node.kwargs.get("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(head_size)
    layer_idx = len(ctx.attention)
    config = ctx.loaded.config
    params = GPTAttentionParams(
        layer_idx=layer_idx,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_size=op_size,
        q_scaling=1.0 / (scale * math.sqrt(op_size)),
        **_position_fields(rope, alibi_slopes, _max_positions(config)),
        attn_logit_softcapping_scale=float(node.meta.get(SOFTCAP_META, 0.0)),
        sliding_window=sliding_window,
        tokens_per_block=ctx.tokens_per_block,
        value_head_size=value_size if value_size != op_size else 0,
        query_key_head_size=head_size if head_size != op_size else 0,
    )
    ctx.attention.append(params)

    with graph.inserting_before(node):
        if pieces is not None:  # the rotated piece first: the same feature permutation of q and k keeps q.k
            q_heads = _pieces_to_heads(graph, pieces[0], num_heads)
            k_heads = _pieces_to_heads(graph, pieces[1], num_kv_heads)
        else:
            q_heads, k_heads = _to_heads(graph, q_raw, num_heads), _to_heads(graph, k_raw, num_kv_heads)
        v_heads = _to_heads(graph, v, num_kv_heads)
        parts = [_rows_of(graph, _pad_features(graph, x, op_size), heads)
                 for x, heads in ((q_heads, num_heads), (k_heads, num_kv_heads), (v_heads, num_kv_heads))]
        if k_tiled:  # query head i * KV + j reads KV head j: regroup as head j * G + i (TensorRT-LLM's GQA)
            parts[0] = _regroup_heads(graph, parts[0], num_heads // num_kv_heads, num_kv_heads, op_size)
        packed = insert_op(graph, aten.cat.default, (parts, -1))
        qkv = insert_op(graph, aten.reshape.default, (packed, [-1, params.qkv_width]))
        tensors = {name: ctx.engine_inputs.get(name) for name in TENSOR_INPUTS}
        tensors["qkv"] = qkv
        tensors["rotary_inv_freq"] = _table_attr(ctx, "rotary_inv_freq", rope.inv_freq if rope else None)
        tensors["rotary_cos_sin"] = _table_attr(ctx, "rotary_cos_sin", rope.cos_sin if rope else None)
        tensors["alibi_slopes"] = _table_attr(ctx, "alibi_slopes", alibi_slopes)
        tensors["attention_sinks"] = _table_attr(ctx, "attention_sinks", _sinks(node, num_heads))
        tensors["query_position_scale"] = _table_attr(ctx, "query_position_scale", query_scale)
        tensors["query_norm_after_rope"] = _table_attr(ctx, "query_norm_after_rope", norms_after_rope[0])
        tensors["key_norm_after_rope"] = _table_attr(ctx, "key_norm_after_rope", norms_after_rope[1])
        variants = {name: tensors[name] for name in OPTIONAL_TENSOR_INPUTS if tensors[name] is not None}
        attn = insert_op(
            graph,
            torch.ops.ditto.gpt_attention.default,
            tuple(tensors[name] for name in TENSOR_INPUTS),
            {**params.as_dict(), **variants},
            name="gpt_attention",
        )
        if k_tiled:  # back to the model's head order
            attn = _regroup_heads(graph, attn, num_kv_heads, num_heads // num_kv_heads, op_size)
        rows = insert_op(graph, aten.reshape.default, (attn, [1, -1, num_heads, op_size]))
        if value_size != op_size:  # the zero features of the padded value heads
            rows = insert_op(graph, aten.slice.Tensor, (rows, 3, 0, value_size))
        heads_first = insert_op(graph, aten.permute.default, (rows, [0, 2, 1, 3]))
    node.replace_all_uses_with(heads_first)
    graph.erase_node(node)


def _keep_all_topk_mask(ctx: PassContext, mask: Node, token_dependent: set):
    """(the mask without its top-k term, the SequenceLimit K) when the mask reads the tokens only through
    top-k indices over the keys, each keeping k = min(K, keys) (or K) of them, and the mask with every
    key kept (each row a permutation of all keys: two orders tried) equals one of its operands; else None.

    Why that is exact up to K tokens: a query at position p has p + 1 keys that are not future ones, the
    indexer scores the future ones -inf, so a top-k of K >= p + 1 entries keeps every visible key and the
    sparse mask removes nothing. TensorRT-LLM's GPTAttention has no field for a sparse (indexed) key
    selection, so this is the only exact mapping; beyond K tokens the program refuses (the recorded limit)."""
    input_ids = ctx.engine_inputs["input_ids"]
    reached, picks, stack = set(), [], [mask]
    while stack:  # the mask's token-dependent ancestors, up to the top-k nodes
        node = stack.pop()
        if node in reached:
            continue
        reached.add(node)
        if is_call(node, aten.topk.default):
            picks.append(node)
            continue
        if node is input_ids:
            return None  # the mask reads the tokens other than through a top-k
        stack.extend(a for a in node.all_input_nodes if a in token_dependent)
    indices = [u for t in picks for u in t.users if u in reached]
    if not picks or not all(is_call(u, operator.getitem) and u.args[1] == 1 for u in indices):
        return None  # a top-k's values (not only which keys it picks) enter the mask
    found = {t: _keep_all_shape(t) for t in picks}
    if any(keep is None for _, keep in found.values()):
        return None
    base, node = None, mask
    while base is None:  # down the chain from the mask to the operation that adds the top-k term
        tainted = [a for a in node.all_input_nodes if a in reached]
        clean = [a for a in node.all_input_nodes if a not in reached and _pairwise(a)]
        if len(tainted) != 1 or len(clean) > 1:
            return None
        base, node = (clean[0] if clean else None), tainted[0]
    t = _MASK_PROBE_TOKENS
    known = {
        ctx.engine_inputs["position_ids"]: torch.arange(t, dtype=torch.int32),
        input_ids: torch.zeros(t, dtype=torch.int32),
    }
    gen = torch.Generator().manual_seed(0)
    try:
        (want,) = evaluate([base], known, ctx.weights.load)
        for order in ("ascending", "random"):
            feeds = dict(known)
            for getitem in indices:
                (shape, dim), _ = found[getitem.args[0]]
                sizes = [t if d is None else d for d in shape]
                keys = torch.rand(sizes, generator=gen).argsort(dim) if order == "random" else \
                    torch.arange(t).reshape([-1 if i == dim % len(sizes) else 1 for i in range(len(sizes))]).expand(sizes)
                feeds[getitem] = keys.contiguous()
            (got,) = evaluate([mask], feeds, ctx.weights.load)
            if torch.broadcast_shapes(got.shape, want.shape) != got.shape or not torch.equal(got, want.expand_as(got)):
                return None
    except (DittoError, ValueError, RuntimeError, IndexError):
        return None
    keep = min(k for _, k in found.values())
    first = picks[0]
    return base, SequenceLimit(keep, f"sparse attention (the top-k {first.name} at {source_line(first)} keeps the "
                                     f"{keep} best-scored keys of each query, a lightning indexer, DeepSeek-V3.2 style; "
                                     f"it keeps every key, which makes it ordinary causal attention, only while a "
                                     f"sequence has at most {keep} tokens; TensorRT-LLM's attention has no sparse key "
                                     "selection)")


def _keep_all_shape(topk: Node):
    """((the top-k input's shape with None for the token axes, its axis), K) when the top-k runs along the
    token axis (its size the token count itself: the export sees whole sequences, so that is the sequence
    length) and keeps k = min(K, the axis size) or a constant K; (None, None) otherwise."""
    x, k = topk.args[0], topk.args[1]
    dim = topk.args[2] if len(topk.args) > 2 else topk.kwargs.get("dim", -1)
    shape = fake(x).shape if fake(x) is not None else ()
    if not shape or isinstance(shape[dim], int):
        return None, None  # not a choice among the tokens
    size = shape[dim].node.expr
    if not size.is_Symbol or any(not isinstance(d, int) and d.node.expr != size for d in shape):
        return None, None  # an axis of 2 * tokens (or other) keys: K would not bound the sequence
    if is_call(k, torch.sym_min) and len(k.args) == 2:
        ints = [a for a in k.args if isinstance(a, int)]
        sizes = [a for a in k.args if isinstance(a, Node) and getattr(a.meta.get("val"), "node", None) is not None
                 and a.meta["val"].node.expr == size]
        k = ints[0] if len(ints) == 1 and len(sizes) == 1 else None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return None, None
    return (tuple(d if isinstance(d, int) else None for d in shape), dim), k


def _pairwise(node: Node) -> bool:
    """A value over pairs of tokens (its last two axes are token axes): a mask or scores."""
    value = fake(node)
    return value is not None and value.dim() >= 2 and not any(isinstance(d, int) for d in value.shape[-2:])


def _token_topk(mask: Node, limit: int = 400) -> Node | None:
    """A top-k among the mask's inputs (looking at most `limit` nodes back), or None."""
    return next((n for n in ancestors(mask, limit) if is_call(n, aten.topk.default)), None)


def _rope_before_post_transform(ctx: PassContext, pairs, num_heads: int, head_size: int, sdpa: Node,
                                position_only: set):
    """QK-norm (or a per-channel scale) applied AFTER RoPE: attention input = P(rope(raw)) with P
    position-independent. -> (rope, [P(raw) for each pair]) when P commutes with the rotation (verified
    by probing: RMSNorm's 1/rms is rotation-invariant, so an RMSNorm whose weight is equal within each
    rotated pair commutes, as does such a per-channel scale); the op then rotates P(raw) itself.
    Otherwise P must be an RMSNorm over each head (weight and eps fitted by probing, then verified):
    it becomes the op's `query_norm_after_rope` / `key_norm_after_rope` (the native lowering computes
    it; TensorRT-LLM's GPTAttention applies RoPE inside the op and has no field for a norm after it,
    so the plugin lowering refuses it). -> (rope, [the op's input for each pair], [norm or None for
    each pair]); None when no RoPE output with a transform after it is found."""
    cuts = [_rope_output(raw, out, position_only) for raw, out in pairs]
    if all(cut is None or cut is out for cut, (_, out) in zip(cuts, pairs)) or any(cut is None for cut in cuts):
        return None
    rope = _identify_rope(ctx, pairs[0][0], cuts[0], num_heads, head_size, sdpa)
    moved, norms = [], []
    for (raw, out), cut in zip(pairs, cuts):
        _verify_rope(ctx, raw, cut, rope, sdpa)
        norm = None
        if cut is not out:
            after = _clone_between(ctx.graph, cut, out, raw)
            if _commutes(ctx, raw, out, after, rope):
                raw = after
            else:
                _erase_unused(ctx.graph, after)
                norm = _fit_norm_after_rope(ctx, raw, cut, out, rope, sdpa)
        moved.append(raw)
        norms.append(norm)
    return rope, moved, norms


def _erase_unused(graph, node: Node) -> None:
    """Erase `node` (a copy nothing reads) and the inputs that only it read."""
    stack, erased = [node], set()
    while stack:
        n = stack.pop()
        if n not in erased and n.op == "call_function" and not n.users:
            inputs = n.all_input_nodes
            graph.erase_node(n)
            erased.add(n)
            stack.extend(inputs)


def _fit_norm_after_rope(ctx: PassContext, raw: Node, cut: Node, out: Node, rope: RopeInfo, sdpa: Node) -> torch.Tensor:
    """The transform P from the RoPE output `cut` to `out` as an RMSNorm over each head, weight [D] then eps,
    fitted on constant probes (P(1) = w / sqrt(1 + eps), P(c) = w c / sqrt(c^2 + eps)) and verified on random
    probes through the whole graph from `raw`; fails when P is not one."""
    from ditto.ops.gpt_attention import rms_norm_after_rope

    shape = fake(raw).shape
    head_axis, token_axis = _layout(raw, int(shape[3]))
    heads, head_size, dtype = int(shape[head_axis]), int(shape[3]), fake(raw).dtype

    def post(y: torch.Tensor) -> torch.Tensor:
        known = {
            cut: _arrange(y.to(dtype), head_axis, token_axis),
            ctx.engine_inputs["position_ids"]: torch.zeros(len(y), dtype=torch.int32),
            ctx.engine_inputs["input_ids"]: torch.zeros(len(y), dtype=torch.int32),
        }
        return _unarrange(evaluate([out], known, ctx.weights.load)[0].float(), head_axis, token_axis)

    c = 1e-3
    ones = torch.ones(1, heads, head_size)
    at_one, at_c = post(ones)[0, 0], post(ones * c)[0, 0]
    ratio = float(at_c.norm() / at_one.norm()) if float(at_one.norm()) > 0 else 1.0
    eps = max(0.0, c * c * (1 - ratio**2) / (ratio**2 - c * c)) if ratio > c else 0.0
    norm = torch.cat([at_one * math.sqrt(1 + eps), torch.tensor([eps])]).float().contiguous()
    gen = torch.Generator().manual_seed(2)
    positions = torch.randint(0, rope.cos_sin.shape[0], (6,), generator=gen)
    x = torch.randn(len(positions), heads, head_size, generator=gen).to(dtype)
    got = _unarrange(_probe(ctx, raw, out, _arrange(x, head_axis, token_axis), positions), head_axis, token_axis)
    want = rms_norm_after_rope(apply_rope(x.float(), rope.cos_sin[positions], rope.dim, rope.style), norm)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    error = (got - want).abs().max().item()
    if not error <= tolerance * max(1.0, want.abs().max().item()):
        _fail(sdpa, f"a transform between RoPE and attention on {raw.name} neither commutes with the rotation nor is "
                    f"an RMSNorm over each head (off by {error:.3g}); ditto's attention takes QK-norm before RoPE, "
                    "or an RMSNorm after it")
    return norm


def _ancestors(node: Node, stop: set) -> set[Node]:
    seen, stack = {node}, [node]
    while stack:
        for n in stack.pop().all_input_nodes:
            if n not in seen and n not in stop:
                seen.add(n)
                stack.append(n)
    return seen


def _rope_output(raw: Node, out: Node, position_only: set) -> Node | None:
    """The earliest node between `raw` and `out` through which all of `out`'s position dependence
    flows (the RoPE's last add), or None."""
    between = _ancestors(out, {raw})
    order = {n: i for i, n in enumerate(out.graph.nodes)}
    for cut in sorted((n for n in between if n not in position_only and order[n] > order[raw]), key=order.get):
        if not (_ancestors(cut, {raw}) & position_only):
            continue  # before RoPE
        if cut is out or not (_ancestors(out, {raw, cut}) & position_only):
            return cut
    return None


def _clone_between(graph, cut: Node, out: Node, raw: Node) -> Node:
    """Copies of the nodes from `cut` to `out` (the transform after RoPE), reading `raw` instead of `cut`."""
    inside = _ancestors(out, {cut}) - {cut}
    order = [n for n in graph.nodes if n in inside and cut in _ancestors(n, set())]
    env = {cut: raw}
    with graph.inserting_before(out):
        for n in order:
            env[n] = graph.node_copy(n, lambda a: env.get(a, a))
    return env[out]


def _commutes(ctx: PassContext, raw: Node, out: Node, moved: Node, rope: RopeInfo) -> bool:
    """Whether the graph's out(raw) equals RoPE applied to the transform moved before it, on random probes."""
    shape = fake(raw).shape
    head_axis, token_axis = _layout(raw, int(shape[3]))
    heads, head_size, dtype = int(shape[head_axis]), int(shape[3]), fake(raw).dtype
    gen = torch.Generator().manual_seed(1)
    positions = torch.randint(0, rope.cos_sin.shape[0], (6,), generator=gen)
    x = torch.randn(len(positions), heads, head_size, generator=gen).to(dtype)
    known = {
        raw: _arrange(x, head_axis, token_axis),
        ctx.engine_inputs["position_ids"]: positions.to(torch.int32),
        ctx.engine_inputs["input_ids"]: torch.zeros(len(positions), dtype=torch.int32),
    }
    got, before = (_unarrange(v.float(), head_axis, token_axis) for v in evaluate([out, moved], known, ctx.weights.load))
    want = apply_rope(before, rope.cos_sin[positions], rope.dim, rope.style)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    error = (got - want).abs().max().item()
    return error <= tolerance * max(1.0, want.abs().max().item())


def _sinks(node: Node, num_heads: int) -> torch.Tensor | None:
    sinks = node.meta.get(SINKS_META)
    if sinks is not None and sinks.numel() != num_heads:
        _fail(node, f"{sinks.numel()} attention sinks for {num_heads} heads")
    return sinks


def _position_fields(rope: RopeInfo | None, alibi_slopes, max_positions: int) -> dict:
    if rope is not None:
        return rope.attention_fields(max_positions)
    fields = no_rope_fields(max_positions)
    if alibi_slopes is not None:
        fields["position_embedding_type"] = "alibi"
    return fields


def _sdpa_args(node: Node):
    names = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal"]
    defaults = [None, None, None, None, 0.0, False]
    values = list(node.args) + defaults[len(node.args) :]
    values = [node.kwargs.get(n, v) for n, v in zip(names, values)]
    return values  # with enable_gqa, K/V simply carry fewer heads


def _strip_tiled_kv(x: Node) -> tuple[Node, bool]:
    """repeat(kv, [1, r, 1, 1]) (JetMoE: KV head j serves query heads j, j + KV, ...) -> (kv, True)."""
    if is_call(x, aten.repeat.default) and len(x.args[1]) == 4 and list(x.args[1])[::2] == [1, 1] and x.args[1][3] == 1:
        return x.args[0], x.args[1][1] > 1
    return x, False


def _regroup_heads(graph, rows: Node, outer: int, inner: int, head_size: int) -> Node:
    """[.., outer * inner * D] with head o * inner + i -> head i * outer + o."""
    split = insert_op(graph, aten.reshape.default, (rows, [-1, outer, inner, head_size]))
    swapped = insert_op(graph, aten.permute.default, (split, [0, 2, 1, 3]))
    width = outer * inner * head_size
    return insert_op(graph, aten.reshape.default, (swapped, [1, -1, width] if len(fake(rows).shape) == 3 else [-1, width]))


def _strip_repeat_kv(x: Node) -> Node:
    """repeat_kv: reshape(expand(unsqueeze(kv, 2), [b, kv, n_rep, t, d]), [b, kv*n_rep, t, d]) -> kv, also
    under a cast to float32 (the op computes K and V in float32 anyway)."""
    while is_call(x, aten._to_copy.default, aten.to.dtype) and fake(x).dtype == torch.float32:
        inner = _strip_repeat_kv(x.args[0])
        if inner is x.args[0]:
            break
        return inner
    if is_call(x, aten.reshape.default, aten.view.default, aten._unsafe_view.default):
        expanded = x.args[0]
        if is_call(expanded, aten.expand.default) and is_call(expanded.args[0], aten.unsqueeze.default):
            inner = expanded.args[0]
            if inner.args[1] == 2 and len(fake(inner.args[0]).shape) == 4:
                return inner.args[0]
    return x


def _data_descendants(start: Node) -> set[Node]:
    """Nodes whose values depend on `start`'s values (not merely on its size)."""
    seen = {start}
    stack = [start]
    while stack:
        for user in stack.pop().users:
            if user not in seen and not is_call(user, aten.sym_size.int):
                seen.add(user)
                stack.append(user)
    return seen


# ops RoPE is written with; the walk back from the attention input stays inside them
_ROPE_OPS = {
    aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.neg.default, aten.cat.default, aten.slice.Tensor,
    aten.stack.default, aten.flatten.using_ints, aten._to_copy.default, aten.to.dtype, aten.unsqueeze.default,
    aten.select.int, aten.view.default, aten.reshape.default, aten.chunk.default, aten.split.Tensor,
    aten.split_with_sizes.default, operator.getitem,
}


def _rope_input(x: Node, position_only: set, token_dependent: set, sdpa: Node):
    """(the tensor RoPE rotates, the RoPE output, the cos/sin nodes it reads), or (x, None, None).

    Walking back from the attention input through element-wise/concat/slice ops, RoPE is
    there when the walk meets position-only values (cos/sin of position_ids); the tensor it
    rotates is the single token-dependent node where the walk leaves those ops.
    """
    seen, frontier, stack, operands, region = {x}, [], [x], set(), []
    while stack:
        node = stack.pop()
        region.append(node)
        if node in position_only:
            operands.add(node)
            continue
        if node is not x and (node not in token_dependent or not is_call(node, *_ROPE_OPS)):
            if node in token_dependent:
                frontier.append(node)
            continue
        if not is_call(node, *_ROPE_OPS):
            return x, None, None
        for n in node.all_input_nodes:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    if not operands:
        return x, None, None
    rotated = _rotated_tensor(region, position_only, token_dependent)
    if rotated is not None:
        return rotated, x, (region, operands)
    for candidate in frontier:
        if all(_depends_on(other, candidate) for other in frontier):
            return candidate, x, (region, operands)
    _fail(sdpa, f"could not find the single tensor RoPE is applied to (candidates: {[n.name for n in frontier]})")


# ops that move, negate or cast features on the way from the rotated tensor to cos/sin products
_ROTATE_OPS = {
    aten.neg.default, aten.cat.default, aten.slice.Tensor, aten.stack.default, aten.flatten.using_ints,
    aten.select.int, aten.view.default, aten.reshape.default, aten.unsqueeze.default, aten._to_copy.default,
    aten.to.dtype, aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default, operator.getitem,
}


def _rotated_tensor(region: list[Node], position_only: set, token_dependent: set) -> Node | None:
    """The one tensor every product with cos/sin reads (through slices, negation, concatenation:
    `x * cos + rotate_half(x) * sin`), or None. Found this way, a norm or scale applied before
    RoPE (QK-norm on the heads-first layout) stays outside the rotated region."""
    found, inside = set(), set(region)
    for node in region:
        if not is_call(node, aten.mul.Tensor) or not any(a in position_only for a in node.args):
            continue
        other = next((a for a in node.args if a in token_dependent), None)
        if other is None:
            return None
        while is_call(other, *_ROTATE_OPS):
            if is_call(other, operator.getitem) and not set(other.args[0].users) <= inside:
                break  # one piece of a split whose other pieces RoPE does not read (a fused QKV): the input
            inputs = [a for a in other.all_input_nodes if a in token_dependent]
            if not inputs:
                return None
            other = inputs[0]
        found.add(other)
    return found.pop() if len(found) == 1 else None


def _depends_on(node: Node, target: Node, limit: int = 256) -> bool:
    """Whether `node` reads `target`, looking at most `limit` nodes back (RoPE regions are small)."""
    return any(n is target for n in ancestors(node, limit))


def _rope_signature(ctx: PassContext, raw: Node, region: list[Node], operands: set[Node]) -> tuple:
    def plain(args):
        return tuple(plain(a) if isinstance(a, (list, tuple)) else ("node" if isinstance(a, Node) else a) for a in args)

    ops = tuple((str(n.target), plain(n.args)) for n in region if n.op == "call_function")
    known = {
        ctx.engine_inputs["position_ids"]: torch.arange(8, dtype=torch.int32),
        ctx.engine_inputs["input_ids"]: torch.zeros(8, dtype=torch.int32),
    }
    values = evaluate(sorted(operands, key=lambda n: n.name), known, ctx.weights.load)
    digest = tuple(tuple(v.flatten().tolist()) for v in values)
    return ops, digest, str(tuple(fake(raw).shape)), fake(raw).dtype


def _probe(ctx: PassContext, raw: Node, out: Node, values: torch.Tensor, positions: torch.Tensor,
           perm: torch.Tensor | None = None) -> torch.Tensor:
    """`out` computed from `raw` = values at `positions`; `perm` [D] reorders its last-axis features
    (undoing a feature permutation the model applies after RoPE, see `_output_permutation`)."""
    known = {
        raw: values,
        ctx.engine_inputs["position_ids"]: positions.to(torch.int32),
        ctx.engine_inputs["input_ids"]: torch.zeros(positions.shape[0], dtype=torch.int32),
    }
    y = evaluate([out], known, ctx.weights.load)[0].float()
    return y if perm is None else y[..., perm]


def _layout(raw: Node, head_size: int) -> tuple[int, int]:
    """(head axis, token axis) of a rank-4 [1, ., ., head_size] tensor."""
    shape = fake(raw).shape
    token_axis = next((i for i, d in enumerate(shape) if not isinstance(d, int)), None)
    if len(shape) != 4 or shape[3] != head_size or token_axis not in (1, 2):
        raise ValueError(f"unexpected layout {tuple(shape)} of {raw.name}")
    return 3 - token_axis, token_axis


def _identify_rope(ctx: PassContext, raw: Node, out: Node, heads: int, head_size: int, sdpa: Node,
                   perm: torch.Tensor | None = None) -> RopeInfo:
    dtype = fake(raw).dtype
    head_axis, token_axis = _layout(raw, head_size)
    probe_positions = torch.tensor([1, 2, 3, 7, 19])
    n = len(probe_positions)
    # columns of the per-position rotation matrix: basis vector i fed to head (i % heads)
    rotation = torch.zeros(n, head_size, head_size)
    for first in range(0, head_size, heads):
        x = torch.zeros(n, heads, head_size, dtype=dtype)
        for h in range(heads):
            if first + h < head_size:
                x[:, h, first + h] = 1
        y = _probe(ctx, raw, out, _arrange(x, head_axis, token_axis), probe_positions, perm)
        y = _unarrange(y, head_axis, token_axis)
        for h in range(heads):
            if first + h < head_size:
                rotation[:, :, first + h] = y[:, h, :]
    moved = (rotation - torch.eye(head_size)).abs().amax(dim=0)
    touched = sorted(set(torch.nonzero(moved > 1e-6).flatten().tolist()))
    dim = len(touched)
    if dim == 0 or touched != list(range(dim)) or dim % 2:
        _fail(sdpa, f"the position-dependent transform of {raw.name} is not a RoPE on leading features (moves {touched})")
    half = dim // 2
    neox = sum(rotation[:, j + half, j].abs().sum() for j in range(half))
    gptj = sum(rotation[:, 2 * i + 1, 2 * i].abs().sum() for i in range(half))
    style = GPTJ if gptj > neox else NEOX

    max_positions = _max_positions(ctx.loaded.config)
    probe = torch.zeros(head_size, dtype=dtype)
    if style == NEOX:
        probe[:half] = 1
    else:
        probe[0:dim:2] = 1
    rows = []
    for start in range(0, max_positions, 2048):
        positions = torch.arange(start, min(start + 2048, max_positions))
        x = probe.expand(len(positions), heads, head_size).clone()
        y = _unarrange(_probe(ctx, raw, out, _arrange(x, head_axis, token_axis), positions, perm), head_axis, token_axis)[:, 0]
        if style == NEOX:
            rows.append(torch.cat([y[:, :half], y[:, half:dim]], dim=-1))
        else:
            rows.append(torch.cat([y[:, 0:dim:2], y[:, 1:dim:2]], dim=-1))
    cos_sin = torch.cat(rows).float().contiguous()
    inv_freq = torch.atan2(cos_sin[1, half:], cos_sin[1, :half]).contiguous()
    return RopeInfo(style=style, dim=dim, cos_sin=cos_sin, inv_freq=inv_freq,
                    **_rope_config(ctx.loaded.config, inv_freq, dim))


def _identify_query_scale(ctx: PassContext, raw: Node, out: Node, sdpa: Node) -> torch.Tensor:
    """The table [max_positions] of a position-dependent transform of the query alone that multiplies
    it by a factor of the position (Beam's NoPE layers: (1 + position / 2048) ** 0.1); fails otherwise."""
    shape = fake(raw).shape
    head_axis, token_axis = _layout(raw, int(shape[3]))
    heads, head_size, dtype = int(shape[head_axis]), int(shape[3]), fake(raw).dtype
    max_positions = _max_positions(ctx.loaded.config)
    rows = []
    for start in range(0, max_positions, 2048):
        positions = torch.arange(start, min(start + 2048, max_positions))
        ones = torch.ones(len(positions), heads, head_size, dtype=dtype)
        y = _unarrange(_probe(ctx, raw, out, _arrange(ones, head_axis, token_axis), positions), head_axis, token_axis)
        rows.append(y[:, 0, 0])
    table = torch.cat(rows).float().contiguous()
    gen = torch.Generator().manual_seed(0)
    positions = torch.randint(0, max_positions, (6,), generator=gen)
    x = torch.randn(len(positions), heads, head_size, generator=gen).to(dtype)
    got = _unarrange(_probe(ctx, raw, out, _arrange(x, head_axis, token_axis), positions), head_axis, token_axis)
    want = x.float() * table[positions][:, None, None]
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    error = (got - want).abs().max().item()
    if not error <= tolerance * max(1.0, want.abs().max().item()):
        _fail(sdpa, "the query alone goes through a position-dependent transform that is neither RoPE (the key has "
                    f"none) nor a per-position scale (off by {error:.3g})")
    return table


def _verify_rope(ctx: PassContext, raw: Node, out: Node, rope: RopeInfo, sdpa: Node,
                 perm: torch.Tensor | None = None) -> None:
    """A random probe through the graph must equal ditto's RoPE with the recognised table."""
    shape = fake(raw).shape
    if len(shape) == 3:  # one head, [1, T, D] (MLA's shared key part, viewed as one head after it)
        heads, head_size = 1, int(shape[2])
    else:
        head_axis, token_axis = _layout(raw, int(shape[3]))
        heads, head_size = int(shape[head_axis]), int(shape[3])
    dtype = fake(raw).dtype
    gen = torch.Generator().manual_seed(0)
    positions = torch.randint(0, rope.cos_sin.shape[0], (6,), generator=gen)
    x = torch.randn(len(positions), heads, head_size, generator=gen).to(dtype)
    got = _from_graph(_probe(ctx, raw, out, _to_graph(x, raw), positions, perm), out)
    want = apply_rope(x.float(), rope.cos_sin[positions], rope.dim, rope.style)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    error = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
    if not error <= tolerance * max(1.0, want.abs().max().item()):
        _fail(sdpa, f"RoPE on {raw.name} recognised as {rope.style} dim {rope.dim} does not reproduce the graph (error {error:.3g})")


def _to_graph(x: torch.Tensor, node: Node) -> torch.Tensor:
    """[tokens, heads, D] -> `node`'s layout: rank 4 as `_arrange`, or [1, tokens, D] for one head."""
    shape = fake(node).shape
    if len(shape) == 3:
        return x.reshape(1, x.shape[0], x.shape[2])
    return _arrange(x, *_layout(node, int(shape[3])))


def _from_graph(y: torch.Tensor, node: Node) -> torch.Tensor:
    shape = fake(node).shape
    if len(shape) == 3:
        return y.reshape(y.shape[1], 1, y.shape[2])
    return _unarrange(y, *_layout(node, int(shape[3])))


def _arrange(x: torch.Tensor, head_axis: int, token_axis: int) -> torch.Tensor:
    """[tokens, heads, D] -> the graph's rank-4 layout with a leading 1."""
    return (x.transpose(0, 1) if head_axis == 1 else x).unsqueeze(0)


def _unarrange(y: torch.Tensor, head_axis: int, token_axis: int) -> torch.Tensor:
    y = y.squeeze(0)
    return y.transpose(0, 1) if head_axis == 1 else y


def _check_causal(ctx: PassContext, sdpa: Node, mask, is_causal: bool, num_heads: int) -> tuple[int, torch.Tensor | None]:
    """(0 for a causal mask or w for a causal sliding window of w keys, the ALiBi slopes [num_heads] of
    a score bias or None); fails on anything else.

    The mask (with whatever score bias eager attention folded into it) is computed for one sequence
    of t tokens. Scores at or below -1e3 are masked out; the finite rest is a bias, which must be
    ALiBi: slope_h * (key - query) up to a per-row constant (softmax ignores those)."""
    if mask is None:
        if not is_causal:
            _fail(sdpa, "attention without a causal mask (bidirectional) is not supported")
        return 0, None
    t = _MASK_PROBE_TOKENS
    known = {
        ctx.engine_inputs["position_ids"]: torch.arange(t, dtype=torch.int32),
        ctx.engine_inputs["input_ids"]: torch.zeros(t, dtype=torch.int32),
    }
    value = evaluate([mask], known, ctx.weights.load)[0]
    if value.dim() < 2:
        raise ValueError(f"a mask of shape {tuple(value.shape)}")
    value = value.reshape(-1, *value.shape[-2:]).expand(-1, t, t)  # [heads or 1, t, t]
    if value.dtype == torch.bool:
        allowed, bias = value, None
    else:
        allowed = value.float() > _MASKED_SCORE
        bias = torch.where(allowed, value.float(), 0.0)
    if not bool((allowed == allowed[:1]).all()):
        _fail(sdpa, "the attention mask differs between heads")
    allowed = allowed[0]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    if torch.equal(allowed, causal):
        window = 0
    else:
        window = int(allowed[-1].sum())
        band = causal & ~torch.ones(t, t, dtype=torch.bool).tril(-window)
        if not torch.equal(allowed, band):
            _fail(sdpa, "the attention mask is neither causal nor a causal sliding window")
    if bias is None or not bool(bias.any()):
        return window, None
    return window, _alibi_slopes(sdpa, bias, allowed, num_heads, value.dtype)


_MASKED_SCORE = -1e3


def _alibi_slopes(sdpa: Node, bias: torch.Tensor, allowed: torch.Tensor, num_heads: int, dtype) -> torch.Tensor:
    """The per-head slopes of a score bias [heads or 1, t, t] that is slope_h * (key - query) + c(query)."""
    t = bias.shape[-1]
    relative = bias - bias.diagonal(dim1=-2, dim2=-1)[..., :, None]  # bias(key) - bias(query) per row
    distance = (torch.arange(t)[None, :] - torch.arange(t)[:, None]).float()  # key - query
    first = int(allowed[-1].nonzero()[0])  # the oldest key the last query sees
    if first == t - 1:
        _fail(sdpa, "a score bias with a window of one key")
    slopes = relative[:, -1, first] / distance[-1, first]  # [heads or 1]
    want = slopes[:, None, None] * distance
    error = ((relative - want).abs() * allowed).max().item()
    tolerance = (1e-4 if dtype == torch.float32 else 2e-2) * max(1.0, want.abs().max().item())
    if not error <= tolerance:
        _fail(sdpa, f"the scores carry an additive bias that is not ALiBi (slope * (key - query) per head; off by "
                    f"{error:.3g}); TensorRT-LLM's attention adds no other score bias")
    return slopes.expand(num_heads).contiguous().float()


class _Piece:
    """A run of head features of the attention's query or key: `raw` (before RoPE) [1, heads, T, width],
    [1, T, heads, width] or, for one head, [1, T, width]; `rotated` the RoPE output of it (None: no RoPE);
    `expanded`: one head broadcast to all heads (the key's shared RoPE part in MLA)."""

    def __init__(self, start, width, raw, rotated, operands, expanded):
        self.start, self.width, self.raw, self.rotated = start, width, raw, rotated
        self.operands, self.expanded = operands, expanded


def _cat_pieces(x: Node):
    """x = cat([p1, p2, ...], last axis) -> [(piece, start, width)], or None."""
    if not is_call(x, aten.cat.default):
        return None
    rank = len(fake(x).shape)
    dim = x.args[1] if len(x.args) > 1 else x.kwargs.get("dim", 0)
    if dim % rank != rank - 1:
        return None
    out, start = [], 0
    for piece in x.args[0]:
        width = int(fake(piece).shape[-1])
        out.append((piece, start, width))
        start += width
    return out


def _strip_head_expand(x: Node, heads: int) -> tuple[Node, bool]:
    """expand(p, [.., heads, .., ..]) of a one-head [1, 1, T, w] p -> (p, True), else (x, False)."""
    if is_call(x, aten.expand.default):
        inner_shape = fake(x.args[0]).shape
        if len(inner_shape) == 4 and inner_shape[1] == 1 and fake(x).shape[1] == heads:
            return x.args[0], True
    return x, False


def _latent_rope_pieces(q: Node, k: Node, num_heads: int, num_kv_heads: int, position_only: set,
                        token_dependent: set, sdpa: Node):
    """(query pieces, key pieces) with the rotated piece first, when RoPE rotates one run of features
    that is not the head's leading one, or the key's rotated run is one head shared by all heads:
    q = cat([q_nope, rope(q_rot)], -1), k = cat([k_nope, expand(rope(k_rot))], -1) (DeepSeek-V2/V3
    multi-head latent attention). Moving the same run of features to the front of q and of k keeps
    every q.k, and makes the RoPE the op's partial RoPE on leading features. None otherwise (the
    general path handles RoPE on leading features)."""
    result = []
    for x, heads in ((q, num_heads), (k, num_kv_heads)):
        found = _cat_pieces(x)
        if found is None:
            return None
        pieces = []
        for piece, start, width in found:
            inner, expanded = _strip_head_expand(piece, heads)
            # the complex RoPE's closing cast, type_as(rotated, the input): walk from its value
            walked = inner.args[0] if is_call(inner, aten.type_as.default) else inner
            raw, rotated, operands = _rope_input(walked, position_only, token_dependent, sdpa)
            rotated = inner if rotated is not None else None
            shape = fake(raw).shape
            if rotated is not None and (shape[-1] != width or len(shape) not in (3, 4)):
                return None
            if len(shape) == 3 and not (rotated is not None and fake(rotated).shape[1] == 1 and expanded):
                return None
            pieces.append(_Piece(start, width, raw, rotated, operands, expanded))
        rotated = [p for p in pieces if p.rotated is not None]
        if len(rotated) != 1:
            return None
        result.append([rotated[0]] + [p for p in pieces if p.rotated is None])
    (q_rot, *_), (k_rot, *_) = result
    if (q_rot.start, q_rot.width) != (k_rot.start, k_rot.width):
        return None
    if q_rot.start == 0 and not (q_rot.expanded or k_rot.expanded):
        return None
    return result


def _identify_piece_rope(ctx: PassContext, pieces, sdpa: Node) -> RopeInfo:
    """The RoPE of the rotated query piece (identified on it alone), verified on the query's and the
    key's rotated piece; it must rotate leading features of the piece (the piece moves to the front)."""
    q_rot, k_rot = pieces[0][0], pieces[1][0]
    shape = fake(q_rot.raw).shape
    if len(shape) != 4:
        _fail(sdpa, f"the query's rotated features {q_rot.raw.name} have the shape {tuple(shape)}")
    head_axis, _ = _layout(q_rot.raw, q_rot.width)
    perm = _output_permutation(ctx, q_rot.raw, q_rot.rotated, int(shape[head_axis]), q_rot.width)
    key = (_rope_signature(ctx, q_rot.raw, *q_rot.operands), None if perm is None else tuple(perm.tolist()))
    if key not in ctx.identified_rope:
        ctx.identified_rope[key] = _identify_rope(ctx, q_rot.raw, q_rot.rotated, int(shape[head_axis]), q_rot.width,
                                                  sdpa, perm)
    rope = ctx.identified_rope[key]
    # the key's piece must have the same permutation: then it cancels in q.k
    _verify_rope(ctx, q_rot.raw, q_rot.rotated, rope, sdpa, perm)
    _verify_rope(ctx, k_rot.raw, k_rot.rotated, rope, sdpa, perm)
    return rope


def _output_permutation(ctx: PassContext, raw: Node, out: Node, heads: int, width: int) -> torch.Tensor | None:
    """The reordering [width] that undoes a feature permutation the model applies after RoPE
    (DeepSeek-V3's `rope_interleave`: pairs (x[2i], x[2i+1]) rotated and written to (i, i + width/2)),
    or None. At position 0 RoPE is the identity up to a constant (yarn's attention factor), so
    there the piece's transform is that permutation alone. Applied to the query's and the key's
    rotated piece alike, it cancels in every q.k: the op may rotate the unpermuted features."""
    dtype = fake(raw).dtype
    head_axis, token_axis = _layout(raw, width)
    x = torch.zeros(width, heads, width, dtype=dtype)
    for j in range(width):
        x[j, :, j] = 1
    y = _unarrange(_probe(ctx, raw, out, _arrange(x, head_axis, token_axis), torch.zeros(width, dtype=torch.long)),
                   head_axis, token_axis)[:, 0]  # [input feature, output feature]
    perm = y.abs().argmax(dim=1)  # output feature of each input feature
    if sorted(perm.tolist()) != list(range(width)) or torch.equal(perm, torch.arange(width)):
        return None
    scale = y[0, perm[0]]
    if not torch.allclose(y, scale * torch.eye(width)[perm], atol=1e-6 * max(1.0, abs(float(scale)))):
        return None
    return perm


def _to_heads(graph, x: Node, heads: int) -> Node:
    """[1, heads, T, D], [1, T, heads, D] or (one head) [1, T, D] -> [1, T, heads, D]."""
    shape = fake(x).shape
    if len(shape) == 3:
        return insert_op(graph, aten.reshape.default, (x, [1, -1, 1, int(shape[2])]))
    token_axis = next((i for i, d in enumerate(shape) if not isinstance(d, int)), None)
    if token_axis is None:  # fixed by export or by a fake kernel: the op would be built for one prompt length
        raise DittoError(f"attention input {x.name} ({source_line(x)}) has the static shape {tuple(shape)}: its token "
                         "count is no longer dynamic (run `ditto export MODEL --artifacts DIR` to see where it was fixed)")
    if token_axis == 2:
        x = insert_op(graph, aten.permute.default, (x, [0, 2, 1, 3]))
    return x


def _pieces_to_heads(graph, pieces: list, heads: int) -> Node:
    """The pieces' raw features (rotated piece first) as one [1, T, heads, D]."""
    parts = []
    for piece in pieces:
        part = _to_heads(graph, piece.raw, heads)
        if int(fake(part).shape[2]) != heads:
            if not piece.expanded:
                raise DittoError(f"{piece.raw.name} has {int(fake(part).shape[2])} heads, not {heads}")
            part = insert_op(graph, aten.expand.default, (part, [-1, -1, heads, piece.width]))
        parts.append(part)
    return insert_op(graph, aten.cat.default, (parts, -1))


def _pad_features(graph, x: Node, size: int) -> Node:
    """[1, T, heads, d] -> [1, T, heads, size] with zero features past d (the narrower head of MLA)."""
    width = int(fake(x).shape[3])
    if width == size:
        return x
    zeros = insert_op(graph, aten.zeros_like.default, (x,))
    blocks = [x] + [zeros] * -(-(size - width) // width)
    padded = insert_op(graph, aten.cat.default, (blocks, -1))
    return insert_op(graph, aten.slice.Tensor, (padded, 3, 0, size))


def _rows_of(graph, x: Node, heads: int) -> Node:
    """[1, T, heads, D] -> [1, T, heads * D]."""
    return insert_op(graph, aten.reshape.default, (x, [1, -1, heads * int(fake(x).shape[3])]))


def _table_attr(ctx: PassContext, base: str, table: torch.Tensor | None) -> Node | None:
    """A get_attr for a table (RoPE, ALiBi slopes, sinks...), shared by every layer with the same
    values; a new one through the one weight-attr helper, PassContext.add_weight."""
    if table is None:
        return None
    for name in ctx.weights.names():
        source = ctx.weights.spec(name).source
        if name.startswith(base) and isinstance(source, InMemoryTensor) and torch.equal(source.tensor, table):
            existing = next((n for n in ctx.graph.nodes if n.op == "get_attr" and n.target == name), None)
            if existing is not None:
                return existing
    name = base if base not in ctx.weights else f"{base}_{len(ctx.weights.names())}"
    return ctx.add_weight(name, WeightSpec(tuple(table.shape), table.dtype, InMemoryTensor(table)))


def _max_positions(config) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


_SCALE_TYPES = {"default": "none", "linear": "linear", "dynamic": "dynamic", "llama3": "llama3", "yarn": "yarn",
                "longrope": "longrope", "su": "longrope"}


def _rope_config(config, inv_freq: torch.Tensor, dim: int) -> dict:
    """Plugin fields TensorRT-LLM takes from the config (base, scaling); the table is exact anyway."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(params, dict):
        params = {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:  # infer from the frequencies: inv_freq[1] = base ** (-2 / dim)
        theta = float(inv_freq[1] ** (-dim / 2)) if len(inv_freq) > 1 else 10000.0
    rope_type = params.get("rope_type", params.get("type", "default"))
    out = dict(base=float(theta), scale_type=_SCALE_TYPES.get(rope_type, "none"), scale=float(params.get("factor", 1.0)))
    if "original_max_position_embeddings" in params:
        out["original_max_positions"] = int(params["original_max_position_embeddings"])
    return out


def refuse_unsupported_rope(config) -> None:
    """Refuse, before export, RoPE scalings whose tables depend on the sequence length.

    Long-RoPE (Phi-3 'longrope'/'su') switches between short and long frequency tables by
    sequence length; TensorRT-LLM computes it as PositionEmbeddingType.long_rope with extra
    inputs and short/long m-scales. One probed table is right for one regime only.
    """
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    candidates = [params] + [v for v in params.values() if isinstance(v, dict)] if isinstance(params, dict) else []
    for entry in candidates:
        rope_type = entry.get("rope_type", entry.get("type"))
        if rope_type in ("longrope", "su"):
            raise DittoError(
                f"{type(config).__name__} uses long-RoPE ({rope_type!r} scaling): short and long frequency tables "
                "switched by sequence length, which TensorRT-LLM computes as PositionEmbeddingType.long_rope with its "
                "own extra inputs and m-scales; ditto does not implement it yet and refuses rather than build an "
                "engine that computes something else"
            )


def _fail(node: Node, problem: str):
    raise DittoError(
        f"attention at node {node.name} ({source_line(node)}): {problem}. "
        "Ditto recognises causal self-attention with optional RoPE or ALiBi, GQA/MQA and sliding window."
    )
