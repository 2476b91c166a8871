"""Symbolic sizes as shape tensors: `sym_size` and the integer arithmetic export records on it.

A symbolic size is an int64 [1] tensor computed from the network's own shapes at run time
(never a constant baked from the example input), so views built from it stay dynamic.
"""

from __future__ import annotations

import operator

import torch

from ditto.trt.converters import converter

aten = torch.ops.aten


def size_tensor(ctx, value):
    """An int or an int64 [1] tensor as an int64 [1] tensor."""
    if isinstance(value, int):
        return ctx.constant(torch.tensor([value], dtype=torch.int64), "size")
    return ctx.cast(value, torch.int64)


def size_op(ctx, a, b, op: str):
    """a <op> b on sizes (ints or int64 [1] tensors); plain ints stay Python ints."""
    if isinstance(a, int) and isinstance(b, int):
        return _PYTHON[op](a, b)
    trt_op = getattr(ctx.trt.ElementWiseOperation, op)
    return ctx.out(ctx.network.add_elementwise(size_tensor(ctx, a), size_tensor(ctx, b), trt_op), op.lower())


_PYTHON = {
    "SUM": operator.add,
    "SUB": operator.sub,
    "PROD": operator.mul,
    "FLOOR_DIV": operator.floordiv,
    "MAX": max,
    "MIN": min,
}


@converter(aten.sym_size.int)
def sym_size(ctx, x, dim):
    d = x.shape[dim]
    return d if d >= 0 else ctx.dim(x, dim)


def _size_arithmetic(op: str):
    """The converter of the Python operator `_PYTHON[op]` on sizes."""

    def convert(ctx, a, b):
        return size_op(ctx, a, b, op)

    convert.__name__ = op.lower()
    return convert


# +, -, * and // on sizes: one converter each, from the table that also computes them on ints
for _op in ("SUM", "SUB", "PROD", "FLOOR_DIV"):
    converter(_PYTHON[_op])(_size_arithmetic(_op))


@converter(operator.mod)
def mod(ctx, a, b):
    return size_op(ctx, a, size_op(ctx, size_op(ctx, a, b, "FLOOR_DIV"), b, "PROD"), "SUB")


@converter(operator.neg)
def neg(ctx, a):
    return size_op(ctx, 0, a, "SUB")
