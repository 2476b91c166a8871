"""`ditto.moe` with TensorRT's own layers (no TensorRT-LLM plugin): what builds with TensorRT-RTX.

Routing as the op defines it (`ditto/ops/moe.py`), in float32: softmax or sigmoid scores,
TopK on the scores (+ expert bias), the weights gathered from the unbiased scores, optional
renormalisation and scale. The chosen (token, expert) weights become a dense [T, E] matrix
(one-hot of the ids times the weights, summed over k), and every expert runs on every token
as two batched matmuls over the expert axis; the output is the weight-matrix-weighted sum
over experts in float32. Dense costs num_experts / top_k times the expert FLOPs of a sparse
kernel but needs no data-dependent shapes; TensorRT-LLM's MoE plugin is the sparse path.
"""

from __future__ import annotations

import torch

from ditto.ops import moe as moe_op
from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import activation as trt_activation
from ditto.trt.converters.elementwise import binary
from ditto.trt.converters.matmul import matmul
from ditto.trt.converters.reduce import reduce

F32 = torch.float32


def _supported(node) -> str | None:
    activation = node.args[11] if len(node.args) > 11 else node.kwargs.get("activation")
    return None if activation in moe_op.ACTIVATIONS else f"activation {activation!r}"


@converter(torch.ops.ditto.moe.default, supports=_supported)
def moe(ctx, x, logits, fc1, fc2, fc1_bias, fc2_bias, expert_bias, num_experts, top_k, normalization_mode, scoring,
        activation, routed_scaling):
    dtype = ctx.torch_dtype(x.dtype)
    dense = _routing_matrix(ctx, logits, expert_bias, num_experts, top_k, normalization_mode, scoring, routed_scaling)
    tokens = ctx.reshape(x, [1, ctx.dim(x, 0), ctx.dim(x, 1)])
    h = matmul(ctx, tokens, fc1, transpose_b=True)  # [E, T, fc1_out]
    if fc1_bias is not None:
        h = binary(ctx, h, ctx.reshape(fc1_bias, [num_experts, 1, fc1_bias.shape[1]]), "SUM", dtype)
    h = _activation(ctx, h, activation, dtype)
    y = matmul(ctx, h, fc2, transpose_b=True)  # [E, T, hidden]
    if fc2_bias is not None:
        y = binary(ctx, y, ctx.reshape(fc2_bias, [num_experts, 1, fc2_bias.shape[1]]), "SUM", dtype)
    per_expert = ctx.reshape(ctx.transpose(dense, [1, 0]), [num_experts, ctx.dim(dense, 0), 1])
    weighted = binary(ctx, ctx.cast(y, F32), per_expert, "PROD", F32)
    return ctx.cast(reduce(ctx, weighted, "SUM", [0], False, "experts"), dtype)


def _routing_matrix(ctx, logits, expert_bias, num_experts, top_k, normalization_mode, scoring, routed_scaling):
    """[T, E] float32: each token's weight for each expert (0 where not chosen)."""
    logits = ctx.cast(logits, F32)
    if scoring == "softmax":
        layer = ctx.network.add_softmax(logits)
        layer.axes = 1 << 1
        scores = ctx.out(layer, "scores")
    else:
        scores = trt_activation(ctx, logits, "SIGMOID")
    choice = scores
    if expert_bias is not None:
        choice = binary(ctx, scores, ctx.reshape(ctx.cast(expert_bias, F32), [1, num_experts]), "SUM", F32)
    layer = ctx.network.add_topk(choice, ctx.trt.TopKOperation.MAX, top_k, 1 << 1)
    ctx.name(layer, "topk")
    weights, ids = layer.get_output(0), layer.get_output(1)
    if expert_bias is not None:
        gather = ctx.network.add_gather(scores, ids, 1)
        gather.mode = ctx.trt.GatherMode.ELEMENT
        weights = ctx.out(gather, "weights")
    if normalization_mode == moe_op.NORMALIZATION_RENORMALIZE:
        weights = binary(ctx, weights, reduce(ctx, weights, "SUM", [1], True, "weight_sum"), "DIV", F32)
    if routed_scaling != 1.0:
        weights = binary(ctx, weights, float(routed_scaling), "PROD", F32)
    tokens = ctx.dim(ids, 0)
    ids = ctx.reshape(ids, [tokens, top_k, 1])
    experts = ctx.constant(torch.arange(num_experts, dtype=torch.int32).reshape(1, 1, num_experts), "experts")
    chosen = ctx.cast(ctx.elementwise(ids, experts, ctx.trt.ElementWiseOperation.EQUAL), F32)  # [T, k, E]
    spread = binary(ctx, chosen, ctx.reshape(weights, [tokens, top_k, 1]), "PROD", F32)
    return reduce(ctx, spread, "SUM", [1], False, "routing")


def _activation(ctx, h, activation: str, dtype):
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
