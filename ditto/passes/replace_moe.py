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

The data flow between expert weights, token ids and the combine is matched structurally;
the two regions whose spelling varies between models are identified by what they compute,
on probe values: the routing region (logits -> flat weights and ids) against every router
TensorRT-LLM's MoE and common extensions define (softmax or sigmoid scores, renormalised or
not, a scale, an expert bias for selection), and the activation region against gated and
plain activations. A top-k whose consumers are expert weights but that matches nothing is a
DittoError naming it and its model source line, never a guess.
"""

from __future__ import annotations

import math
import operator

import torch
from torch.fx import Node

from ditto.errors import DittoError
from ditto.graph.evaluate import evaluate
from ditto.graph.insert import insert_op
from ditto.graph.nodes import fake, is_call, source_line
from ditto.models.weights import Concat, Narrow, Transposed, WeightSpec
from ditto.ops import moe as moe_op
from ditto.passes.manager import PassContext, register_pass

aten = torch.ops.aten
_PASS_THROUGH = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.to.dtype, aten._to_copy.default)
_PROBE_TOKENS = 7
_ROUTERS = [(s, m) for s in ("softmax", "sigmoid") for m in (moe_op.NORMALIZATION_RENORMALIZE, moe_op.NORMALIZATION_NONE)]


@register_pass("replace_moe")
def replace_moe(ctx: PassContext) -> int:
    count = 0
    for topk in [n for n in ctx.graph.nodes if is_call(n, aten.topk.default)]:
        ids = _output(topk, 1)
        gathers = _expert_gathers(ids) if ids is not None else []
        if not gathers:
            continue  # not the top-k that picks experts (e.g. the group top-k of a grouped router)
        _replace(ctx, topk, ids, gathers)
        _erase_dead_region(ctx.graph, topk)
        count += 1
    return count


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


def _output(node: Node, index: int) -> Node | None:
    return next((u for u in node.users if u.target is operator.getitem and u.args[1] == index), None)


def _through(node: Node, targets=_PASS_THROUGH) -> list[Node]:
    """`node` and every node reached from it through shape/dtype-only ops."""
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(u for u in current.users if is_call(u, *targets))
    return found


def _expert_gathers(ids: Node) -> list[Node]:
    """index(W, [ids']) nodes selecting rows of a parameter by the chosen expert ids."""
    out = []
    for flat in _through(ids):
        for user in flat.users:
            if is_call(user, aten.index.Tensor) and user.args[1] == [flat] and user.args[0].op == "get_attr":
                out.append(user)
    return out


def _fail(node: Node, problem: str) -> DittoError:
    return DittoError(
        f"mixture-of-experts at {node.name} ({source_line(node)}): {problem}; ditto converts top-k routed experts "
        "computed with transformers' batched experts (softmax or sigmoid router, optional renormalisation, scale "
        "and expert bias; gated or plain activation)"
    )


def _replace(ctx: PassContext, topk: Node, ids: Node, gathers: list[Node]) -> None:
    top_k = int(topk.args[1])
    scores_in = topk.args[0]
    num_experts = int(fake(scores_in).shape[-1])
    if (len(topk.args) > 2 and topk.args[2] not in (-1, len(fake(scores_in).shape) - 1)) or (
        len(topk.args) > 3 and topk.args[3] is False
    ):
        raise _fail(topk, "top-k is not the largest over the expert axis")
    fc1, fc2, combine = _experts(ctx, topk, gathers, num_experts)
    x = _repeated_input(fc1["vector"], top_k, topk)
    router = _router_linear(scores_in, topk)
    flat_ids = fc1["gather"].args[1][0]
    flat_weights = combine["weights"]
    routing = _identify_routing(ctx, topk, router, flat_weights, flat_ids, num_experts, top_k)
    activation, gate_first = _identify_activation(ctx, topk, fc1, fc2)

    graph = ctx.graph
    out = combine["out"]
    with graph.inserting_before(out):
        fc1_w = _expert_weight(ctx, fc1, swap_halves=gate_first and activation in moe_op.GATED, suffix="fc1")
        fc2_w = _expert_weight(ctx, fc2, swap_halves=False, suffix="fc2")
        b1 = _expert_bias_attr(ctx, fc1, swap_halves=gate_first and activation in moe_op.GATED)
        b2 = _expert_bias_attr(ctx, fc2, swap_halves=False)
        if routing["expert_bias"] is not None and tuple(fake(routing["expert_bias"]).shape) != (num_experts,):
            routing["expert_bias"] = insert_op(graph, aten.view.default, (routing["expert_bias"], [num_experts]))
        args = (x, router, fc1_w, fc2_w, b1, b2, routing["expert_bias"], num_experts, top_k, routing["mode"],
                routing["scoring"], activation, routing["scale"])
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
             activation=activation, routed_scaling=routing["scale"], has_expert_bias=routing["expert_bias"] is not None,
             has_bias=b1 is not None, inter_size=int(fake(fc2_w).shape[-1]), router=router.name, node=node.name)
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


def _repeated_input(vector: Node, top_k: int, topk: Node) -> Node:
    if is_call(vector, aten.repeat_interleave.self_int) and vector.args[1] == top_k and vector.args[2] in (0, -2):
        return vector.args[0]
    raise _fail(vector, "the first expert projection does not read each token once per chosen expert")


def _router_linear(node: Node, topk: Node) -> Node:
    """The nearest linear above the top-k's input: the router logits."""
    seen = 0
    while not is_call(node, aten.linear.default):
        inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if not inputs or seen > 16:
            raise _fail(topk, "no router projection found above the top-k")
        node, seen = inputs[0], seen + 1
    if len(node.args) > 2 and node.args[2] is not None:
        raise _fail(node, "the router projection has a bias, which TensorRT-LLM's MoE router has not")
    return node


def _depends_on(node: Node, target: Node, limit: int = 64) -> bool:
    stack, seen = [node], set()
    while stack and len(seen) < limit:
        current = stack.pop()
        if current is target:
            return True
        if current in seen:
            continue
        seen.add(current)
        stack.extend(current.all_input_nodes)
    return False


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
    logits = torch.randn(_PROBE_TOKENS, num_experts, generator=generator).to(fake(router).dtype)
    load, attrs = _random_attrs(ctx, generator)
    known = {router: logits, **_side_inputs([flat_weights, flat_ids], router, generator)}
    try:
        weights, ids = evaluate([flat_weights, flat_ids], known, load)
    except Exception as e:
        raise _fail(topk, f"the routing does not depend on the router logits alone ({type(e).__name__}: {e})") from None
    biases = [n for n in attrs]
    if len(biases) > 1 or any(math.prod(ctx.weights.spec(b).shape) != num_experts for b in biases):
        raise _fail(topk, f"the routing reads parameters {biases}; only one expert bias of {num_experts} values is known")
    bias_value = attrs[biases[0]].reshape(num_experts) if biases else None  # ERNIE-4.5 keeps it [1, E]
    graph_dense = _dense(weights.float().reshape(-1, top_k), ids.reshape(-1, top_k), num_experts)
    # a router may round its weights to the model dtype (Qwen3-MoE: `.to(router_logits.dtype)`)
    rtol = max(1e-4, 4 * torch.finfo(weights.dtype).eps) if weights.is_floating_point() else 1e-4
    for scoring, mode in _ROUTERS:
        ref_w, ref_ids = moe_op.route(logits, bias_value, top_k, mode, scoring, 1.0)
        ref_dense = _dense(ref_w, ref_ids, num_experts)
        chosen = ref_dense != 0
        if not torch.equal(chosen, graph_dense != 0):
            continue
        scale = float((graph_dense[chosen] / ref_dense[chosen]).median())
        if torch.allclose(graph_dense, ref_dense * scale, rtol=rtol, atol=1e-6):
            bias_node = _attr_node(ctx, biases[0]) if biases else None
            return dict(scoring=scoring, mode=mode, scale=round(scale, 6) if abs(scale - round(scale, 6)) < 1e-6 else scale,
                        expert_bias=bias_node)
    raise _fail(topk, "the routing computes none of the known routers (grouped top-k is not supported)")


def _side_inputs(targets: list[Node], source: Node, generator: torch.Generator) -> dict:
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
                side[arg] = _PROBE_TOKENS
            elif isinstance(val, torch.Tensor):
                shape = [d if isinstance(d, int) else _PROBE_TOKENS for d in val.shape]
                side[arg] = torch.randn(shape, generator=generator).to(val.dtype)
    return side


def _dense(weights: torch.Tensor, ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    dense = torch.zeros(weights.shape[0], num_experts)
    return dense.scatter(1, ids.long(), weights.float())


def _attr_node(ctx: PassContext, name: str) -> Node:
    return next(n for n in ctx.graph.nodes if n.op == "get_attr" and n.target == name)


def _no_parameters(name: str):
    raise KeyError(f"parameter {name}")


def _identify_activation(ctx: PassContext, topk: Node, fc1: dict, fc2: dict) -> tuple[str, bool]:
    """(TensorRT-LLM activation name, whether the gate is the FIRST half of fc1's output)."""
    width = int(fake(fc1["result"]).shape[-1])
    inter = int(fake(fc2["vector"]).shape[-1])
    probe = torch.randn(_PROBE_TOKENS, width, generator=torch.Generator().manual_seed(1)).to(fake(fc1["result"]).dtype)
    try:
        (h,) = evaluate([fc2["vector"]], {fc1["result"]: probe}, _no_parameters)
    except Exception as e:
        raise _fail(topk, f"the expert activation reads more than the first projection ({type(e).__name__}: {e})") from None
    candidates = []
    if width == 2 * inter:
        first, second = probe.chunk(2, dim=-1)
        for name, act in (("swiglu", "silu"), ("geglu", "gelu")):
            f = moe_op._ACTIVATIONS[act]
            candidates.append((name, True, f(first) * second))
            candidates.append((name, False, first * f(second)))
        candidates.append(("geglu_tanh", True, moe_op._ACTIVATIONS["gelu_tanh"](first) * second))
    if width == inter:
        for name, f in moe_op._ACTIVATIONS.items():
            candidates.append((name, False, f(probe)))
    tol = dict(rtol=1e-3, atol=1e-3) if probe.dtype != torch.float32 else dict(rtol=1e-5, atol=1e-6)
    for name, gate_first, expected in candidates:
        if h.shape == expected.shape and torch.allclose(h.float(), expected.float(), **tol):
            if name == "geglu_tanh":
                break  # TensorRT-LLM's geglu is not known to be the tanh approximation
            return name, gate_first
    raise _fail(topk, "the expert activation is none of silu/gelu/relu/identity, gated or plain")


# ---- weights in TensorRT-LLM's layout ----------------------------------------------------------

def _expert_weight(ctx: PassContext, mat: dict, swap_halves: bool, suffix: str) -> Node:
    """[E, out, in] (TensorRT-LLM `fc`/`proj` rows = outputs), gated halves as [linear; gate]."""
    name = mat["weight"].target
    spec = ctx.weights.spec(name)
    source, shape = spec.source, tuple(spec.shape)
    if mat["transposed"]:
        source, shape = Transposed(source, 1, 2), (shape[0], shape[2], shape[1])
    if swap_halves:
        half = shape[1] // 2
        source = Concat((Narrow(source, 1, half, half), Narrow(source, 1, 0, half)), dim=1)
    if source is spec.source:
        return mat["weight"]
    return ctx.add_weight(f"{name}_{suffix}", WeightSpec(shape, spec.dtype, source))


def _expert_bias_attr(ctx: PassContext, mat: dict, swap_halves: bool) -> Node | None:
    if mat["bias"] is None:
        return None
    name = mat["bias"].target
    spec = ctx.weights.spec(name)
    if not swap_halves:
        return mat["bias"]
    half = spec.shape[1] // 2
    source = Concat((Narrow(spec.source, 1, half, half), Narrow(spec.source, 1, 0, half)), dim=1)
    return ctx.add_weight(f"{name}_fc1", WeightSpec(tuple(spec.shape), spec.dtype, source))

