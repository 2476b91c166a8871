"""Reductions and normalisations: mean, sum, amax/amin, top-k, softmax, layer_norm, rms_norm.

Normalisations of half-precision inputs compute in float32 and round once at the end, as
torch's CPU and CUDA kernels do.
"""

from __future__ import annotations

import torch

from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import binary, in_result_dtype, result_dtype, unary

aten = torch.ops.aten


def axes_mask(x, dims) -> int:
    rank = len(x.shape)
    dims = range(rank) if dims is None or (not isinstance(dims, int) and len(dims) == 0) else dims
    dims = [dims] if isinstance(dims, int) else dims
    mask = 0
    for d in dims:
        mask |= 1 << (d % rank)
    return mask


def reduce(ctx, x, op: str, dims, keepdim: bool, name: str):
    layer = ctx.network.add_reduce(x, getattr(ctx.trt.ReduceOperation, op), axes_mask(x, dims), bool(keepdim))
    return ctx.out(layer, name)


@converter(aten.mean.dim)
def mean(ctx, x, dims, keepdim=False, dtype=None):
    return reduce(ctx, in_result_dtype(ctx, x), "AVG", dims, keepdim, "mean")


@converter(aten.mean.default)
def mean_all(ctx, x, dtype=None):
    return reduce(ctx, in_result_dtype(ctx, x), "AVG", None, False, "mean")


@converter(aten.sum.dim_IntList)
def sum_dims(ctx, x, dims, keepdim=False, dtype=None):
    return reduce(ctx, in_result_dtype(ctx, x), "SUM", dims, keepdim, "sum")


@converter(aten.sum.default)
def sum_all(ctx, x, dtype=None):
    return reduce(ctx, in_result_dtype(ctx, x), "SUM", None, False, "sum")


@converter(aten.amax.default)
def amax(ctx, x, dims=(), keepdim=False):
    return reduce(ctx, x, "MAX", dims, keepdim, "amax")


@converter(aten.amin.default)
def amin(ctx, x, dims=(), keepdim=False):
    return reduce(ctx, x, "MIN", dims, keepdim, "amin")


@converter(aten._softmax.default, aten.softmax.int)
def softmax(ctx, x, dim, half_to_float_or_dtype=None):
    x = in_result_dtype(ctx, x)
    layer = ctx.network.add_softmax(x)
    layer.axes = 1 << (dim % len(x.shape))
    return ctx.out(layer, "softmax")


def _normalise(ctx, x, dims, eps, centre: bool):
    """(x - mean) / sqrt(var + eps) (or x / sqrt(mean(x^2) + eps)) over `dims`, in float32."""
    x = ctx.cast(x, torch.float32)
    if centre:
        x = binary(ctx, x, reduce(ctx, x, "AVG", dims, True, "mean"), "SUB", torch.float32)
    power = reduce(ctx, binary(ctx, x, x, "PROD", torch.float32), "AVG", dims, True, "variance")
    scale = unary(ctx, unary(ctx, binary(ctx, power, float(eps), "SUM", torch.float32), "SQRT"), "RECIP")
    return binary(ctx, x, scale, "PROD", torch.float32)


def _affine(ctx, y, weight, bias, dtype):
    if weight is not None:
        y = binary(ctx, y, ctx.cast(weight, torch.float32), "PROD", torch.float32)
    if bias is not None:
        y = binary(ctx, y, ctx.cast(bias, torch.float32), "SUM", torch.float32)
    return ctx.cast(y, dtype)


@converter(aten.layer_norm.default)
def layer_norm(ctx, x, shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    dtype = ctx.torch_dtype(x.dtype)
    y = _normalise(ctx, x, list(range(-len(shape), 0)), eps, centre=True)
    return _affine(ctx, y, weight, bias, dtype)


@converter(aten.rms_norm.default)
def rms_norm(ctx, x, shape, weight=None, eps=None):
    dtype = result_dtype(ctx, ctx.torch_dtype(x.dtype))
    eps = torch.finfo(ctx.torch_dtype(x.dtype)).eps if eps is None else eps
    y = _normalise(ctx, x, list(range(-len(shape), 0)), eps, centre=False)
    return _affine(ctx, y, weight, None, dtype)


@converter(aten.cumsum.default)
def cumsum(ctx, x, dim, dtype=None):
    """Inclusive running sum along `dim`, in the node's dtype (torch sums bool/int as int64)."""
    x = ctx.cast(x, result_dtype(ctx, ctx.torch_dtype(x.dtype)))
    axis = ctx.constant(torch.tensor(dim % len(x.shape), dtype=torch.int32), "axis", keep_0d=True)
    return ctx.out(ctx.network.add_cumulative(x, axis, ctx.trt.CumulativeOperation.SUM, False, False), "cumsum")


def _var_supported(node) -> str | None:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None:
        return "a variance over every dim"
    shape = node.args[0].meta["val"].shape
    if any(not isinstance(shape[d], int) for d in ([dims] if isinstance(dims, int) else dims)):
        return "a variance over a dynamic dim"
    return None


@converter(aten.var.dim, supports=_var_supported)
def var_dim(ctx, x, dims=None, unbiased=True, keepdim=False):
    return var(ctx, x, dims, correction=1 if unbiased else 0, keepdim=keepdim)


@converter(aten.var.correction, supports=_var_supported)
def var(ctx, x, dims=None, correction=None, keepdim=False):
    """Mean squared deviation over `dims`, divided by count - correction (default 1)."""
    x = in_result_dtype(ctx, x)
    centred = binary(ctx, x, reduce(ctx, x, "AVG", dims, True, "mean"), "SUB")
    total = reduce(ctx, binary(ctx, centred, centred, "PROD"), "SUM", dims, keepdim, "sum_sq")
    count = 1
    for d in [dims] if isinstance(dims, int) else dims:
        count *= x.shape[d % len(x.shape)]
    return binary(ctx, total, 1.0 / (count - (1 if correction is None else correction)), "PROD")


@converter(aten.prod.dim_int)
def prod(ctx, x, dim, keepdim=False, dtype=None):
    return reduce(ctx, in_result_dtype(ctx, x), "PROD", dim, keepdim, "prod")


# ---- top-k ---------------------------------------------------------------------------------
_TOPK_MAX_K = 3840  # ITopKLayer (tensorrt_rtx 1.7 add_topk docstring): "only values of K up to 3840"


def _topk_supported(node) -> str | None:
    k, rank = node.args[1], len(node.meta["val"][0].shape)
    dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", -1)) % max(rank, 1)
    if not isinstance(k, int):
        return "a k that is only known at run time"
    if k > _TOPK_MAX_K:
        return f"k={k} above TensorRT's TopK limit of {_TOPK_MAX_K}"
    if rank - dim > 4:
        return f"top-k along dim {dim} of a rank-{rank} tensor (TensorRT's TopK reduces one of the last four dims)"
    return None


@converter(aten.topk.default, supports=_topk_supported)
def topk(ctx, x, k, dim=-1, largest=True, sorted=True):
    """(values, int64 indices), sorted as torch's `sorted=True`; an unsorted request accepts any order."""
    op = ctx.trt.TopKOperation.MAX if largest else ctx.trt.TopKOperation.MIN
    layer = ctx.network.add_topk(x, op, k, axes_mask(x, dim), ctx.dtype(torch.int64))
    ctx.name(layer, "topk")
    return [layer.get_output(0), layer.get_output(1)]
