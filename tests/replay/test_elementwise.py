"""Replay of ELEMENTWISE, SELECT, UNARY and ACTIVATION, against numpy written from TensorRT's documentation of each layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ditto.replay import ReplayError
from tests.replay._helpers import (
    Net,
    randn,
    rng,
    trt,
)

# ---- elementwise, select, unary, activation ------------------------------------------------

_NUMPY_BINARY = {
    "SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum, "SUB": np.subtract,
    "DIV": np.divide, "POW": np.power, "FLOOR_DIV": np.floor_divide, "EQUAL": np.equal,
    "GREATER": np.greater, "LESS": np.less,
}


@pytest.mark.parametrize("op", sorted(_NUMPY_BINARY))
def test_elementwise_broadcast(op):
    a = np.abs(randn(2, 1, 4)) + 0.5
    b = np.abs(randn(1, 3, 4)) + 0.5
    b[0, 0, 0] = a[0, 0, 0]  # one equal pair for EQUAL
    net = Net()
    net.out(net.network.add_elementwise(net.input("a", a), net.input("b", b), getattr(trt.ElementWiseOperation, op)))
    np.testing.assert_allclose(net.run(a=a, b=b)["out"], _NUMPY_BINARY[op](a, b), rtol=1e-6)


@pytest.mark.parametrize("op", ["AND", "OR", "XOR"])
def test_elementwise_logical(op):
    a = np.array([[True, False]])
    b = np.array([[True], [False]])
    net = Net()
    net.out(net.network.add_elementwise(net.input("a", a), net.input("b", b), getattr(trt.ElementWiseOperation, op)))
    expected = {"AND": np.logical_and, "OR": np.logical_or, "XOR": np.logical_xor}[op](a, b)
    np.testing.assert_array_equal(net.run(a=a, b=b)["out"], expected)


def test_integer_division():
    a = np.array([7, -7, 8, -9], dtype=np.int32)
    b = np.array([2, 2, -4, 3], dtype=np.int32)
    net = Net()
    ia, ib = net.input("a", a), net.input("b", b)
    net.out(net.network.add_elementwise(ia, ib, trt.ElementWiseOperation.FLOOR_DIV), "floor")
    np.testing.assert_array_equal(net.run(["floor"], a=a, b=b)["floor"], np.floor_divide(a, b))
    net.out(net.network.add_elementwise(ia, ib, trt.ElementWiseOperation.DIV), "div")
    with pytest.raises(ReplayError, match="does not document its rounding"):
        net.run(["div"], a=a, b=b)  # -7 / 2: truncation or floor is not documented
    exact = np.array([8, -8, 8, 9], dtype=np.int32)
    np.testing.assert_array_equal(net.run(["div"], a=exact, b=b)["div"], [4, -4, -2, 3])


def test_select_broadcasts():
    cond = np.array([[True], [False]])
    a, b = randn(1, 3), randn(2, 3)
    net = Net()
    net.out(net.network.add_select(net.input("c", cond), net.input("a", a), net.input("b", b)))
    np.testing.assert_array_equal(net.run(c=cond, a=a, b=b)["out"], np.where(cond, a, b))


_NUMPY_UNARY = {
    "EXP": np.exp, "LOG": np.log, "SQRT": np.sqrt, "RECIP": np.reciprocal, "ABS": np.abs, "NEG": np.negative,
    "SIN": np.sin, "COS": np.cos, "TAN": np.tan, "SINH": np.sinh, "COSH": np.cosh, "ASIN": np.arcsin,
    "ACOS": np.arccos, "ATAN": np.arctan, "ASINH": np.arcsinh, "ACOSH": lambda x: np.arccosh(x + 1),
    "ATANH": np.arctanh, "CEIL": np.ceil, "FLOOR": np.floor, "ERF": np.vectorize(math.erf, otypes=[np.float32]),
    "SIGN": np.sign, "ROUND": np.round, "ISINF": np.isinf, "ISNAN": np.isnan,
}


@pytest.mark.parametrize("op", sorted(_NUMPY_UNARY))
def test_unary(op):
    x = np.array([0.1, 0.5, 0.9, 2.5, 3.5, -0.5], dtype=np.float32) if op in ("ROUND", "SIGN") else rng.uniform(0.05, 0.95, 6).astype(np.float32)
    if op == "ACOSH":
        x = x + 1
    net = Net()
    net.out(net.network.add_unary(net.input("x", x), getattr(trt.UnaryOperation, op)))
    expected = _NUMPY_UNARY[op](x - 1 if op == "ACOSH" else x)
    np.testing.assert_allclose(net.run(x=x)["out"], expected, rtol=1e-6, atol=1e-7)


def test_unary_not():
    x = np.array([True, False])
    net = Net()
    net.out(net.network.add_unary(net.input("x", x), trt.UnaryOperation.NOT))
    np.testing.assert_array_equal(net.run(x=x)["out"], [False, True])


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


# NvInfer.h ActivationType formulas, rewritten in numpy
_NUMPY_ACTIVATIONS = {
    "RELU": lambda x, a, b: np.maximum(x, 0),
    "SIGMOID": lambda x, a, b: 1 / (1 + np.exp(-x)),
    "TANH": lambda x, a, b: np.tanh(x),
    "LEAKY_RELU": lambda x, a, b: np.where(x >= 0, x, a * x),
    "ELU": lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1)),
    "SELU": lambda x, a, b: np.where(x > 0, b * x, b * (a * np.exp(x) - a)),
    "SOFTSIGN": lambda x, a, b: x / (1 + np.abs(x)),
    "SOFTPLUS": lambda x, a, b: a * np.log(np.exp(b * x) + 1),
    "CLIP": lambda x, a, b: np.maximum(a, np.minimum(b, x)),
    "HARD_SIGMOID": lambda x, a, b: np.maximum(0, np.minimum(1, a * x + b)),
    "SCALED_TANH": lambda x, a, b: a * np.tanh(b * x),
    "THRESHOLDED_RELU": lambda x, a, b: np.where(x > a, x, 0),
    "GELU_ERF": lambda x, a, b: 0.5 * x * (1 + _erf(math.sqrt(0.5) * x)),
    "GELU_TANH": lambda x, a, b: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (0.044715 * x**3 + x))),
}


@pytest.mark.parametrize("kind", sorted(_NUMPY_ACTIVATIONS))
def test_activation(kind):
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    alpha, beta = 0.3, 1.7
    net = Net()
    layer = net.network.add_activation(net.input("x", x), getattr(trt.ActivationType, kind))
    layer.alpha, layer.beta = alpha, beta
    net.out(layer)
    expected = _NUMPY_ACTIVATIONS[kind](x.astype(np.float64), np.float32(alpha), np.float32(beta))
    np.testing.assert_allclose(net.run(x=x)["out"], expected, rtol=1e-5, atol=1e-6)


def test_half_precision_is_computed_wide_and_rounded_once():
    x = np.linspace(-4, 4, 9, dtype=np.float16)
    net = Net()
    net.out(net.network.add_activation(net.input("x", x), trt.ActivationType.GELU_ERF))
    expected = (0.5 * x.astype(np.float64) * (1 + _erf(x.astype(np.float64) / math.sqrt(2)))).astype(np.float16)
    out = net.run(x=x)["out"]
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, expected)
