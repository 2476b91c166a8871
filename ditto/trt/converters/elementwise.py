"""Elementwise converters: arithmetic, comparisons, selects, unary functions, activations.

Strongly typed networks need both operands of one type, so operands are cast to the dtype
torch computes in (the node's recorded value; comparisons: torch's type promotion) and
Python numbers become constants of that dtype. Broadcasting first aligns ranks.
"""

from __future__ import annotations

import torch

from ditto.trt.converters import converter

aten = torch.ops.aten


def is_tensor(ctx, value) -> bool:
    return isinstance(value, ctx.trt.ITensor)


def result_dtype(ctx, default: torch.dtype) -> torch.dtype:
    """The dtype export recorded for the node being converted (default when there is none)."""
    val = ctx.node.meta.get("val") if ctx.node is not None else None
    return val.dtype if isinstance(val, torch.Tensor) else default


def promoted_dtype(ctx, a, b) -> torch.dtype:
    """torch's type promotion of a and b: tensors by dtype and rank, Python numbers by kind."""

    def dummy(v):
        return torch.empty([0] * len(v.shape), dtype=ctx.torch_dtype(v.dtype)) if is_tensor(ctx, v) else v

    return torch.result_type(dummy(a), dummy(b))


def as_tensor(ctx, value, dtype: torch.dtype, rank: int):
    """`value` as an ITensor of `dtype`: cast if a tensor, a [1]*rank constant if a number."""
    if is_tensor(ctx, value):
        return ctx.cast(value, dtype)
    return ctx.constant(torch.tensor(value, dtype=dtype).reshape([1] * max(rank, 1)), "scalar")


def binary(ctx, a, b, op: str, dtype: torch.dtype | None = None):
    """a <op> b in `dtype` (default: the node's dtype); op names TensorRT's ElementWiseOperation."""
    rank = max(len(v.shape) for v in (a, b) if is_tensor(ctx, v))
    if dtype is None:
        dtype = result_dtype(ctx, promoted_dtype(ctx, a, b))
    a, b = as_tensor(ctx, a, dtype, rank), as_tensor(ctx, b, dtype, rank)
    return ctx.elementwise(a, b, getattr(ctx.trt.ElementWiseOperation, op))


def unary(ctx, x, op: str):
    return ctx.out(ctx.network.add_unary(x, getattr(ctx.trt.UnaryOperation, op)), op.lower())


def activation(ctx, x, kind: str):
    return ctx.out(ctx.network.add_activation(x, getattr(ctx.trt.ActivationType, kind)), kind.lower())


def in_result_dtype(ctx, x):
    """x cast to the dtype of the node's result: torch computes in it (ints become floats for exp,
    sqrt, mean, ...; float16 sums stay float16), so the TensorRT layer takes its input in it too."""
    return ctx.cast(x, result_dtype(ctx, ctx.torch_dtype(x.dtype)))


# ---- arithmetic ------------------------------------------------------------------------------
def _scaled(ctx, b, alpha):
    if alpha == 1:
        return b
    return binary(ctx, b, alpha, "PROD") if is_tensor(ctx, b) else b * alpha


@converter(aten.add.Tensor, aten.add.Scalar)
def add(ctx, a, b, alpha=1):
    return binary(ctx, a, _scaled(ctx, b, alpha), "SUM")


@converter(aten.sub.Tensor, aten.sub.Scalar, aten.subtract.Tensor, aten.subtract.Scalar)
def sub(ctx, a, b, alpha=1):
    return binary(ctx, a, _scaled(ctx, b, alpha), "SUB")


@converter(aten.rsub.Scalar, aten.rsub.Tensor)
def rsub(ctx, a, b, alpha=1):
    return binary(ctx, b, _scaled(ctx, a, alpha), "SUB")


@converter(aten.mul.Tensor, aten.mul.Scalar, aten.multiply.Tensor, aten.multiply.Scalar)  # multiply: Gemma 3n
def mul(ctx, a, b):
    return binary(ctx, a, b, "PROD")


@converter(aten.div.Tensor, aten.div.Scalar, aten.divide.Tensor, aten.divide.Scalar, aten.true_divide.Tensor)
def div(ctx, a, b):
    return binary(ctx, a, b, "DIV")


def _rounding_supported(node) -> str | None:
    mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
    return None if mode in (None, "floor") else f"rounding_mode={mode!r}"


@converter(aten.div.Tensor_mode, aten.div.Scalar_mode, supports=_rounding_supported)
def div_mode(ctx, a, b, rounding_mode=None):
    return binary(ctx, a, b, "DIV" if rounding_mode is None else "FLOOR_DIV")


@converter(aten.floor_divide.default)
def floor_divide(ctx, a, b):
    return binary(ctx, a, b, "FLOOR_DIV")


@converter(aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor)
def pow_(ctx, x, exponent):
    if exponent == 2:  # exact and cheaper than POW
        x = ctx.cast(x, result_dtype(ctx, ctx.torch_dtype(x.dtype)))
        return binary(ctx, x, x, "PROD")
    return binary(ctx, x, exponent, "POW")


@converter(aten.square.default)
def square(ctx, x):
    x = ctx.cast(x, result_dtype(ctx, ctx.torch_dtype(x.dtype)))
    return binary(ctx, x, x, "PROD")


@converter(aten.pow.Scalar)
def pow_scalar_base(ctx, base, exponent):
    return binary(ctx, base, exponent, "POW")


@converter(aten.remainder.Scalar, aten.remainder.Tensor)
def remainder(ctx, a, b):
    """Python's modulo (sign of the divisor): a - floor(a / b) * b."""
    dtype = result_dtype(ctx, promoted_dtype(ctx, a, b))
    if dtype.is_floating_point:
        quotient = unary(ctx, binary(ctx, a, b, "DIV", dtype), "FLOOR")
    else:
        quotient = binary(ctx, a, b, "FLOOR_DIV", dtype)
    return binary(ctx, a, binary(ctx, quotient, b, "PROD", dtype), "SUB", dtype)


@converter(aten.maximum.default, aten.max.other)
def maximum(ctx, a, b):
    return binary(ctx, a, b, "MAX")


@converter(aten.minimum.default, aten.min.other)
def minimum(ctx, a, b):
    return binary(ctx, a, b, "MIN")


@converter(aten.clamp.default, aten.clamp.Tensor)
def clamp(ctx, x, min=None, max=None):
    if min is not None:
        x = binary(ctx, x, min, "MAX")
    if max is not None:
        x = binary(ctx, x, max, "MIN")
    return x


@converter(aten.clamp_min.default)
def clamp_min(ctx, x, bound):
    return binary(ctx, x, bound, "MAX")


@converter(aten.clamp_max.default)
def clamp_max(ctx, x, bound):
    return binary(ctx, x, bound, "MIN")


# ---- comparisons and logic --------------------------------------------------------------------
def _compare(ctx, a, b, ops: tuple[str, ...], negate: bool = False):
    dtype = promoted_dtype(ctx, a, b)
    result = None
    for op in ops:
        part = binary(ctx, a, b, op, dtype)
        result = part if result is None else ctx.elementwise(result, part, ctx.trt.ElementWiseOperation.OR)
    return unary(ctx, result, "NOT") if negate else result


@converter(aten.eq.Tensor, aten.eq.Scalar)
def eq(ctx, a, b):
    return _compare(ctx, a, b, ("EQUAL",))


@converter(aten.ne.Tensor, aten.ne.Scalar)
def ne(ctx, a, b):
    return _compare(ctx, a, b, ("EQUAL",), negate=True)


@converter(aten.lt.Tensor, aten.lt.Scalar)
def lt(ctx, a, b):
    return _compare(ctx, a, b, ("LESS",))


@converter(aten.le.Tensor, aten.le.Scalar)
def le(ctx, a, b):
    return _compare(ctx, a, b, ("LESS", "EQUAL"))


@converter(aten.gt.Tensor, aten.gt.Scalar)
def gt(ctx, a, b):
    return _compare(ctx, a, b, ("GREATER",))


@converter(aten.ge.Tensor, aten.ge.Scalar)
def ge(ctx, a, b):
    return _compare(ctx, a, b, ("GREATER", "EQUAL"))


def _bool_only(node) -> str | None:
    """Bitwise ops are logical ops only on bool tensors."""
    for arg in node.args:
        val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
        if isinstance(val, torch.Tensor) and val.dtype != torch.bool:
            return f"a bitwise op on {val.dtype} (bool only)"
    return None


@converter(aten.logical_and.default)
def logical_and(ctx, a, b):
    return binary(ctx, ctx.cast(a, torch.bool), ctx.cast(b, torch.bool), "AND", torch.bool)


@converter(aten.logical_or.default)
def logical_or(ctx, a, b):
    return binary(ctx, ctx.cast(a, torch.bool), ctx.cast(b, torch.bool), "OR", torch.bool)


@converter(aten.logical_not.default)
def logical_not(ctx, x):
    return unary(ctx, ctx.cast(x, torch.bool), "NOT")


converter(aten.bitwise_and.Tensor, aten.__and__.Tensor, supports=_bool_only)(logical_and)
converter(aten.bitwise_or.Tensor, aten.__or__.Tensor, supports=_bool_only)(logical_or)
converter(aten.bitwise_not.default, supports=_bool_only)(logical_not)


@converter(aten._assert_tensor_metadata.default)
def assert_tensor_metadata(ctx, *args, **kwargs):
    """export's check of a value's dtype: a strongly typed network is checked by construction."""
    return None


# ---- selects ----------------------------------------------------------------------------------
def select(ctx, condition, then, other):
    """where(condition, then, other) with numbers as constants, in the node's dtype."""
    dtype = result_dtype(ctx, promoted_dtype(ctx, then, other) if (is_tensor(ctx, then) or is_tensor(ctx, other)) else torch.float32)
    rank = max(len(v.shape) for v in (condition, then, other) if is_tensor(ctx, v))
    then, other = as_tensor(ctx, then, dtype, rank), as_tensor(ctx, other, dtype, rank)
    condition, then, other = (ctx.to_rank(v, rank) for v in (ctx.cast(condition, torch.bool), then, other))
    return ctx.out(ctx.network.add_select(condition, then, other), "where")


@converter(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def where(ctx, condition, then, other):
    return select(ctx, condition, then, other)


@converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def masked_fill(ctx, x, mask, value):
    return select(ctx, mask, value, x)


# ---- unary functions ----------------------------------------------------------------------------
def _unary_converter(target, op):
    converter(target)(lambda ctx, x: unary(ctx, in_result_dtype(ctx, x), op))


for _target, _op in {
    aten.exp.default: "EXP",
    aten.log.default: "LOG",
    aten.sqrt.default: "SQRT",
    aten.reciprocal.default: "RECIP",
    aten.cos.default: "COS",
    aten.sin.default: "SIN",
    aten.erf.default: "ERF",
    aten.floor.default: "FLOOR",
    aten.ceil.default: "CEIL",
    aten.tan.default: "TAN",
    aten.atan.default: "ATAN",
    aten.sinh.default: "SINH",
    aten.cosh.default: "COSH",
    aten.round.default: "ROUND",
}.items():
    _unary_converter(_target, _op)


@converter(aten.neg.default)
def neg(ctx, x):
    return unary(ctx, x, "NEG")


@converter(aten.abs.default)
def abs_(ctx, x):
    return unary(ctx, x, "ABS")


@converter(aten.sign.default)
def sign(ctx, x):
    return unary(ctx, x, "SIGN")


@converter(aten.log1p.default)
def log1p(ctx, x):
    return unary(ctx, binary(ctx, in_result_dtype(ctx, x), 1.0, "SUM"), "LOG")


@converter(aten.expm1.default)
def expm1(ctx, x):
    return binary(ctx, unary(ctx, in_result_dtype(ctx, x), "EXP"), 1.0, "SUB")


@converter(aten.trunc.default)
def trunc(ctx, x):
    """Round toward zero: floor for x >= 0, ceil below."""
    x = in_result_dtype(ctx, x)
    positive = _compare(ctx, x, 0.0, ("GREATER", "EQUAL"))
    return ctx.out(ctx.network.add_select(positive, unary(ctx, x, "FLOOR"), unary(ctx, x, "CEIL")), "trunc")


@converter(aten.rsqrt.default)
def rsqrt(ctx, x):
    return unary(ctx, unary(ctx, in_result_dtype(ctx, x), "SQRT"), "RECIP")


# ---- activations ----------------------------------------------------------------------------------
@converter(aten.tanh.default)
def tanh(ctx, x):
    return activation(ctx, in_result_dtype(ctx, x), "TANH")


@converter(aten.sigmoid.default)
def sigmoid(ctx, x):
    return activation(ctx, in_result_dtype(ctx, x), "SIGMOID")


def _parametrised(ctx, x, kind: str, alpha: float = 0.0, beta: float = 0.0):
    layer = ctx.network.add_activation(x, getattr(ctx.trt.ActivationType, kind))
    layer.alpha, layer.beta = float(alpha), float(beta)
    return ctx.out(layer, kind.lower())


@converter(aten.leaky_relu.default)
def leaky_relu(ctx, x, negative_slope=0.01):
    return _parametrised(ctx, x, "LEAKY_RELU", negative_slope)


def _elu_supported(node) -> str | None:
    scale = node.args[2] if len(node.args) > 2 else node.kwargs.get("scale", 1)
    input_scale = node.args[3] if len(node.args) > 3 else node.kwargs.get("input_scale", 1)
    return None if scale == 1 and input_scale == 1 else "scale or input_scale other than 1"


@converter(aten.elu.default, supports=_elu_supported)
def elu(ctx, x, alpha=1.0, scale=1, input_scale=1):
    return _parametrised(ctx, x, "ELU", alpha)


@converter(aten.softplus.default)
def softplus(ctx, x, beta=1, threshold=20):
    """log(1 + exp(beta x)) / beta; torch's linear region above `threshold` differs by < 2e-9 x."""
    return _parametrised(ctx, in_result_dtype(ctx, x), "SOFTPLUS", 1.0 / beta, beta)


@converter(aten.hardtanh.default)
def hardtanh(ctx, x, min_val=-1.0, max_val=1.0):
    return _parametrised(ctx, x, "CLIP", min_val, max_val)


@converter(aten.relu6.default)
def relu6(ctx, x):
    return _parametrised(ctx, x, "CLIP", 0.0, 6.0)


@converter(aten.hardsigmoid.default)
def hardsigmoid(ctx, x):
    return _parametrised(ctx, x, "HARD_SIGMOID", 1.0 / 6, 0.5)


@converter(aten.hardswish.default)
def hardswish(ctx, x):
    return binary(ctx, x, hardsigmoid(ctx, x), "PROD")


@converter(aten.mish.default)
def mish(ctx, x):
    return binary(ctx, x, activation(ctx, _parametrised(ctx, x, "SOFTPLUS", 1.0, 1.0), "TANH"), "PROD")


@converter(aten.relu.default)
def relu(ctx, x):
    return activation(ctx, x, "RELU")


@converter(aten.silu.default)
def silu(ctx, x):
    return binary(ctx, x, activation(ctx, x, "SIGMOID"), "PROD")


def _gelu_supported(node) -> str | None:
    mode = node.kwargs.get("approximate", "none")
    return None if mode in ("none", "tanh") else f"approximate={mode!r}"


@converter(aten.gelu.default, supports=_gelu_supported)
def gelu(ctx, x, approximate="none"):
    return activation(ctx, x, "GELU_TANH" if approximate == "tanh" else "GELU_ERF")


