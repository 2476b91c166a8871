"""Converters from FX nodes (ATen ops and ditto's ops) to TensorRT layers.

One small function per target, registered with `@converter(target, ...)`; each receives the
context and the node's arguments with FX nodes already replaced by their TensorRT values.
Adding an op is one decorated function. The TensorRT module comes from the context: no
converter imports tensorrt.
"""

from __future__ import annotations

import operator

import torch

from ditto.trt.context import ConversionContext

aten = torch.ops.aten
CONVERTERS: dict = {}
_END = 9223372036854775807


def converter(*targets):
    def wrap(fn):
        for target in targets:
            CONVERTERS[target] = fn
        return fn

    return wrap


# ---- elementwise --------------------------------------------------------------------------
def _binary(ctx: ConversionContext, a, b, op_name: str):
    like = a if not isinstance(a, (int, float, bool)) else b
    a, b = ctx.operand(a, like), ctx.operand(b, like)
    return ctx.elementwise(a, b, getattr(ctx.trt.ElementWiseOperation, op_name))


@converter(aten.add.Tensor)
def add(ctx, a, b, alpha=1):
    if alpha != 1:
        b = _binary(ctx, b, alpha, "PROD")
    return _binary(ctx, a, b, "SUM")


@converter(aten.sub.Tensor)
def sub(ctx, a, b, alpha=1):
    if alpha != 1:
        b = _binary(ctx, b, alpha, "PROD")
    return _binary(ctx, a, b, "SUB")


@converter(aten.mul.Tensor)
def mul(ctx, a, b):
    return _binary(ctx, a, b, "PROD")


@converter(aten.div.Tensor)
def div(ctx, a, b):
    return _binary(ctx, a, b, "DIV")


@converter(aten.pow.Tensor_Scalar)
def pow_scalar(ctx, x, exponent):
    if exponent == 2:
        return _binary(ctx, x, x, "PROD")
    return _binary(ctx, x, float(exponent), "POW")


def _unary(ctx, x, name):
    return ctx.out(ctx.network.add_unary(x, getattr(ctx.trt.UnaryOperation, name)), name.lower())


@converter(aten.rsqrt.default)
def rsqrt(ctx, x):
    return _unary(ctx, _unary(ctx, x, "SQRT"), "RECIP")


@converter(aten.neg.default)
def neg(ctx, x):
    return _unary(ctx, x, "NEG")


@converter(aten.cos.default)
def cos(ctx, x):
    return _unary(ctx, x, "COS")


@converter(aten.sin.default)
def sin(ctx, x):
    return _unary(ctx, x, "SIN")


def _activation(ctx, x, name):
    return ctx.out(ctx.network.add_activation(x, getattr(ctx.trt.ActivationType, name)), name.lower())


@converter(aten.tanh.default)
def tanh(ctx, x):
    return _activation(ctx, x, "TANH")


@converter(aten.silu.default)
def silu(ctx, x):
    return _binary(ctx, x, _activation(ctx, x, "SIGMOID"), "PROD")


@converter(aten.relu.default)
def relu(ctx, x):
    return _activation(ctx, x, "RELU")


@converter(aten.gelu.default)
def gelu(ctx, x, approximate="none"):
    return _activation(ctx, x, "GELU_TANH" if approximate == "tanh" else "GELU_ERF")


# ---- casts --------------------------------------------------------------------------------
@converter(aten._to_copy.default, aten.to.dtype_layout)
def to_copy(ctx, x, dtype=None, **_):
    return x if dtype is None else ctx.cast(x, dtype)


@converter(aten.to.dtype)
def to_dtype(ctx, x, dtype, *_, **__):
    return ctx.cast(x, dtype)


@converter(aten.type_as.default)
def type_as(ctx, x, other):
    return ctx.cast(x, ctx.torch_dtype(other.dtype))


# ---- reductions and normalisation ----------------------------------------------------------
def _axes(x, dims) -> int:
    mask = 0
    for d in dims:
        mask |= 1 << (d % len(x.shape))
    return mask


@converter(aten.mean.dim)
def mean(ctx, x, dims, keepdim=False, **_):
    layer = ctx.network.add_reduce(x, ctx.trt.ReduceOperation.AVG, _axes(x, dims), keepdim)
    return ctx.out(layer, "mean")


@converter(aten.sum.dim_IntList)
def sum_dims(ctx, x, dims, keepdim=False, **_):
    return ctx.out(ctx.network.add_reduce(x, ctx.trt.ReduceOperation.SUM, _axes(x, dims), keepdim), "sum")


@converter(aten.layer_norm.default)
def layer_norm(ctx, x, shape, weight=None, bias=None, eps=1e-5, *_):
    dims = list(range(-len(shape), 0))
    mu = mean(ctx, x, dims, True)
    centred = _binary(ctx, x, mu, "SUB")
    var = mean(ctx, _binary(ctx, centred, centred, "PROD"), dims, True)
    denom = _unary(ctx, _binary(ctx, var, float(eps), "SUM"), "SQRT")
    y = _binary(ctx, centred, denom, "DIV")
    if weight is not None:
        y = _binary(ctx, y, weight, "PROD")
    if bias is not None:
        y = _binary(ctx, y, bias, "SUM")
    return y


@converter(aten._softmax.default, aten.softmax.int)
def softmax(ctx, x, dim, *_):
    layer = ctx.network.add_softmax(x)
    layer.axes = 1 << (dim % len(x.shape))
    return ctx.out(layer, "softmax")


# ---- matrix multiplication -----------------------------------------------------------------
def _matmul(ctx, a, b, transpose_b=False):
    rank = max(len(a.shape), len(b.shape))
    a, b = ctx.to_rank(a, rank), ctx.to_rank(b, rank)
    op = ctx.trt.MatrixOperation
    layer = ctx.network.add_matrix_multiply(a, op.NONE, b, op.TRANSPOSE if transpose_b else op.NONE)
    return ctx.out(layer, "matmul")


@converter(aten.linear.default)
def linear(ctx, x, weight, bias=None):
    y = _matmul(ctx, x, weight, transpose_b=True)
    return _binary(ctx, y, bias, "SUM") if bias is not None else y


@converter(aten.addmm.default)
def addmm(ctx, bias, x, weight, beta=1, alpha=1):
    return _binary(ctx, _matmul(ctx, x, weight), bias, "SUM")


@converter(aten.mm.default, aten.matmul.default, aten.bmm.default)
def matmul(ctx, a, b):
    return _matmul(ctx, a, b)


# ---- gathers, shapes, slicing ---------------------------------------------------------------
@converter(aten.embedding.default)
def embedding(ctx, weight, ids, *_):
    return ctx.out(ctx.network.add_gather(weight, ids, 0), "embedding")


@converter(aten.index_select.default)
def index_select(ctx, x, dim, index):
    return ctx.out(ctx.network.add_gather(x, index, dim % len(x.shape)), "index_select")


@converter(aten.sym_size.int)
def sym_size(ctx, x, dim):
    return ctx.dim(x, dim)


def _dims(ctx, x, sizes) -> list:
    """View sizes (ints, -1, or symbolic sizes converted to [1] tensors)."""
    return [s if isinstance(s, int) else s for s in sizes]


@converter(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def reshape(ctx, x, sizes):
    return ctx.reshape(x, _dims(ctx, x, sizes))


@converter(aten.unsqueeze.default)
def unsqueeze(ctx, x, dim):
    rank = len(x.shape) + 1
    dim = dim % rank
    dims = [ctx.dim(x, i) if x.shape[i] < 0 else x.shape[i] for i in range(len(x.shape))]
    return ctx.reshape(x, dims[:dim] + [1] + dims[dim:])


@converter(aten.permute.default)
def permute(ctx, x, perm):
    return ctx.transpose(x, [p % len(x.shape) for p in perm])


@converter(aten.transpose.int)
def transpose(ctx, x, a, b):
    perm = list(range(len(x.shape)))
    perm[a % len(perm)], perm[b % len(perm)] = perm[b % len(perm)], perm[a % len(perm)]
    return ctx.transpose(x, perm)


@converter(aten.cat.default)
def cat(ctx, tensors, dim=0):
    layer = ctx.network.add_concatenation(list(tensors))
    layer.axis = dim % len(tensors[0].shape)
    return ctx.out(layer, "cat")


def _slice(ctx, x, dim, start, end, step=1):
    rank = len(x.shape)
    dim = dim % rank
    size = x.shape[dim]
    start = start or 0
    if size >= 0 and (end is None or end >= size):
        end = size
    starts = [0] * rank
    starts[dim] = start
    strides = [1] * rank
    strides[dim] = step
    if size >= 0 and all(d >= 0 for d in x.shape):
        shape = list(x.shape)
        shape[dim] = (end - start + step - 1) // step
        return ctx.out(ctx.network.add_slice(x, tuple(starts), tuple(shape), tuple(strides)), "slice")
    # dynamic: shape = x.shape with dim replaced by (min(end, size) - start) / step
    dims = [ctx.dim(x, i) for i in range(rank)]
    length = dims[dim]
    if end not in (None, _END):
        length = ctx.elementwise(length, ctx.constant(torch.tensor([end])), ctx.trt.ElementWiseOperation.MIN)
    if start:
        length = ctx.elementwise(length, ctx.constant(torch.tensor([start])), ctx.trt.ElementWiseOperation.SUB)
    if step != 1:
        length = ctx.elementwise(length, ctx.constant(torch.tensor([step])), ctx.trt.ElementWiseOperation.FLOOR_DIV)
    dims[dim] = length
    layer = ctx.network.add_slice(x, tuple(starts), tuple([1] * rank), tuple(strides))
    layer.set_input(2, ctx.shape_tensor(dims))
    return ctx.out(layer, "slice")


@converter(aten.slice.Tensor)
def slice_tensor(ctx, x, dim=0, start=None, end=None, step=1):
    return _slice(ctx, x, dim, start, end, step)


@converter(aten.chunk.default)
def chunk(ctx, x, chunks, dim=0):
    size = x.shape[dim % len(x.shape)]
    width = -(-size // chunks)
    return [_slice(ctx, x, dim, i * width, min((i + 1) * width, size)) for i in range(chunks)]


@converter(aten.split.Tensor)
def split(ctx, x, width, dim=0):
    size = x.shape[dim % len(x.shape)]
    return [_slice(ctx, x, dim, s, min(s + width, size)) for s in range(0, size, width)]


@converter(aten.split_with_sizes.default)
def split_with_sizes(ctx, x, sizes, dim=0):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [_slice(ctx, x, dim, s, s + n) for s, n in zip(starts, sizes)]


@converter(operator.getitem)
def getitem(ctx, values, index):
    return values[index]
