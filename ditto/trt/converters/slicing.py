"""Slicing, indexing and joining converters: slice, select, gathers, scatters, split, cat, stack.

Bounds follow Python: negative indices count from the end and out-of-range bounds clamp.
On a dynamic dim the bounds are computed in the network from its size.
"""

from __future__ import annotations

import operator

import torch

from ditto.graph.nodes import SLICE_END
from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import result_dtype
from ditto.trt.converters.shuffle import dims_of, unsqueeze
from ditto.trt.converters.symbolic import size_op, size_tensor

aten = torch.ops.aten


def _bound(ctx, value, size):
    """Python slice bound `value` on a dim of `size` (int or tensor), clamped to [0, size]."""
    if isinstance(value, int):
        value = value if value >= 0 else size_op(ctx, size, value, "SUM")
    else:  # a symbolic bound may be negative at run time
        value = size_tensor(ctx, value)
        negative = ctx.out(ctx.network.add_elementwise(value, size_tensor(ctx, 0), ctx.trt.ElementWiseOperation.LESS), "negative")
        wrapped = size_op(ctx, value, size, "SUM")
        value = ctx.out(ctx.network.add_select(negative, wrapped, value), "wrapped")
    return size_op(ctx, size_op(ctx, value, 0, "MAX"), size, "MIN")


def slice_dim(ctx, x, dim: int, start=None, end=None, step: int = 1):
    """x[..., start:end:step, ...] along `dim`."""
    rank = len(x.shape)
    dim %= rank
    dims = dims_of(ctx, x)
    size = dims[dim]
    begin = _bound(ctx, 0 if start is None else start, size)
    stop = _bound(ctx, SLICE_END if end is None else end, size)
    span = size_op(ctx, size_op(ctx, stop, begin, "SUB"), step - 1, "SUM")
    dims[dim] = size_op(ctx, size_op(ctx, span, step, "FLOOR_DIV"), 0, "MAX")
    strides = tuple(step if i == dim else 1 for i in range(rank))
    if dim == rank - 1 and step == 1 and all(isinstance(v, int) for v in (size, begin, stop)) and 0 < stop - begin < size:
        return ctx.columns(x, begin, stop)  # part of a static last dim (see ConversionContext.columns)
    if all(isinstance(d, int) for d in dims + [begin]):
        starts = tuple(begin if i == dim else 0 for i in range(rank))
        return ctx.out(ctx.network.add_slice(x, starts, tuple(dims), strides), "slice")
    starts = ctx.shape_tensor([begin if i == dim else 0 for i in range(rank)]) if not isinstance(begin, int) else None
    shape = ctx.shape_tensor(dims)
    static_starts = tuple(begin if (i == dim and isinstance(begin, int)) else 0 for i in range(rank))
    layer = ctx.network.add_slice(x, static_starts, (1,) * rank, strides)
    if starts is not None:
        layer.set_input(1, starts)
    layer.set_input(2, shape)
    return ctx.out(layer, "slice")


@converter(aten.slice.Tensor)
def slice_tensor(ctx, x, dim=0, start=None, end=None, step=1):
    return slice_dim(ctx, x, dim, start, end, step)


@converter(aten.narrow.default)
def narrow(ctx, x, dim, start, length):
    return slice_dim(ctx, x, dim, start, size_op(ctx, start, length, "SUM"))


def _static_dim(node) -> str | None:
    val = node.args[0].meta.get("val")
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
    return None if val is not None and isinstance(val.shape[dim], int) else "a dynamic dim"


@converter(aten.chunk.default, supports=_static_dim)
def chunk(ctx, x, chunks, dim=0):
    size = x.shape[dim % len(x.shape)]
    width = -(-size // chunks)
    return [slice_dim(ctx, x, dim, s, s + width) for s in range(0, size, width)]


@converter(aten.split.Tensor, supports=_static_dim)
def split(ctx, x, width, dim=0):
    size = x.shape[dim % len(x.shape)]
    return [slice_dim(ctx, x, dim, s, s + width) for s in range(0, size, width)]


@converter(aten.split_with_sizes.default)
def split_with_sizes(ctx, x, sizes, dim=0):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [slice_dim(ctx, x, dim, s, s + n) for s, n in zip(starts, sizes)]


@converter(operator.getitem)
def getitem(ctx, values, index):
    return values[index]


# ---- gathers ------------------------------------------------------------------------------
def gather(ctx, x, index, axis: int, name: str = "gather"):
    return ctx.out(ctx.network.add_gather(x, index, axis % len(x.shape)), name)


@converter(aten.select.int)
def select(ctx, x, dim, index):
    dim %= len(x.shape)
    if isinstance(index, int) and index >= 0:
        scalar = ctx.constant(torch.tensor(index, dtype=torch.int64), "index", keep_0d=True)
    else:  # counted from the end of the dim, or symbolic
        position = _bound(ctx, index, dims_of(ctx, x)[dim])
        scalar = ctx.reshape(size_tensor(ctx, position), [])
    return gather(ctx, x, scalar, dim, "select")


def _static_unbind_dim(node) -> str | None:
    val = node.args[0].meta.get("val")
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return None if val is not None and isinstance(val.shape[dim], int) else "a dynamic dim"


@converter(aten.unbind.int, supports=_static_unbind_dim)
def unbind(ctx, x, dim=0):
    """One select per index of a static dim (HY-V4's hyper-connection scales: `scale.unbind(0)`)."""
    return [select(ctx, x, dim, i) for i in range(x.shape[dim % len(x.shape)])]


@converter(aten.index_select.default)
def index_select(ctx, x, dim, index):
    return gather(ctx, x, index, dim, "index_select")


@converter(aten.embedding.default)
def embedding(ctx, weight, ids, *_):
    return gather(ctx, weight, ids, 0, "embedding")


def _one_index_tensor(node) -> str | None:
    indices = node.args[1]
    used = [i for i in indices if i is not None]
    if len(used) != 1:
        return f"{len(used)} index tensors (one is supported)"
    val = used[0].meta.get("val") if hasattr(used[0], "meta") else None
    if val is None or val.dtype not in (torch.int32, torch.int64):
        return "an index that is not an int32/int64 tensor"
    return None


@converter(aten.index.Tensor, supports=_one_index_tensor)
def index(ctx, x, indices):
    axis = next(i for i, v in enumerate(indices) if v is not None)
    return gather(ctx, x, indices[axis], axis, "index")


def _scatter_supported(node) -> str | None:
    index, src = node.args[2], node.args[3]
    if not hasattr(src, "meta"):
        return "a scalar source (scatter.value)"
    if tuple(index.meta["val"].shape) != tuple(src.meta["val"].shape):
        return "an index smaller than the source (TensorRT's ELEMENT scatter takes updates of the index's shape)"
    return None


@converter(aten.scatter.src, supports=_scatter_supported)
def scatter(ctx, x, dim, index, src):
    """out = x; out[..., index[i], ...] = src[i] along `dim` (TensorRT's ELEMENT scatter)."""
    layer = ctx.network.add_scatter(x, index, ctx.cast(src, ctx.torch_dtype(x.dtype)), ctx.trt.ScatterMode.ELEMENT)
    layer.axis = dim % len(x.shape)
    return ctx.out(layer, "scatter")


def _static_scattered_dim(node) -> str | None:
    val = node.args[0].meta.get("val") if hasattr(node.args[0], "meta") else None
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if val is None or not isinstance(dim, int) or not isinstance(val.shape[dim % val.dim()], int):
        return "a dynamic size along the written dim"
    if any(not isinstance(v, (int, type(None))) for v in node.args[3:]):
        return "symbolic bounds"
    return None


def _put_into(ctx, x, src, dim: int, positions: list[int], name: str):
    """x with the entries at `positions` along `dim` taken from src's consecutive entries there:
    a gather from cat([x, src]) with a constant index (the written region is static)."""
    size = int(x.shape[dim])
    index = list(range(size))
    for j, p in enumerate(positions):
        index[p] = size + j
    layer = ctx.network.add_concatenation([x, ctx.cast(src, ctx.torch_dtype(x.dtype))])
    layer.axis = dim
    joined = ctx.out(layer, "joined")
    return gather(ctx, joined, ctx.constant(torch.tensor(index, dtype=torch.int32), "positions"), dim, name)


@converter(aten.slice_scatter.default, supports=_static_scattered_dim)
def slice_scatter(ctx, x, src, dim=0, start=None, end=None, step=1):
    """x with x[..., start:end:step, ...] along `dim` replaced by src (functionalised slice writes)."""
    dim %= len(x.shape)
    positions = list(range(int(x.shape[dim])))[slice(start, end, step)]
    return _put_into(ctx, x, src, dim, positions, "slice_scatter")


@converter(aten.select_scatter.default, supports=_static_scattered_dim)
def select_scatter(ctx, x, src, dim, index):
    """x with x.select(dim, index) replaced by src."""
    dim %= len(x.shape)
    position = list(range(int(x.shape[dim])))[index]
    return _put_into(ctx, x, unsqueeze(ctx, src, dim), dim, [position], "select_scatter")


# ---- joining -------------------------------------------------------------------------------
@converter(aten.cat.default)
def cat(ctx, tensors, dim=0):
    dtype = result_dtype(ctx, ctx.torch_dtype(tensors[0].dtype))
    parts = [ctx.cast(t, dtype) for t in tensors if not (len(t.shape) == 1 and t.shape[0] == 0)]
    if len(parts) == 1:
        return parts[0]
    layer = ctx.network.add_concatenation(parts)
    layer.axis = dim % len(parts[0].shape)
    return ctx.out(layer, "cat")


@converter(aten.stack.default)
def stack(ctx, tensors, dim=0):
    rank = len(tensors[0].shape) + 1
    axes = ctx.constant(torch.tensor([dim % rank], dtype=torch.int64), "axes")
    parts = [ctx.out(ctx.network.add_unsqueeze(t, axes), "unsqueeze") for t in tensors]
    return cat(ctx, parts, dim % rank)
