"""Matrix products: linear, addmm, mm, bmm, matmul (operands of rank >= 2, batch dims broadcast)."""

from __future__ import annotations

import torch

from ditto.trt.converters import converter
from ditto.trt.converters.elementwise import binary

aten = torch.ops.aten


def matmul(ctx, a, b, transpose_b: bool = False):
    rank = max(len(a.shape), len(b.shape))
    a, b = ctx.to_rank(a, rank), ctx.to_rank(b, rank)
    op = ctx.trt.MatrixOperation
    layer = ctx.network.add_matrix_multiply(a, op.NONE, b, op.TRANSPOSE if transpose_b else op.NONE)
    return ctx.out(layer, "matmul")


def _matrices(node) -> str | None:
    for arg in node.args[:2] if node.target != aten.addmm.default else node.args[1:3]:
        val = arg.meta.get("val") if hasattr(arg, "meta") else None
        if val is None or val.dim() < 2:
            return "a 1-D operand (a vector product)"
    return None


@converter(aten.linear.default)
def linear(ctx, x, weight, bias=None):
    y = matmul(ctx, x, weight, transpose_b=True)
    return binary(ctx, y, bias, "SUM") if bias is not None else y


@converter(aten.addmm.default, supports=_matrices)
def addmm(ctx, bias, a, b, beta=1, alpha=1):
    y = matmul(ctx, a, b)
    if alpha != 1:
        y = binary(ctx, y, alpha, "PROD")
    if beta != 1:
        bias = binary(ctx, bias, beta, "PROD")
    return binary(ctx, y, bias, "SUM")


@converter(aten.mm.default, aten.bmm.default, aten.matmul.default, supports=_matrices)
def mm(ctx, a, b):
    return matmul(ctx, a, b)
