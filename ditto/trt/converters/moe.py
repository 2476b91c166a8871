"""`ditto.moe` with TensorRT's own layers (no TensorRT-LLM plugin): what builds with TensorRT-RTX.

Routing as the op defines it (`ditto/ops/moe.py`), in float32 (`routing()`, shared with the
TensorRT-LLM plugin lowering, which routes in TensorRT layers as TensorRT-LLM 1.x does):
softmax or sigmoid scores, TopK on the scores or logits (+ expert bias), optionally limited
to the best groups (a TopK per group, summed, a TopK over groups, -inf elsewhere), the
weights gathered from the unbiased scores, optional renormalisation and scale; or PhiMoE's
sparse mixer (two rounds of max, threshold mask, softmax, gather). The chosen (token, expert) weights become a dense [T, E] matrix
(one-hot of the ids times the weights, summed over k), and every expert runs on every token
as two batched matmuls over the expert axis; the output is the weight-matrix-weighted sum
over experts in float32. Dense costs num_experts / top_k times the expert FLOPs of a sparse
kernel but needs no data-dependent shapes; TensorRT-LLM's MoE plugin is the sparse path.
"""

from __future__ import annotations

import torch

from ditto.errors import DittoError
from ditto.ops import moe as moe_op
from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import activation as trt_activation
from ditto.trt.converters.elementwise import binary, unary
from ditto.trt.converters.matmul import matmul
from ditto.trt.converters.reduce import reduce

F32 = torch.float32


def _supported(node) -> str | None:
    activation = node.args[11] if len(node.args) > 11 else node.kwargs.get("activation")
    return None if activation in moe_op.ACTIVATIONS else f"activation {activation!r}"


@converter(torch.ops.ditto.moe.default, supports=_supported)
def moe(ctx, x, logits, fc1, fc2, fc1_bias, fc2_bias, expert_bias, num_experts, top_k, normalization_mode, scoring,
        activation, routed_scaling, selection="scores", n_group=1, topk_group=1, group_top=1, sparse_mixer_epsilon=0.0,
        activation_alpha=1.0, activation_beta=0.0, activation_limit=0.0):
    dtype = ctx.torch_dtype(x.dtype)
    weights, ids = routing(ctx, logits, expert_bias, num_experts, top_k, normalization_mode, scoring, routed_scaling,
                           selection, n_group, topk_group, group_top, sparse_mixer_epsilon)
    dense = _dense(ctx, weights, ids, num_experts, top_k)
    tokens = ctx.reshape(x, [1, ctx.dim(x, 0), ctx.dim(x, 1)])
    h = matmul(ctx, tokens, fc1, transpose_b=True)  # [E, T, fc1_out]
    if fc1_bias is not None:
        h = binary(ctx, h, ctx.reshape(fc1_bias, [num_experts, 1, fc1_bias.shape[1]]), "SUM", dtype)
    h = _activation(ctx, h, activation, dtype, (activation_alpha, activation_beta, activation_limit))
    y = matmul(ctx, h, fc2, transpose_b=True)  # [E, T, hidden]
    if fc2_bias is not None:
        y = binary(ctx, y, ctx.reshape(fc2_bias, [num_experts, 1, fc2_bias.shape[1]]), "SUM", dtype)
    per_expert = ctx.reshape(ctx.transpose(dense, [1, 0]), [num_experts, ctx.dim(dense, 0), 1])
    weighted = binary(ctx, ctx.cast(y, F32), per_expert, "PROD", F32)
    return ctx.cast(reduce(ctx, weighted, "SUM", [0], False, "experts"), dtype)


def routing(ctx, logits, expert_bias, num_experts, top_k, normalization_mode, scoring, routed_scaling,
            selection="scores", n_group=1, topk_group=1, group_top=1, sparse_mixer_epsilon=0.0):
    """(weights [T, k] float32, expert ids [T, k] int32) as the op routes (ditto/ops/moe.py);
    what TensorRT-LLM 1.x computes in TensorRT layers before its MoE plugin, too."""
    logits = ctx.cast(logits, F32)
    if normalization_mode == moe_op.NORMALIZATION_SPARSE_MIXER:
        weights, ids = _sparse_mixer(ctx, logits, num_experts, top_k, sparse_mixer_epsilon)
    else:
        if scoring == "softmax":
            layer = ctx.network.add_softmax(logits)
            layer.axes = 1 << 1
            scores = ctx.out(layer, "scores")
        else:
            scores = trt_activation(ctx, logits, "SIGMOID")
        choice = logits if selection == "logits" else scores
        if expert_bias is not None:
            choice = binary(ctx, choice, ctx.reshape(ctx.cast(expert_bias, F32), [1, num_experts]), "SUM", F32)
        if n_group > 1:
            choice = _group_limited(ctx, choice, num_experts, n_group, topk_group, group_top)
        layer = ctx.network.add_topk(choice, ctx.trt.TopKOperation.MAX, top_k, 1 << 1)
        ctx.name(layer, "topk")
        weights, ids = layer.get_output(0), layer.get_output(1)
        if expert_bias is not None or n_group > 1 or selection == "logits":
            gather = ctx.network.add_gather(scores, ids, 1)
            gather.mode = ctx.trt.GatherMode.ELEMENT
            weights = ctx.out(gather, "weights")
        if normalization_mode == moe_op.NORMALIZATION_RENORMALIZE:
            weights = binary(ctx, weights, reduce(ctx, weights, "SUM", [1], True, "weight_sum"), "DIV", F32)
    if routed_scaling != 1.0:
        weights = binary(ctx, weights, float(routed_scaling), "PROD", F32)
    return weights, ids


def _dense(ctx, weights, ids, num_experts, top_k):
    """[T, E] float32: each token's weight for each expert (0 where not chosen)."""
    tokens = ctx.dim(ids, 0)
    chosen = _one_hot(ctx, ctx.reshape(ids, [tokens, top_k, 1]), num_experts, "experts")  # [T, k, E]
    spread = binary(ctx, chosen, ctx.reshape(weights, [tokens, top_k, 1]), "PROD", F32)
    return reduce(ctx, spread, "SUM", [1], False, "routing")


def _one_hot(ctx, ids, count: int, name: str):
    """float32 one-hot of int32 `ids` [..., 1] over `count` classes on the last axis."""
    classes = ctx.constant(torch.arange(count, dtype=torch.int32).reshape([1] * (len(ids.shape) - 1) + [count]), name)
    return ctx.cast(ctx.elementwise(ids, classes, ctx.trt.ElementWiseOperation.EQUAL), F32)


def _minus_inf_where(ctx, condition, x):
    """x with -inf where the bool `condition` holds (same shapes)."""
    minus_inf = ctx.constant(torch.full([1] * len(x.shape), float("-inf")), "minus_inf")
    return ctx.out(ctx.network.add_select(condition, minus_inf, x), "masked")


def _group_limited(ctx, choice, num_experts, n_group, topk_group, group_top):
    """`choice` [T, E] with -inf outside the `topk_group` groups whose `group_top` largest values sum highest."""
    size = num_experts // n_group
    tokens = ctx.dim(choice, 0)
    grouped = ctx.reshape(choice, [tokens, n_group, size])
    layer = ctx.network.add_topk(grouped, ctx.trt.TopKOperation.MAX, group_top, 1 << 2)
    ctx.name(layer, "group_top")
    group_scores = reduce(ctx, layer.get_output(0), "SUM", [2], False, "group_scores")  # [T, G]
    layer = ctx.network.add_topk(group_scores, ctx.trt.TopKOperation.MAX, topk_group, 1 << 1)
    ctx.name(layer, "groups")
    kept = _one_hot(ctx, ctx.reshape(layer.get_output(1), [tokens, topk_group, 1]), n_group, "group_ids")
    kept = reduce(ctx, kept, "SUM", [1], False, "group_mask")  # [T, G], 1 for kept groups
    dropped = ctx.elementwise(ctx.reshape(kept, [tokens, n_group, 1]), ctx.constant(torch.zeros(1, 1, 1), "zero"),
                              ctx.trt.ElementWiseOperation.EQUAL)  # [T, G, 1]
    dropped = ctx.reshape(_expand_last(ctx, dropped, tokens, n_group, size), [tokens, num_experts])
    return _minus_inf_where(ctx, dropped, choice)


def _expand_last(ctx, x, tokens, n_group, size):
    """bool [T, G, 1] -> [T, G, size] (an OR with a false constant broadcasts it)."""
    false = ctx.constant(torch.zeros(1, 1, size, dtype=torch.bool), "false")
    return ctx.elementwise(x, false, ctx.trt.ElementWiseOperation.OR)


def _sparse_mixer(ctx, logits, num_experts, top_k, epsilon):
    """PhiMoE's sparse mixer (op docstring): two rounds of threshold mask, softmax, arg-max."""
    if top_k != 2:
        raise DittoError(f"the sparse mixer picks 2 experts, not {top_k}")
    magnitude = unary(ctx, logits, "ABS")
    remaining, weights, ids = logits, [], []
    for round_ in range(top_k):
        layer = ctx.network.add_topk(remaining, ctx.trt.TopKOperation.MAX, 1, 1 << 1)
        ctx.name(layer, f"mixer_max{round_}")
        top, chosen = layer.get_output(0), layer.get_output(1)  # [T, 1]
        factor = binary(ctx, magnitude, top, "MAX", F32)
        ratio = binary(ctx, binary(ctx, top, logits, "SUB", F32), factor, "DIV", F32)
        masked = binary(ctx, ratio, 2 * float(epsilon), "GREATER", F32)
        layer = ctx.network.add_softmax(_minus_inf_where(ctx, masked, remaining))
        layer.axes = 1 << 1
        gather = ctx.network.add_gather(ctx.out(layer, f"mixer_gates{round_}"), chosen, 1)
        gather.mode = ctx.trt.GatherMode.ELEMENT
        weights.append(ctx.out(gather, f"mixer_weight{round_}"))
        ids.append(chosen)
        if round_ + 1 < top_k:
            hit = ctx.elementwise(chosen, ctx.constant(torch.arange(num_experts, dtype=torch.int32).reshape(1, num_experts),
                                                       "experts"), ctx.trt.ElementWiseOperation.EQUAL)
            remaining = _minus_inf_where(ctx, hit, remaining)
    return _concat(ctx, weights), _concat(ctx, ids)


def _concat(ctx, tensors):
    layer = ctx.network.add_concatenation(tensors)
    layer.axis = 1
    return ctx.out(layer, "concat")


def _activation(ctx, h, activation: str, dtype, params=(1.0, 0.0, 0.0)):
    if activation == "swiglu_clamped":
        alpha, beta, limit = params
        inter = h.shape[-1] // 2
        linear, gate = ctx.columns(h, 0, inter), ctx.columns(h, inter, 2 * inter)
        if limit > 0:
            linear = binary(ctx, binary(ctx, linear, -float(limit), "MAX", dtype), float(limit), "MIN", dtype)
            gate = binary(ctx, gate, float(limit), "MIN", dtype)
        glu = binary(ctx, gate, trt_activation(ctx, binary(ctx, gate, float(alpha), "PROD", dtype), "SIGMOID"), "PROD", dtype)
        return binary(ctx, binary(ctx, linear, float(beta), "SUM", dtype), glu, "PROD", dtype)
    if activation in moe_op.GATED:
        inter = h.shape[-1] // 2
        linear, gate = ctx.columns(h, 0, inter), ctx.columns(h, inter, 2 * inter)
        return binary(ctx, linear, _plain(ctx, gate, moe_op.GATED[activation]), "PROD", dtype)
    return _plain(ctx, h, activation)


def _plain(ctx, h, activation: str):
    if activation == "identity":
        return h
    if activation == "silu":
        return binary(ctx, h, trt_activation(ctx, h, "SIGMOID"), "PROD")
    return trt_activation(ctx, h, {"gelu": "GELU_ERF", "gelu_tanh": "GELU_TANH", "relu": "RELU"}[activation])


# ---- TensorRT-LLM's MixtureOfExperts plugin ------------------------------------------------------

MOE_LOWERINGS = ("native", "plugin")


def resolve_moe(trt) -> tuple[str, str]:
    """(lowering, why): `plugin` when TensorRT-LLM's MixtureOfExperts plugin can be created
    (TensorRT with tensorrt_llm importable and the creator registered), else `native`."""
    import importlib.util

    from ditto.trtllm.moe import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    if not hasattr(trt.INetworkDefinition, "add_plugin_v2"):
        return "native", f"{trt.__name__} has no IPluginV2 layers"
    if importlib.util.find_spec("tensorrt_llm") is None:
        return "native", "tensorrt_llm is not importable"
    import tensorrt_llm  # noqa: F401  (loads TensorRT-LLM's plugin library into the registry)

    if trt.get_plugin_registry().get_plugin_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        return "native", "TensorRT-LLM's plugin library did not register MixtureOfExperts"
    return "plugin", "TensorRT-LLM's MixtureOfExperts plugin is registered"


def moe_arguments(node) -> dict:
    """The moe node's arguments by name (defaults filled in)."""
    bound = moe_op._SIGNATURE.bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def plugin_lowering(ctx, node):
    """`ditto.moe` as routing in TensorRT layers (`routing()`) + TensorRT-LLM's MixtureOfExperts
    plugin for the experts, as TensorRT-LLM 1.x's MixtureOfExperts layer builds it. A layer the
    plugin cannot compute (`plugin_unsupported`) keeps the native lowering."""
    from ditto.trt.converters import convert_node
    from ditto.trtllm.moe import create_moe_plugin, moe_plugin_fields, plugin_inputs, plugin_unsupported

    a = moe_arguments(node)
    layer = dict(activation=a["activation"], has_bias=a["fc1_bias"] is not None, has_fc2_bias=a["fc2_bias"] is not None)
    if plugin_unsupported(layer) is not None:
        return convert_node(ctx, node)
    value = lambda v: ctx.values[v] if v is not None else None  # noqa: E731
    x = value(a["hidden_states"])
    weights, ids = routing(ctx, value(a["router_logits"]), value(a["expert_bias"]), a["num_experts"], a["top_k"],
                           a["normalization_mode"], a["scoring"], a["routed_scaling"], a["selection"], a["n_group"],
                           a["topk_group"], a["group_top"], a["sparse_mixer_epsilon"])
    fc2 = value(a["fc2_weight"])
    dtype = str(ctx.torch_dtype(x.dtype)).removeprefix("torch.")
    fields = moe_plugin_fields(a["num_experts"], a["top_k"], int(x.shape[-1]), int(fc2.shape[-1]), a["activation"], dtype,
                               a["fc1_bias"] is not None)
    inputs = plugin_inputs(x, value(a["fc1_weight"]), fc2, ids, weights, value(a["fc1_bias"]), value(a["fc2_bias"]))
    return ctx.out(ctx.network.add_plugin_v2(inputs, create_moe_plugin(ctx.trt, fields)), "moe_plugin")
