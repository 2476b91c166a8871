"""Tensors made from nothing: full/ones/zeros (and their *_like / new_* forms), arange, scalar_tensor.

Static sizes become constants; a size with symbolic dims broadcasts a one-element constant
(a stride-0 slice), and `arange` with a symbolic end is a LINSPACE fill, so both stay dynamic.
"""

from __future__ import annotations

import torch

from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import is_tensor, result_dtype
from ditto.trt.converters.shuffle import dims_of, expand_to
from ditto.trt.converters.symbolic import size_op, size_tensor

aten = torch.ops.aten


def filled(ctx, sizes: list, value, dtype: torch.dtype):
    if all(isinstance(s, int) for s in sizes):
        return ctx.constant(torch.full(sizes, value, dtype=dtype), "full", keep_0d=True)
    one = ctx.constant(torch.full([1] * len(sizes), value, dtype=dtype), "value")
    return expand_to(ctx, one, sizes)


@converter(aten.full.default)
def full(ctx, size, value, **_):
    return filled(ctx, list(size), value, result_dtype(ctx, torch.float32))


@converter(aten.ones.default)
def ones(ctx, size, **_):
    return filled(ctx, list(size), 1, result_dtype(ctx, torch.float32))


@converter(aten.zeros.default)
def zeros(ctx, size, **_):
    return filled(ctx, list(size), 0, result_dtype(ctx, torch.float32))


@converter(aten.full_like.default)
def full_like(ctx, x, value, **_):
    return filled(ctx, dims_of(ctx, x), value, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.ones_like.default)
def ones_like(ctx, x, **_):
    return filled(ctx, dims_of(ctx, x), 1, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.zeros_like.default)
def zeros_like(ctx, x, **_):
    return filled(ctx, dims_of(ctx, x), 0, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.new_full.default)
def new_full(ctx, x, size, value, **_):
    return filled(ctx, list(size), value, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.new_ones.default)
def new_ones(ctx, x, size, **_):
    return filled(ctx, list(size), 1, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.new_zeros.default)
def new_zeros(ctx, x, size, **_):
    return filled(ctx, list(size), 0, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


@converter(aten.scalar_tensor.default)
def scalar_tensor(ctx, value, **_):
    return filled(ctx, [], value, result_dtype(ctx, torch.float32))


def _static_start_step(node) -> str | None:
    args = list(node.args)
    if node.target == aten.arange.default:
        return None
    start = args[0]
    step = args[2] if len(args) > 2 else 1
    return None if not (hasattr(start, "meta") or hasattr(step, "meta")) else "a symbolic start or step"


@converter(aten.arange.default, supports=_static_start_step)
def arange(ctx, end, **_):
    return arange_step(ctx, 0, end, 1)


@converter(aten.arange.start, aten.arange.start_step, supports=_static_start_step)
def arange_step(ctx, start, end, step=1, **_):
    dtype = result_dtype(ctx, torch.int64)
    if not is_tensor(ctx, end):
        return ctx.constant(torch.arange(start, end, step, dtype=dtype), "arange")
    count = size_op(ctx, size_op(ctx, size_op(ctx, end, start, "SUB"), step - 1 if step > 0 else step + 1, "SUM"), step, "FLOOR_DIV")
    layer = ctx.network.add_fill((0,), ctx.trt.FillOperation.LINSPACE, ctx.dtype(dtype))
    layer.set_input(0, size_tensor(ctx, size_op(ctx, count, 0, "MAX")))
    layer.set_input(1, ctx.constant(torch.tensor(start, dtype=dtype), "start", keep_0d=True))
    layer.set_input(2, ctx.constant(torch.tensor([step], dtype=dtype), "step"))
    return ctx.out(layer, "arange")
