"""Recognise mixture-of-experts blocks and replace each with one `ditto.moe` op.

before (transformers 5 experts, `batched_mm` implementation; any router that is top-k):
    logits = linear(x, W_router)                       # [T, E]
    scores = softmax(logits.float()) | sigmoid(...)    # routing region: any ops
    values, ids = topk(scores [+ bias], k)             #   ... evaluated, not read
    w = reshape(f(values), [-1]);  e = reshape(ids, [-1])
    h = bmm(index(fc1, [e]), repeat_interleave(x, k)[..., None])[..., 0]  [+ index(b1, [e])]
    h = act-region(h)                                  # evaluated, not read
    y = bmm(index(fc2, [e]), h[..., None])[..., 0]     [+ index(b2, [e])]
    out = sum(view(y * w[:, None], [T, k, H]), 1)
after:
    out = ditto.moe(x, logits, fc1', fc2', b1, b2, expert_bias, E, k, mode, scoring, act, scale)

The block is found from its expert dispatch (3-D parameters indexed by integer expert ids),
not from how the ids were chosen; the data flow between expert weights, token ids and the
combine is matched structurally. The two regions whose spelling varies between models are
identified by what they compute, on probe values: the routing region (logits -> flat weights
and ids) against every router the op defines (softmax or sigmoid scores; top-k of the scores
or of the raw logits, plus an expert bias for selection; group-limited top-k with the group
count hinted by the region's [T, G, E/G] views; renormalised or not; a scale; PhiMoE's sparse
mixer, its epsilon measured on threshold probes and then checked), and the activation region
against gated and plain activations and a clamped SwiGLU (alpha, beta, limit measured, then
checked); a gated activation may find its halves concatenated (either order) or interleaved
(GPT-OSS: gate = [..., ::2], up = [..., 1::2]), and fc1's weight and bias are reordered at load
into the op's one [linear | gate] layout. A router projection with a bias (GPT-OSS) stays the
graph's linear: the op takes its logits. An expert dispatch whose routing matches nothing is a DittoError naming it and its
model source line, never a guess.
"""

from __future__ import annotations

import math
import operator

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.evaluate import evaluate
from ditto.graph.insert import insert_op
from ditto.graph.nodes import computed_from, fake, is_call, source_line
from ditto.models.weights import Concat, Narrow, Transposed, WeightSpec
from ditto.ops import moe as moe_op
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_PASS_THROUGH = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.to.dtype, aten._to_copy.default)
_PROBE_TOKENS = 7
_ROUTERS = [(s, m) for s in ("softmax", "sigmoid") for m in (moe_op.NORMALIZATION_RENORMALIZE, moe_op.NORMALIZATION_NONE)]


# after replace_attention: order only (no data dependency), today's order
@register_pass("replace_moe", after=("replace_attention",))
def replace_moe(ctx: PassContext) -> int:
    count = 0
    for origin, gathers in _dispatches(ctx.graph):
        _replace(ctx, origin, gathers)
        _erase_dead_region(ctx.graph, origin)
        count += 1
    return count


def _dispatches(graph) -> list[tuple[Node, list[Node]]]:
    """(expert-id node, the index(W, [ids']) nodes selecting parameter rows by it), in graph order.

    The expert ids are found from their use, not from how they were chosen: whatever computes
    them (a top-k, PhiMoE's two arg-maxes, a grouped top-k) is identified afterwards by probing."""
    found: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        if (not is_call(node, aten.index.Tensor) or not isinstance(node.args[0], Node) or node.args[0].op != "get_attr"
                or len(node.args[1]) != 1):
            continue
        flat = node.args[1][0]
        if not isinstance(flat, Node) or fake(flat).is_floating_point():
            continue
        origin = flat
        while is_call(origin, *_PASS_THROUGH):
            origin = origin.args[0]
        found.setdefault(origin, []).append(node)
    return [(origin, gathers) for origin, gathers in found.items()
            if any(len(fake(g.args[0]).shape) == 3 for g in gathers)]


def _erase_dead_region(graph, topk: Node) -> None:
    """Erase the replaced block. Plain dead-code elimination keeps in-place ops (the router's
    `weights /= weights.sum()`), so those go too when what they mutate is the block's own."""
    region, stack = set(), [topk]
    while stack:
        node = stack.pop()
        if node not in region:
            region.add(node)
            stack.extend(node.users)
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes)):
            if node.op == "call_function" and not node.users and node in region:
                graph.erase_node(node)
                changed = True
    graph.eliminate_dead_code()


def _fail(node: Node, problem: str) -> DittoError:
    return DittoError(
        f"mixture-of-experts at {node.name} ({source_line(node)}): {problem}; ditto converts top-k routed experts "
        "computed with transformers' batched experts (softmax or sigmoid router, optional renormalisation, scale, "
        "expert bias and group limit, or PhiMoE's sparse mixer; gated, plain or clamped-SwiGLU activation)"
    )


def _replace(ctx: PassContext, origin: Node, gathers: list[Node]) -> None:
    # `topk`: the node errors name (the top-k when there is one, else what computes the ids)
    topk = origin.args[0] if origin.target is operator.getitem else origin
    num_experts = int(next(fake(g.args[0]).shape[0] for g in gathers if len(fake(g.args[0]).shape) == 3))
    fc1, fc2, combine = _experts(ctx, topk, gathers, num_experts)
    x, top_k = _repeated_input(fc1["vector"], topk)
    router = _router_linear(topk, topk)
    flat_ids = fc1["gather"].args[1][0]
    flat_weights = combine["weights"]
    routing = _identify_routing(ctx, topk, router, flat_weights, flat_ids, num_experts, top_k)
    activation = _identify_activation(ctx, topk, fc1, fc2)
    layout = activation["layout"]

    graph = ctx.graph
    out = combine["out"]
    with graph.inserting_before(out):
        fc1_w = _expert_weight(ctx, fc1, layout, suffix="fc1")
        fc2_w = _expert_weight(ctx, fc2, None, suffix="fc2")
        b1 = _expert_bias_attr(ctx, fc1, layout)
        b2 = _expert_bias_attr(ctx, fc2, None)
        if routing["expert_bias"] is not None and tuple(fake(routing["expert_bias"]).shape) != (num_experts,):
            routing["expert_bias"] = insert_op(graph, aten.view.default, (routing["expert_bias"], [num_experts]))
        args = (x, router, fc1_w, fc2_w, b1, b2, routing["expert_bias"], num_experts, top_k, routing["mode"],
                routing["scoring"], activation["name"], routing["scale"], routing["selection"], routing["n_group"],
                routing["topk_group"], routing["group_top"], routing["sparse_mixer_epsilon"], activation["alpha"],
                activation["beta"], activation["limit"])
        node = insert_op(graph, torch.ops.ditto.moe.default, args, name="moe")
    node.meta["nn_module_stack"] = out.meta.get("nn_module_stack", {})
    node.meta["stack_trace"] = out.meta.get("stack_trace")
    if fake(out).dtype != fake(node).dtype:
        with graph.inserting_after(node):
            cast = insert_op(graph, aten.to.dtype, (node, fake(out).dtype))
        out.replace_all_uses_with(cast)
    else:
        out.replace_all_uses_with(node)
    ctx.moe.append(
        dict(num_experts=num_experts, top_k=top_k, normalization_mode=routing["mode"], scoring=routing["scoring"],
             activation=activation["name"], routed_scaling=routing["scale"], has_expert_bias=routing["expert_bias"] is not None,
             selection=routing["selection"], n_group=routing["n_group"], topk_group=routing["topk_group"],
             group_top=routing["group_top"], sparse_mixer_epsilon=routing["sparse_mixer_epsilon"],
             activation_params=(activation["alpha"], activation["beta"], activation["limit"]),
             has_bias=b1 is not None, has_fc2_bias=b2 is not None, inter_size=int(fake(fc2_w).shape[-1]), router=router.name, node=node.name)
    )


# ---- experts: structure -----------------------------------------------------------------------

def _experts(ctx: PassContext, topk: Node, gathers: list[Node], num_experts: int):
    weights = [g for g in gathers if len(fake(g.args[0]).shape) == 3 and int(fake(g.args[0]).shape[0]) == num_experts]
    biases = [g for g in gathers if len(fake(g.args[0]).shape) == 2 and int(fake(g.args[0]).shape[0]) == num_experts]
    if len(weights) != 2 or len(gathers) != len(weights) + len(biases):
        raise _fail(topk, f"expected two 3-D expert weights selected by the expert ids, found {len(weights)}")
    mats = [_expert_matmul(g, topk) for g in weights]
    # fc1 reads the tokens; fc2 reads what fc1 produced
    fc1, fc2 = (mats[0], mats[1]) if _depends_on(mats[1]["vector"], mats[0]["out"]) else (mats[1], mats[0])
    if not _depends_on(fc2["vector"], fc1["out"]):
        raise _fail(topk, "the two expert projections are not applied one after the other")
    for mat in (fc1, fc2):
        mat["bias"] = _bias_add(mat, biases, topk)
    combine = _combine(fc2["result"], topk)
    return fc1, fc2, combine


def _expert_matmul(gather: Node, topk: Node) -> dict:
    """bmm(W[e], v[..., None])[..., 0] (rows = outputs) or bmm(v[:, None], W[e])[:, 0] (transposed)."""
    users = list(gather.users)
    if len(users) != 1 or not is_call(users[0], aten.bmm.default):
        raise _fail(gather, "selected expert weights are not used by one batched matmul")
    bmm = users[0]
    transposed = bmm.args[1] is gather
    other = bmm.args[0] if transposed else bmm.args[1]
    if not is_call(other, aten.unsqueeze.default):
        raise _fail(bmm, "expert matmul operand is not a token vector")
    squeeze = list(bmm.users)
    if len(squeeze) != 1 or not is_call(squeeze[0], aten.squeeze.dim):
        raise _fail(bmm, "expert matmul output is not squeezed back to one vector per token")
    return dict(gather=gather, weight=gather.args[0], transposed=transposed, vector=other.args[0], out=squeeze[0],
                result=squeeze[0])


def _bias_add(mat: dict, biases: list[Node], topk: Node) -> Node | None:
    out = mat["out"]
    adds = [u for u in out.users if is_call(u, aten.add.Tensor, aten.add_.Tensor)]
    for add in adds:
        other = add.args[1] if add.args[0] is out else add.args[0]
        if other in biases:
            mat["result"] = add
            return other.args[0]
    return None


def _combine(y: Node, topk: Node) -> dict:
    """sum(view(y * w[:, None], [T, k, H]), 1) -> the weights node and the output."""
    muls = [u for u in y.users if is_call(u, aten.mul.Tensor)]
    if len(muls) != 1 or len(y.users) != 1:
        raise _fail(y, "expert outputs are not scaled by their routing weights")
    mul = muls[0]
    w = mul.args[1] if mul.args[0] is y else mul.args[0]
    if is_call(w, aten.unsqueeze.default):
        w = w.args[0]
    view = next(iter(mul.users)) if len(mul.users) == 1 else None
    if not is_call(view, aten.view.default, aten.reshape.default, aten._unsafe_view.default) or len(fake(view).shape) != 3:
        raise _fail(mul, "weighted expert outputs are not grouped per token")
    out = next(iter(view.users)) if len(view.users) == 1 else None
    if not is_call(out, aten.sum.dim_IntList) or list(out.args[1]) not in ([1], [-2]) or (len(out.args) > 2 and out.args[2]):
        raise _fail(view, "weighted expert outputs are not summed per token")
    return dict(weights=w, out=out)


def _repeated_input(vector: Node, topk: Node) -> tuple[Node, int]:
    """(the tokens, k): the first projection reads each token once per chosen expert."""
    if (is_call(vector, aten.repeat_interleave.self_int) and isinstance(vector.args[1], int)
            and len(vector.args) > 2 and vector.args[2] in (0, -2)):
        return vector.args[0], int(vector.args[1])
    raise _fail(vector, "the first expert projection does not read each token once per chosen expert")


def _router_linear(node: Node, topk: Node) -> Node:
    """The nearest linear above what computes the expert ids: the router logits."""
    seen = 0
    while not is_call(node, aten.linear.default):
        inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if not inputs or seen > 16:
            raise _fail(topk, "no router projection found above the top-k")
        node, seen = inputs[0], seen + 1
    # a bias (GPT-OSS) stays in the graph's linear: the op and both lowerings take the logits,
    # TensorRT-LLM's own bias-free router weight is never used
    return node


def _depends_on(node: Node, target: Node, limit: int = 64) -> bool:
    """Whether `node` reads `target`, within `limit` nodes. Nodes before `target` in the graph
    cannot read it and are not walked (else a branch up into earlier layers, e.g. through the
    expert ids to the router, uses up the limit before the direct path is seen: GPT-OSS)."""
    return computed_from(node, target, limit)


# ---- regions identified by what they compute -----------------------------------------------------

def _random_attrs(ctx: PassContext, generator: torch.Generator):
    """Probe values for the (small) parameters a routing region reads: random, recorded."""
    values: dict[str, torch.Tensor] = {}

    def load(name: str) -> torch.Tensor:
        if name not in values:
            spec = ctx.weights.spec(name)
            values[name] = torch.randn(spec.shape, generator=generator).to(spec.dtype)
        return values[name]

    return load, values


def _identify_routing(ctx, topk, router: Node, flat_weights: Node, flat_ids: Node, num_experts: int, top_k: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    dtype = fake(router).dtype
    logits = torch.randn(_ROUTING_PROBE_TOKENS, num_experts, generator=generator).to(dtype)
    load, attrs = _random_attrs(ctx, generator)
    sides: dict[int, dict] = {}  # probe rows -> side-input values with that many tokens

    def run(probe: torch.Tensor) -> torch.Tensor:
        rows = int(probe.shape[0])
        if rows not in sides:
            sides[rows] = _side_inputs([flat_weights, flat_ids], router, generator, tokens=rows)
        try:
            weights, ids = evaluate([flat_weights, flat_ids], {router: probe, **sides[rows]}, load)
        except Exception as e:
            raise _fail(topk, f"the routing does not depend on the router logits alone ({type(e).__name__}: {e})") from None
        return _dense(weights.float().reshape(-1, top_k), ids.reshape(-1, top_k), num_experts), weights.dtype

    graph_dense, weights_dtype = run(logits)
    biases = [n for n in attrs]
    if len(biases) > 1 or any(math.prod(ctx.weights.spec(b).shape) != num_experts for b in biases):
        raise _fail(topk, f"the routing reads parameters {biases}; only one expert bias of {num_experts} values is known")
    bias_value = attrs[biases[0]].reshape(num_experts) if biases else None  # ERNIE-4.5 keeps it [1, E]
    # a router may round its weights to the model dtype (Qwen3-MoE: `.to(router_logits.dtype)`)
    rtol = max(1e-4, 4 * torch.finfo(weights_dtype).eps) if weights_dtype.is_floating_point else 1e-4
    for candidate in _router_candidates(router, flat_ids, num_experts, bias_value is not None):
        scale = _matches(graph_dense, logits, bias_value, top_k, candidate, rtol)
        if scale is not None:
            return _routing_result(ctx, candidate, scale, biases)
    if top_k == 2 and bias_value is None:  # PhiMoE's sparse mixer: its epsilon is measured, then checked
        epsilon = _sparse_mixer_epsilon(run, num_experts, dtype)
        if epsilon is not None:
            candidate = dict(_NO_EXTRAS, scoring="softmax", mode=moe_op.NORMALIZATION_SPARSE_MIXER,
                             sparse_mixer_epsilon=epsilon)
            scale = _matches(graph_dense, logits, None, top_k, candidate, rtol)
            if scale is not None:
                return _routing_result(ctx, candidate, scale, biases)
    raise _fail(topk, "the routing computes none of the known routers (softmax or sigmoid scores, top-k of the scores "
                "or of the logits, optionally group-limited, renormalised or not; PhiMoE's sparse mixer)")


_ROUTING_PROBE_TOKENS = 64  # enough rows that two different routers (e.g. group counts) disagree somewhere
_NO_EXTRAS = dict(selection="scores", n_group=1, topk_group=1, group_top=1, sparse_mixer_epsilon=0.0)


def _router_candidates(router: Node, flat_ids: Node, num_experts: int, has_bias: bool):
    """Every router the op defines that the region could compute. Group counts come from the
    region's [T, G, E/G] views (a hint; the probe decides); the rest is enumerated."""
    selections = ("scores", "logits") if has_bias else ("scores",)
    groups = [(1, 1, 1)]
    for n_group in sorted(_group_counts(router, flat_ids, num_experts)):
        size = num_experts // n_group
        groups += [(n_group, kept, top) for kept in range(1, n_group) for top in (1, 2) if top <= size]
    for n_group, topk_group, group_top in groups:
        for selection in selections:
            for scoring, mode in _ROUTERS:
                yield dict(_NO_EXTRAS, scoring=scoring, mode=mode, selection=selection, n_group=n_group,
                           topk_group=topk_group, group_top=group_top)


def _group_counts(router: Node, flat_ids: Node, num_experts: int) -> set[int]:
    counts, stack, seen = set(), [flat_ids], set()
    while stack:
        node = stack.pop()
        if node in seen or node is router:
            continue
        seen.add(node)
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and val.dim() == 3:
            g, size = val.shape[1], val.shape[2]
            if isinstance(g, int) and isinstance(size, int) and 1 < g < num_experts and g * size == num_experts:
                counts.add(g)
        if _depends_on(node, router, limit=256):
            stack.extend(node.all_input_nodes)
    return counts


def _matches(graph_dense, logits, bias_value, top_k: int, candidate: dict, rtol: float) -> float | None:
    """The routed scale with which `candidate` computes `graph_dense`, or None."""
    try:
        ref_w, ref_ids = moe_op.route(logits, bias_value, top_k, candidate["mode"], candidate["scoring"], 1.0,
                                      candidate["selection"], candidate["n_group"], candidate["topk_group"],
                                      candidate["group_top"], candidate["sparse_mixer_epsilon"])
    except (RuntimeError, ValueError):
        return None  # e.g. fewer eligible experts than k
    ref_dense = _dense(ref_w, ref_ids, graph_dense.shape[1])
    chosen = ref_dense != 0
    if not torch.equal(chosen, graph_dense != 0):
        return None
    scale = float((graph_dense[chosen] / ref_dense[chosen]).median())
    return scale if torch.allclose(graph_dense, ref_dense * scale, rtol=rtol, atol=1e-6) else None


def _routing_result(ctx, candidate: dict, scale: float, biases: list[str]) -> dict:
    bias_node = _attr_node(ctx, biases[0]) if biases else None
    return dict(candidate, scale=round(scale, 6) if abs(scale - round(scale, 6)) < 1e-6 else scale, expert_bias=bias_node)


def _sparse_mixer_epsilon(run, num_experts: int, dtype) -> float | None:
    """The epsilon a sparse mixer would have, measured: rows [1, 1 - d, -30, ...] keep expert 1
    in the first softmax exactly when d <= 2 * epsilon (then expert 0 weighs sigmoid(d) < 1).
    None when the region does not behave so (the candidate check then rejects it anyway)."""
    if num_experts < 3:
        return None

    def included(d: torch.Tensor) -> torch.Tensor:
        probe = torch.full((d.numel(), num_experts), -30.0)
        probe[:, 0], probe[:, 1] = 1.0, 1.0 - d
        dense, _ = run(probe.to(dtype))
        return dense[:, 0] < 1 - 1e-6

    low, high = 0.0, 1.9
    for _ in range(2):
        grid = torch.linspace(low, high, 2049)
        inside = included(grid)
        if not bool(inside[0]) or bool(inside[-1]) and high == 1.9:
            return None
        last = int(inside.nonzero().max())
        if last + 1 >= grid.numel():
            return None
        low, high = float(grid[last]), float(grid[last + 1])
    return _shortest(low / 2, high / 2)


def _shortest(low: float, high: float) -> float:
    """The number with the fewest significant digits in [low, high] (a config value, e.g. 0.01)."""
    for digits in range(1, 10):
        for value in (float(f"{(low + high) / 2:.{digits}g}"), float(f"{low:.{digits}g}"), float(f"{high:.{digits}g}")):
            if low <= value <= high:
                return value
    return (low + high) / 2


def _side_inputs(targets: list[Node], source: Node, generator: torch.Generator, tokens: int = _PROBE_TOKENS) -> dict:
    """Random probe values for what the region between `source` and `targets` reads besides
    `source` and parameters (e.g. `type_as(weights, hidden_states)` reads the hidden states
    for their dtype). Were the routing to depend on their values, it would match no router."""
    from_inputs = set()  # nodes computed from the model's inputs; the rest (parameters, constants
    for node in source.graph.nodes:  # and what is computed from them alone) is evaluated, not probed
        if node.op == "placeholder" or any(arg in from_inputs for arg in node.all_input_nodes):
            from_inputs.add(node)
    downstream, stack = set(), [source]  # everything computed from `source`: a forward walk, unbounded,
    while stack:  # since a bounded backward search can wander up through earlier layers and miss it
        node = stack.pop()
        if node not in downstream:
            downstream.add(node)
            stack.extend(node.users)
    region, stack = set(), list(targets)
    while stack:
        node = stack.pop()
        if node in region or node is source:
            continue
        if node in downstream:
            region.add(node)
            stack.extend(node.all_input_nodes)
    side = {}
    for node in region:
        for arg in node.all_input_nodes:
            if arg in region or arg is source or arg not in from_inputs or arg in side:
                continue
            val = arg.meta.get("val")
            if isinstance(val, torch.SymInt):
                side[arg] = tokens
            elif isinstance(val, torch.Tensor):
                shape = [d if isinstance(d, int) else tokens for d in val.shape]
                side[arg] = torch.randn(shape, generator=generator).to(val.dtype)
    return side


def _dense(weights: torch.Tensor, ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    dense = torch.zeros(weights.shape[0], num_experts)
    return dense.scatter(1, ids.long(), weights.float())


def _attr_node(ctx: PassContext, name: str) -> Node:
    return next(n for n in ctx.graph.nodes if n.op == "get_attr" and n.target == name)


def _no_parameters(name: str):
    raise KeyError(f"parameter {name}")


def _gated_layouts(inter: int) -> list[tuple[int, int, int]]:
    """Where a gated activation finds its halves in fc1's output: (gate start, linear start, step),
    the gate columns being gate_start + step * i and the linear ones linear_start + step * i.
    Concatenated halves, gate first or second (Mixtral, ...); interleaved columns, gate even or
    odd (GPT-OSS: `gate_up[..., ::2]`, `gate_up[..., 1::2]`)."""
    return [(0, inter, 1), (inter, 0, 1), (0, 1, 2), (1, 0, 2)]


def _columns(start: int, step: int, inter: int) -> torch.Tensor:
    return torch.arange(start, start + step * inter, step)


def _split(probe: torch.Tensor, layout: tuple[int, int, int], inter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(linear, gate) columns of a probe of fc1's output in `layout`."""
    gate_start, linear_start, step = layout
    return probe[:, _columns(linear_start, step, inter)], probe[:, _columns(gate_start, step, inter)]


def _join(linear: torch.Tensor, gate: torch.Tensor, layout: tuple[int, int, int]) -> torch.Tensor:
    """fc1's output with `linear` and `gate` placed in `layout` (the inverse of `_split`)."""
    gate_start, linear_start, step = layout
    inter = linear.shape[-1]
    out = torch.empty(*linear.shape[:-1], 2 * inter, dtype=linear.dtype)
    out[..., _columns(linear_start, step, inter)] = linear
    out[..., _columns(gate_start, step, inter)] = gate
    return out


def _identify_activation(ctx: PassContext, topk: Node, fc1: dict, fc2: dict) -> dict:
    """{name (TensorRT-LLM activation), layout (where a gated activation finds its halves in fc1's
    output, see `_gated_layouts`; None when not gated), alpha, beta, limit (of swiglu_clamped)}."""
    width = int(fake(fc1["result"]).shape[-1])
    inter = int(fake(fc2["vector"]).shape[-1])
    dtype = fake(fc1["result"]).dtype

    def run(probe: torch.Tensor) -> torch.Tensor:
        try:
            (h,) = evaluate([fc2["vector"]], {fc1["result"]: probe.to(dtype)}, _no_parameters)
        except Exception as e:
            raise _fail(topk, f"the expert activation reads more than the first projection ({type(e).__name__}: {e})") from None
        return h.float()

    probe = torch.randn(_PROBE_TOKENS, width, generator=torch.Generator().manual_seed(1)).to(dtype)
    h = run(probe)
    candidates = []
    layouts = _gated_layouts(inter) if width == 2 * inter else []
    for layout in layouts:
        linear, gate = _split(probe, layout, inter)
        for name, act in (("swiglu", "silu"), ("geglu", "gelu")):
            candidates.append((name, layout, linear * moe_op._ACTIVATIONS[act](gate)))
        candidates.append(("geglu_tanh", layout, linear * moe_op._ACTIVATIONS["gelu_tanh"](gate)))
    if width == inter:
        for name, f in moe_op._ACTIVATIONS.items():
            candidates.append((name, None, f(probe)))
    tol = dict(rtol=1e-3, atol=1e-3) if probe.dtype != torch.float32 else dict(rtol=1e-5, atol=1e-6)
    for name, layout, expected in candidates:
        if h.shape == expected.shape and torch.allclose(h, expected.float(), **tol):
            if name == "geglu_tanh":
                break  # TensorRT-LLM's geglu is not known to be the tanh approximation
            return dict(name=name, layout=layout, alpha=1.0, beta=0.0, limit=0.0)
    for layout in layouts:
        found = _clamped_swiglu(run, inter, layout, tol)
        if found is not None:
            return dict(name="swiglu_clamped", layout=layout, **found)
    raise _fail(topk, "the expert activation is none of silu/gelu/relu/identity, gated (halves concatenated or "
                "interleaved) or plain, nor a clamped SwiGLU")


def _clamped_swiglu(run, inter: int, layout: tuple[int, int, int], tol: dict) -> dict | None:
    """alpha, beta, limit of h = (clamp(l, -L, L) + beta) * g' * sigmoid(alpha * g'), g' = min(g, L),
    measured on probes (l = 0 and l = 1 give g' sigmoid(alpha g') and beta; a huge l gives L),
    then checked on random values that cross the limit. None when it is not that function."""
    g = torch.linspace(0.1, 1.0, inter).repeat(4, 1)
    h0, h1 = run(_join(torch.zeros_like(g), g, layout)), run(_join(torch.ones_like(g), g, layout))
    glu = h1 - h0
    ratio = glu / g
    if not bool(((ratio > 0) & (ratio < 1)).all()):
        return None
    alpha = float((torch.logit(ratio) / g).median())
    beta = float((h0 / glu).median())
    big = run(_join(torch.full_like(g, 1e4), g, layout))
    limit = float((big / glu - beta).median())
    limit = 0.0 if limit > 1e3 else limit
    alpha, beta, limit = (_shortest(v - 1e-5 * abs(v) - 1e-7, v + 1e-5 * abs(v) + 1e-7) for v in (alpha, beta, limit))
    scale = 2 * limit if limit > 0 else 4.0
    probe = torch.randn(_PROBE_TOKENS, 2 * inter, generator=torch.Generator().manual_seed(2)) * scale
    linear, gate = _split(probe, layout, inter)
    expected = moe_op.apply_activation(torch.cat((linear, gate), dim=-1), ("swiglu_clamped", alpha, beta, limit))
    got = run(probe)
    if got.shape != expected.shape or not torch.allclose(got, expected, **tol):
        return None
    return dict(alpha=alpha, beta=beta, limit=limit)


# ---- weights in TensorRT-LLM's layout ----------------------------------------------------------

def _to_op_layout(source, dim: int, rows: int, layout: tuple[int, int, int] | None):
    """`source` with fc1's `rows` outputs (along `dim`) reordered from `layout` into the op's
    [linear | gate] halves; `source` itself when already so (or not gated)."""
    if layout is None:
        return source
    gate_start, linear_start, step = layout
    inter = rows // 2
    if (gate_start, linear_start, step) == (inter, 0, 1):
        return source
    return Concat((Narrow(source, dim, linear_start, inter, step), Narrow(source, dim, gate_start, inter, step)), dim=dim)


def _expert_weight(ctx: PassContext, mat: dict, layout: tuple[int, int, int] | None, suffix: str) -> Node:
    """[E, out, in] (TensorRT-LLM `fc`/`proj` rows = outputs), gated halves as [linear; gate]."""
    name = mat["weight"].target
    spec = ctx.weights.spec(name)
    source, shape = spec.source, tuple(spec.shape)
    if mat["transposed"]:
        source, shape = Transposed(source, 1, 2), (shape[0], shape[2], shape[1])
    source = _to_op_layout(source, 1, shape[1], layout)
    if source is spec.source:
        return mat["weight"]
    return ctx.add_weight(f"{name}_{suffix}", WeightSpec(shape, spec.dtype, source))


def _expert_bias_attr(ctx: PassContext, mat: dict, layout: tuple[int, int, int] | None) -> Node | None:
    if mat["bias"] is None:
        return None
    name = mat["bias"].target
    spec = ctx.weights.spec(name)
    source = _to_op_layout(spec.source, 1, spec.shape[1], layout)
    if source is spec.source:
        return mat["bias"]
    return ctx.add_weight(f"{name}_fc1", WeightSpec(tuple(spec.shape), spec.dtype, source))
