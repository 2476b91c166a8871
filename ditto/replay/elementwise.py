"""Replays of TensorRT's elementwise layers (ELEMENTWISE, SELECT, UNARY, ACTIVATION, CAST, IDENTITY).

How they read TensorRT's documentation: ditto/replay/layer_args.py."""

from __future__ import annotations

import math

import torch

from ditto.replay.layer_args import widen
from ditto.replay.registry import LayerCall, replays, torch_dtype

# NvInfer.h ElementWiseOperation + IElementWiseLayer: inputs of the same rank, each dim equal
# or 1 (broadcast); AND/OR/XOR on bool; EQUAL/GREATER/LESS produce bool.


def _div(call, a, b):
    if a.dtype.is_floating_point:
        return a / b
    _no_zero_divisor(call, b)
    trunc = torch.div(a, b, rounding_mode="trunc")
    if not torch.equal(trunc, torch.div(a, b, rounding_mode="floor")):
        raise call.error("integer DIV with a negative inexact quotient: TensorRT does not document its rounding")
    return trunc


def _floor_div(call, a, b):
    if not a.dtype.is_floating_point:
        _no_zero_divisor(call, b)
    return torch.div(a, b, rounding_mode="floor")


def _no_zero_divisor(call, b):
    call.undefined_if(b == 0, "integer division by zero")


def _logical(fn):
    def run(call, a, b):
        if a.dtype != torch.bool:
            raise call.error(f"{fn.__name__} takes bool inputs, got {a.dtype}")
        return fn(a, b)

    return run


def _plain(fn):
    return lambda call, a, b: fn(a, b)


_BINARY = {
    "SUM": _plain(torch.add),
    "PROD": _plain(torch.mul),
    "MAX": _plain(torch.maximum),
    "MIN": _plain(torch.minimum),
    "SUB": _plain(torch.sub),
    "DIV": _div,
    "POW": _plain(torch.pow),
    "FLOOR_DIV": _floor_div,
    "AND": _logical(torch.logical_and),
    "OR": _logical(torch.logical_or),
    "XOR": _logical(torch.logical_xor),
    "EQUAL": _plain(torch.eq),
    "GREATER": _plain(torch.gt),
    "LESS": _plain(torch.lt),
}


@replays("ELEMENTWISE", reads=("op",))
def elementwise(call: LayerCall) -> torch.Tensor:
    a, b = call.input(0), call.input(1)
    op = call.enum("op", _BINARY)
    _same_rank_broadcast(call, a, b)
    if a.dtype != b.dtype:
        raise call.error(f"inputs are {a.dtype} and {b.dtype}; a strongly typed elementwise layer takes one type")
    return op(call, a, b)


def _same_rank_broadcast(call, *tensors):
    if len({t.dim() for t in tensors}) != 1:
        raise call.error(f"inputs of ranks {[t.dim() for t in tensors]}; TensorRT needs one rank")
    for dims in zip(*(t.shape for t in tensors)):
        if len(set(dims) - {1}) > 1:
            raise call.error(f"shapes {[tuple(t.shape) for t in tensors]} do not broadcast")


@replays("SELECT")
def select(call: LayerCall) -> torch.Tensor:
    condition, then, other = call.input(0), call.input(1), call.input(2)
    if condition.dtype != torch.bool or then.dtype != other.dtype:
        raise call.error(f"select of {condition.dtype} condition, {then.dtype} / {other.dtype} values")
    _same_rank_broadcast(call, condition, then, other)
    return torch.where(condition, then, other)


def _float_only(fn):
    def run(x):
        if not x.dtype.is_floating_point:
            raise TypeError(f"takes floating-point input, got {x.dtype}")
        return fn(widen(x)).to(x.dtype)

    return run


def _bool_result(fn):
    return lambda x: fn(widen(x))


_UNARY = {
    "EXP": _float_only(torch.exp),
    "LOG": _float_only(torch.log),
    "SQRT": _float_only(torch.sqrt),
    "RECIP": _float_only(torch.reciprocal),
    "ABS": torch.abs,
    "NEG": torch.neg,
    "SIN": _float_only(torch.sin),
    "COS": _float_only(torch.cos),
    "TAN": _float_only(torch.tan),
    "SINH": _float_only(torch.sinh),
    "COSH": _float_only(torch.cosh),
    "ASIN": _float_only(torch.asin),
    "ACOS": _float_only(torch.acos),
    "ATAN": _float_only(torch.atan),
    "ASINH": _float_only(torch.asinh),
    "ACOSH": _float_only(torch.acosh),
    "ATANH": _float_only(torch.atanh),
    "CEIL": _float_only(torch.ceil),
    "FLOOR": _float_only(torch.floor),
    "ERF": _float_only(torch.erf),
    "NOT": torch.logical_not,
    "SIGN": torch.sign,
    "ROUND": _float_only(torch.round),  # to nearest, ties to even
    "ISINF": _bool_result(torch.isinf),
    "ISNAN": _bool_result(torch.isnan),
}


@replays("UNARY", reads=("op",))
def unary(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    fn = call.enum("op", _UNARY)
    if call.attr("op").name == "NOT" and x.dtype != torch.bool:
        raise call.error(f"NOT takes bool input, got {x.dtype}")
    try:
        return fn(x)
    except TypeError as e:
        raise call.error(f"{call.attr('op').name} {e}") from None


_SQRT_HALF = math.sqrt(0.5)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# NvInfer.h ActivationType, formulas as written there; alpha and beta are the layer's.
_ACTIVATIONS = {
    "RELU": lambda x, a, b: torch.relu(x),
    "SIGMOID": lambda x, a, b: torch.sigmoid(x),
    "TANH": lambda x, a, b: torch.tanh(x),
    "LEAKY_RELU": lambda x, a, b: torch.where(x >= 0, x, a * x),
    "ELU": lambda x, a, b: torch.where(x >= 0, x, a * (torch.exp(x) - 1)),
    "SELU": lambda x, a, b: torch.where(x > 0, b * x, b * (a * torch.exp(x) - a)),
    "SOFTSIGN": lambda x, a, b: x / (1 + x.abs()),
    "SOFTPLUS": lambda x, a, b: a * torch.logaddexp(b * x, torch.zeros_like(x)),
    "CLIP": lambda x, a, b: x.clamp(max=b).clamp(min=a),
    "HARD_SIGMOID": lambda x, a, b: (a * x + b).clamp(max=1).clamp(min=0),
    "SCALED_TANH": lambda x, a, b: a * torch.tanh(b * x),
    "THRESHOLDED_RELU": lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x)),
    "GELU_ERF": lambda x, a, b: 0.5 * x * (1 + torch.erf(_SQRT_HALF * x)),
    "GELU_TANH": lambda x, a, b: 0.5 * x * (1 + torch.tanh(_SQRT_2_OVER_PI * (0.044715 * x**3 + x))),
}


# `type` on IActivationLayer is its ActivationType (it hides ILayer.type once cast)
@replays("ACTIVATION", reads=("alpha", "beta"))
def activation(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    fn = call.enum("type", _ACTIVATIONS)
    if not x.dtype.is_floating_point:
        raise call.error(f"activation of {x.dtype} input")
    return fn(widen(x), float(call.attr("alpha")), float(call.attr("beta"))).to(x.dtype)


@replays("CAST", reads=("to_type",))
def cast(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    dtype = torch_dtype(call.attr("to_type"), f"to_type of layer {call.name!r}")
    if x.dtype.is_floating_point and not dtype.is_floating_point and dtype != torch.bool:
        # the Cast operator page shows truncation (6.7 -> 6); negative non-integers are not shown
        call.undefined_if((x < 0) & (x != x.trunc()),
                          "cast of negative non-integer floats to an integer type: TensorRT does not document it")
    return x.to(dtype)


@replays("IDENTITY")
def identity(call: LayerCall) -> torch.Tensor:
    # strongly typed: the identity function (the output type check catches any conversion)
    return call.input(0)
