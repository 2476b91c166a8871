"""Replay, layer by layer, on networks built by hand with the TensorRT-RTX API.

No network here comes from ditto's converters. Each expectation is written independently
in numpy (or plain Python for the index arithmetic of slice modes), from the behaviour
TensorRT documents; where cheap, the network is also built into a real engine to show it
is a valid network. Errors: unknown layer types, attributes and undocumented cases are
refused with the layer's name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ditto.errors import DittoError
from ditto.replay import ReplayError, replay_network
from ditto.replay.registry import REPLAYS, LayerCall, Replay
from tests.replay._helpers import (
    HEAD_SIZE,
    HEADS,
    KV_HEADS,
    LENGTHS,
    OP_FIELDS,
    Net,
    gpt_attention_call,
    new_pool,
    plugin_fields,
    plugin_inputs,
    trt,
)

FAST = settings(max_examples=25, deadline=None)
rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- shuffle -------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_shuffle_transposes_and_reshape(data):
    rank = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    first = data.draw(st.permutations(range(rank)))
    x = randn(*shape)
    moved = x.transpose(first)
    # merge the first two dims (inferred by -1), keep the others
    dims = [-1] + list(moved.shape[2:])
    expected_dims = [math.prod(moved.shape[:2]), *moved.shape[2:]]
    second = data.draw(st.permutations(range(len(dims))))
    net = Net()
    net.out(net.shuffle(net.input("x", x), first, dims, second))
    expected = moved.reshape(expected_dims).transpose(second)
    assert tuple(net.network.get_output(0).shape) == expected.shape  # TensorRT's shape inference agrees
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def test_shuffle_permutation_convention_matches_tensorrt_shape_inference():
    # NvInfer.h: "to permute from CHW order to HWC order, the required permutation is [1, 2, 0]"
    net = Net()
    chw = randn(2, 3, 5)
    layer = net.network.add_shuffle(net.input("x", chw))
    layer.first_transpose = (1, 2, 0)
    net.out(layer)
    assert net.builds()
    np.testing.assert_array_equal(net.run(x=chw)["out"], np.moveaxis(chw, 0, -1))


def test_shuffle_zero_placeholder_and_dynamic_reshape_input():
    x = randn(2, 3, 4)
    net = Net()
    inp = net.input("x", x)
    static = net.network.add_shuffle(inp)
    static.reshape_dims = (0, -1)  # 0 copies dim 0
    net.out(static, "placeholder")
    dynamic = net.network.add_shuffle(inp)
    dynamic.set_input(1, net.const(np.array([4, 0, 2], dtype=np.int64)))  # 0 copies dim 1 (3)
    net.out(dynamic, "dynamic")
    out = net.run(x=x)
    np.testing.assert_array_equal(out["placeholder"], x.reshape(2, 12))
    np.testing.assert_array_equal(out["dynamic"], x.reshape(4, 3, 2))


def test_shuffle_zero_as_a_real_dimension():
    x = randn(2, 3)
    net = Net()
    layer = net.network.add_shuffle(net.input("x", x))
    layer.set_input(1, net.const(np.array([0, 5], dtype=np.int64)))
    layer.zero_is_placeholder = False
    net.out(layer)
    with pytest.raises(ReplayError, match="change the volume"):
        net.run(x=x)


def test_layers_run_after_the_producers_of_inputs_set_later():
    x = randn(2, 6)
    net = Net()
    layer = net.network.add_shuffle(net.input("x", x))  # created before the layers making its dims
    shape = net.network.add_shape(layer.get_input(0)).get_output(0)
    reversed_shape = net.network.add_gather(shape, net.const(np.array([1, 0], dtype=np.int32)), 0)
    layer.set_input(1, reversed_shape.get_output(0))
    net.out(layer)
    np.testing.assert_array_equal(net.run(x=x)["out"], x.reshape(6, 2))


# ---- slice ---------------------------------------------------------------------------------


def _slice_net(x, start, size, stride, mode, fill=None, axes=None):
    net = Net()
    layer = net.network.add_slice(net.input("x", x), start, size, stride)
    layer.mode = mode
    if fill is not None:
        layer.set_input(4, net.const(np.array(fill, dtype=x.dtype)))
    if axes is not None:
        layer.axes = axes
    net.out(layer)
    return net


def _coords(start, size, stride):
    return [start + i * stride for i in range(size)]


def test_slice_examples_from_the_documentation():
    x = np.array([[0, 2, 4], [1, 3, 5]], dtype=np.float32)
    net = _slice_net(x, (1, 0), (1, 2), (1, 2), trt.SampleMode.STRICT_BOUNDS)
    np.testing.assert_array_equal(net.run(x=x)["out"], [[1, 5]])
    net = _slice_net(x, (1,), (2,), (1,), trt.SampleMode.STRICT_BOUNDS, axes=(1,))
    np.testing.assert_array_equal(net.run(x=x)["out"], [[2, 4], [3, 5]])
    assert net.builds()


@pytest.mark.parametrize("mode, n, start, size, stride, index", [
    ("WRAP", 4, -3, 10, 1, lambda c, n: c % n),
    ("CLAMP", 4, -3, 10, 2, lambda c, n: min(max(c, 0), n - 1)),
    # reflection about the middle of the edge element: ... 2 1 | 0 1 2 3 | 2 1 0 ...
    ("REFLECT", 4, -3, 10, 1, lambda c, n: [3, 2, 1, 0, 1, 2, 3, 2, 1, 0][c + 3]),
    ("STRICT_BOUNDS", 5, 4, 3, -2, lambda c, n: c),
])
def test_slice_modes(mode, n, start, size, stride, index):
    x = randn(3, n)
    net = _slice_net(x, (0, start), (3, size), (1, stride), getattr(trt.SampleMode, mode))
    expected = x[:, [index(c, n) for c in _coords(start, size, stride)]]
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def _reflect(c: int, n: int) -> int:
    """Mirror about the edge elements until inside (the layer's REFLECT, one fold at a time)."""
    while not 0 <= c < n:
        c = -c if c < 0 else 2 * (n - 1) - c
    return c


_READS = {
    "WRAP": lambda c, n: c % n,
    "CLAMP": lambda c, n: min(max(c, 0), n - 1),
    "REFLECT": lambda c, n: 0 if n == 1 else _reflect(c, n),
    "FILL": lambda c, n: c if 0 <= c < n else None,
}


@FAST
@given(mode=st.sampled_from(sorted(_READS)), n=st.integers(1, 5), start=st.integers(-7, 7), size=st.integers(0, 8),
       stride=st.integers(-3, 3).filter(bool))
def test_slice_modes_on_one_axis(mode, n, start, size, stride):
    x = np.arange(2 * n, dtype=np.float32).reshape(2, n) + 1
    net = _slice_net(x, (0, start), (2, size), (1, stride), getattr(trt.SampleMode, mode))
    reads = [_READS[mode](c, n) for c in _coords(start, size, stride)]
    expected = np.stack([[0.0 if r is None else x[i, r] for r in reads] for i in range(2)]).reshape(2, size)
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


@pytest.mark.parametrize("fill", [None, 7.5])
def test_slice_fill(fill):
    x = randn(2, 3)
    net = _slice_net(x, (-1, 1), (4, 4), (1, 1), trt.SampleMode.FILL, fill=fill)
    expected = np.full((4, 4), 0.0 if fill is None else fill, dtype=np.float32)
    for i, r in enumerate(_coords(-1, 4, 1)):
        for j, c in enumerate(_coords(1, 4, 1)):
            if 0 <= r < 2 and 0 <= c < 3:
                expected[i, j] = x[r, c]
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def test_slice_dynamic_start_size_stride():
    x = randn(4, 6)
    net = Net()
    layer = net.network.add_slice(net.input("x", x), (0, 0), (1, 1), (1, 1))
    layer.set_input(1, net.const(np.array([1, 2], dtype=np.int64)))
    layer.set_input(2, net.const(np.array([3, 2], dtype=np.int32)))
    layer.set_input(3, net.const(np.array([1, 2], dtype=np.int64)))
    net.out(layer)
    np.testing.assert_array_equal(net.run(x=x)["out"], x[1:, 2::2])


def test_slice_strict_bounds_out_of_range_is_an_error():
    x = randn(2, 3)
    net = _slice_net(x, (0, 2), (2, 2), (1, 1), trt.SampleMode.STRICT_BOUNDS)
    net.network.get_layer(0).name = "my_slice"
    with pytest.raises(ReplayError, match="'my_slice' \\(SLICE\\).*STRICT_BOUNDS"):
        net.run(x=x)


# ---- gather / scatter ----------------------------------------------------------------------


def test_gather_default_with_negative_and_out_of_bounds_indices():
    x = randn(3, 4, 2)
    idx = np.array([[0, -1], [3, 9]], dtype=np.int32)
    net = Net()
    net.out(net.network.add_gather(net.input("x", x), net.const(idx), 1))
    expected = np.take(x, np.where(idx < 0, idx + 4, np.clip(idx, 0, 3)), axis=1)
    expected[:, 1, 1] = 0  # index 9 is out of bounds: TensorRT stores zero
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def test_gather_default_with_an_elementwise_dim():
    x = randn(3, 5, 2)
    idx = np.array([[1, 0], [4, 4], [2, 3]], dtype=np.int64)
    net = Net()
    layer = net.network.add_gather(net.input("x", x), net.const(idx), 1)
    layer.num_elementwise_dims = 1
    net.out(layer)
    expected = np.stack([x[b][idx[b]] for b in range(3)])
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def test_gather_element():
    x = randn(3, 4)
    idx = rng.integers(0, 3, size=(2, 4)).astype(np.int32)
    net = Net()
    layer = net.network.add_gather_v2(net.input("x", x), net.const(idx), trt.GatherMode.ELEMENT)
    layer.axis = 0
    net.out(layer)
    np.testing.assert_array_equal(net.run(x=x)["out"], np.take_along_axis(x, idx.astype(np.int64), axis=0))


@pytest.mark.parametrize("batch_dims", [0, 1])
def test_gather_nd(batch_dims):
    x = randn(2, 3, 4, 5)
    k = 2
    idx = np.stack([rng.integers(0, n, size=(2, 6)) for n in x.shape[batch_dims : batch_dims + k]], axis=-1).astype(np.int32)
    net = Net()
    layer = net.network.add_gather_v2(net.input("x", x), net.const(idx), trt.GatherMode.ND)
    layer.num_elementwise_dims = batch_dims
    net.out(layer)
    if batch_dims == 0:
        expected = np.stack([np.stack([x[tuple(t)] for t in row]) for row in idx])
    else:
        expected = np.stack([np.stack([x[b][tuple(t)] for t in idx[b]]) for b in range(2)])
    assert tuple(net.network.get_output(0).shape) == expected.shape
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


def test_scatter_nd_and_element():
    data = randn(4, 3)
    net = Net()
    inp = net.input("data", data)
    nd = net.network.add_scatter(inp, net.const(np.array([[2], [0]], dtype=np.int32)), net.const(np.ones((2, 3), np.float32)), trt.ScatterMode.ND)
    net.out(nd, "nd")
    idx = np.array([[3, 0, 1]], dtype=np.int32)
    element = net.network.add_scatter(inp, net.const(idx), net.const(np.full((1, 3), 9, np.float32)), trt.ScatterMode.ELEMENT)
    element.axis = 0
    net.out(element, "element")
    out = net.run(data=data)
    expected_nd = data.copy()
    expected_nd[[2, 0]] = 1
    expected_element = data.copy()
    expected_element[idx[0], np.arange(3)] = 9
    np.testing.assert_array_equal(out["nd"], expected_nd)
    np.testing.assert_array_equal(out["element"], expected_element)


def test_scatter_writing_one_element_twice_is_refused():
    data = randn(4, 3)
    net = Net()
    layer = net.network.add_scatter(net.input("data", data), net.const(np.array([[1], [1]], dtype=np.int32)),
                                    net.const(np.ones((2, 3), np.float32)), trt.ScatterMode.ND)
    net.out(layer)
    with pytest.raises(ReplayError, match="twice"):
        net.run(data=data)


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


# ---- reductions ----------------------------------------------------------------------------

_NUMPY_REDUCE = {"SUM": np.sum, "PROD": np.prod, "MAX": np.max, "MIN": np.min, "AVG": np.mean}


@FAST
@given(op=st.sampled_from(sorted(_NUMPY_REDUCE)), mask=st.integers(1, 15), keep=st.booleans())
def test_reduce_axes_bitmask(op, mask, keep):
    x = randn(2, 3, 4, 5)
    axes = tuple(i for i in range(4) if mask >> i & 1)
    net = Net()
    net.out(net.network.add_reduce(net.input("x", x), getattr(trt.ReduceOperation, op), mask, keep))
    expected = _NUMPY_REDUCE[op](x.astype(np.float64), axis=axes, keepdims=keep)
    np.testing.assert_allclose(net.run(x=x)["out"], expected, rtol=1e-5, atol=1e-6)


@FAST
@given(axis=st.integers(0, 2))
def test_softmax_axes_bitmask(axis):
    x = randn(2, 3, 4)
    net = Net()
    layer = net.network.add_softmax(net.input("x", x))
    layer.axes = 1 << axis
    net.out(layer)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(net.run(x=x)["out"], e / e.sum(axis=axis, keepdims=True), rtol=1e-6)


def test_softmax_default_axis():
    # NvInfer.h: by default the axis is rank - 3 (C of NCHW)
    x = randn(2, 3, 4, 5)
    net = Net()
    net.out(net.network.add_softmax(net.input("x", x)))
    e = np.exp(x)
    np.testing.assert_allclose(net.run(x=x)["out"], e / e.sum(axis=1, keepdims=True), rtol=1e-6)


def test_normalization_and_refused_groups():
    x = randn(2, 3, 8)
    scale, bias = randn(1, 1, 8), randn(1, 1, 8)
    net = Net()
    layer = net.network.add_normalization_v2(net.input("x", x), net.const(scale), net.const(bias), 1 << 2)
    layer.epsilon = 1e-3
    net.out(layer)
    mean = x.mean(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-3) * scale + bias
    np.testing.assert_allclose(net.run(x=x)["out"], expected, rtol=1e-5, atol=1e-5)
    layer.num_groups = 2
    with pytest.raises(ReplayError, match="num_groups = 2"):
        net.run(x=x)


@pytest.mark.parametrize("exclusive, reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumulative(exclusive, reverse):
    x = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    net = Net()
    axis = net.network.add_constant((), trt.Weights(np.array(1, dtype=np.int32))).get_output(0)
    net.out(net.network.add_cumulative(net.input("x", x), axis, trt.CumulativeOperation.SUM, exclusive, reverse))
    expected = np.zeros_like(x)
    for i in range(3):
        for j in range(4):
            js = (range(j, 4) if reverse else range(0, j + 1))
            expected[i, j] = sum(x[i, k] for k in js if not (exclusive and k == j))
    np.testing.assert_array_equal(net.run(x=x)["out"], expected)


# ---- matrix multiply -----------------------------------------------------------------------


@pytest.mark.parametrize("op0, op1", [(a, b) for a in ("NONE", "TRANSPOSE", "VECTOR") for b in ("NONE", "TRANSPOSE", "VECTOR")])
def test_matrix_multiply_operations(op0, op1):
    m, k, n = 3, 4, 5
    shape0 = {"NONE": (2, 1, m, k), "TRANSPOSE": (2, 1, k, m), "VECTOR": (2, 1, k)}[op0]
    shape1 = {"NONE": (1, 6, k, n), "TRANSPOSE": (1, 6, n, k), "VECTOR": (1, 6, k)}[op1]
    a, b = randn(*shape0), randn(*shape1)
    net = Net()
    net.out(net.network.add_matrix_multiply(net.input("a", a), getattr(trt.MatrixOperation, op0),
                                            net.input("b", b), getattr(trt.MatrixOperation, op1)))
    x = {"NONE": a, "TRANSPOSE": np.swapaxes(a, -1, -2), "VECTOR": a[..., None, :]}[op0]
    y = {"NONE": b, "TRANSPOSE": np.swapaxes(b, -1, -2), "VECTOR": b[..., :, None]}[op1]
    expected = np.matmul(x.astype(np.float64), y)
    if op1 == "VECTOR":
        expected = expected[..., 0]
    if op0 == "VECTOR":
        expected = expected[..., 0] if op1 == "VECTOR" else expected[..., 0, :]
    assert tuple(net.network.get_output(0).shape) == expected.shape
    np.testing.assert_allclose(net.run(a=a, b=b)["out"], expected, rtol=1e-5, atol=1e-5)


# ---- cast, constant, concatenation, shape, fill, squeeze ----------------------------------


def test_cast():
    x = np.array([1.2, 6.7, 0.0, 3.0], dtype=np.float32)
    net = Net()
    inp = net.input("x", x)
    net.out(net.network.add_cast(inp, trt.int32), "i")
    net.out(net.network.add_cast(inp, trt.bool), "b")
    net.out(net.network.add_cast(inp, trt.float16), "h")
    out = net.run(x=x)
    np.testing.assert_array_equal(out["i"], [1, 6, 0, 3])  # the Cast operator page: truncation
    np.testing.assert_array_equal(out["b"], [True, True, False, True])
    np.testing.assert_array_equal(out["h"], x.astype(np.float16))
    with pytest.raises(ReplayError, match="negative non-integer"):
        net.run(x=np.array([-1.5, 0, 0, 0], dtype=np.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool])
def test_constant_dtypes(dtype):
    values = (torch.arange(6) % 3).to(dtype).reshape(2, 3)
    net = Net()
    net.keep.append(values)
    trt_dtype = {torch.float32: trt.float32, torch.float16: trt.float16, torch.bfloat16: trt.bfloat16,
                 torch.int32: trt.int32, torch.int64: trt.int64, torch.bool: trt.bool}[dtype]
    net.out(net.network.add_constant((2, 3), trt.Weights(trt_dtype, values.data_ptr(), 6)))
    out = replay_network(net.network, {})["out"]
    assert out.dtype == dtype
    assert torch.equal(out, values)


def test_concatenation_shape_fill_linspace():
    x, y = randn(2, 1), randn(2, 3)
    net = Net()
    ix, iy = net.input("x", x), net.input("y", y)
    cat = net.network.add_concatenation([ix, iy, ix])
    cat.axis = 1
    net.out(cat, "cat")
    net.out(net.network.add_shape(iy), "shape")
    static = net.network.add_fill((5,), trt.FillOperation.LINSPACE, trt.int32)
    static.alpha, static.beta = 2, 3
    net.out(static, "static")
    dynamic = net.network.add_fill((0, 0), trt.FillOperation.LINSPACE, trt.float32)
    dynamic.set_input(0, net.const(np.array([3, 4], dtype=np.int64)))
    dynamic.set_input(1, net.const(np.array(1.0, dtype=np.float32)))
    dynamic.set_input(2, net.const(np.array([100.0, 10.0], dtype=np.float32)))
    net.out(dynamic, "dynamic")
    out = net.run(x=x, y=y)
    np.testing.assert_array_equal(out["cat"], np.concatenate([x, y, x], axis=1))
    np.testing.assert_array_equal(out["shape"], [2, 3])
    np.testing.assert_array_equal(out["static"], [2, 5, 8, 11, 14])
    # NvInfer.h FillOperation::kLINSPACE example (alpha 1, beta [100, 10])
    np.testing.assert_array_equal(out["dynamic"], [[1, 11, 21, 31], [101, 111, 121, 131], [201, 211, 221, 231]])


def test_random_fill_is_refused():
    net = Net()
    net.out(net.network.add_fill((3,), trt.FillOperation.RANDOM_UNIFORM, trt.float32))
    with pytest.raises(ReplayError, match="operation = FillOperation.RANDOM_UNIFORM"):
        net.run()


def test_squeeze_unsqueeze_identity():
    x = randn(1, 3, 1, 2)
    net = Net()
    inp = net.input("x", x)
    squeezed = net.network.add_squeeze(inp, net.const(np.array([0, -2], dtype=np.int64))).get_output(0)
    net.out(squeezed, "squeezed")
    net.out(net.network.add_unsqueeze(squeezed, net.const(np.array([-1, 1], dtype=np.int64))), "unsqueezed")
    net.out(net.network.add_identity(inp), "identity")
    out = net.run(x=x)
    np.testing.assert_array_equal(out["squeezed"], x.reshape(3, 2))
    np.testing.assert_array_equal(out["unsqueezed"], x.reshape(3, 1, 2, 1))
    np.testing.assert_array_equal(out["identity"], x)


def test_einsum_and_assertion():
    a, b = randn(2, 3), randn(3, 4)
    net = Net()
    ia, ib = net.input("a", a), net.input("b", b)
    net.out(net.network.add_einsum([ia, ib], "ij,jk->ki"))
    bounded = net.network.add_elementwise(ia, net.const(np.full((1, 1), -100, np.float32)), trt.ElementWiseOperation.GREATER)
    net.network.add_assertion(bounded.get_output(0), "a > -100")
    np.testing.assert_allclose(net.run(a=a, b=b)["out"], (a @ b).T, rtol=1e-5, atol=1e-6)
    with pytest.raises(ReplayError, match="assertion failed: a > -100"):
        net.run(a=a - 1000, b=b)  # the assertion runs although no output depends on it


# ---- attention, rotary embedding, KV-cache update -----------------------------------------


def _numpy_attention(q, k, v, allowed):
    """Plain attention of one sequence: q [Hq, Sq, D], k/v [Hkv, Skv, D], allowed [Sq, Skv]."""
    group = q.shape[0] // k.shape[0]
    out = np.zeros(q.shape, np.float64)
    for h in range(q.shape[0]):
        scores = q[h] @ k[h // group].T
        scores = np.where(allowed, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        out[h] = (p / p.sum(-1, keepdims=True)) @ v[h // group]
    return out


@pytest.mark.parametrize("causal", ["NONE", "UPPER_LEFT", "LOWER_RIGHT"])
def test_attention_padded_gqa(causal):
    q, k, v = randn(2, 4, 3, 8), randn(2, 2, 5, 8), randn(2, 2, 5, 8)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, getattr(trt.CausalMaskKind, causal))
    att.decomposable = True
    net.out(att)
    rows, cols = np.arange(3)[:, None], np.arange(5)[None, :]
    allowed = {"NONE": np.ones((3, 5), bool), "UPPER_LEFT": cols <= rows, "LOWER_RIGHT": cols <= rows + 2}[causal]
    expected = np.stack([_numpy_attention(q[b], k[b], v[b], allowed) for b in range(2)])
    np.testing.assert_allclose(net.run(q=q, k=k, v=v)["out"], expected, rtol=1e-5, atol=1e-5)
    assert net.builds()


def test_attention_padded_key_value_lengths():
    q, k, v = randn(2, 2, 3, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4)
    lengths = np.array([5, 2], dtype=np.int32)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.NONE)
    att.key_value_lengths = net.input("lengths", lengths)
    net.out(att)
    out = net.run(q=q, k=k, v=v, lengths=lengths)["out"]
    for b in range(2):
        allowed = np.broadcast_to(np.arange(5)[None, :] < lengths[b], (3, 5))
        np.testing.assert_allclose(out[b], _numpy_attention(q[b], k[b], v[b], allowed), rtol=1e-5, atol=1e-5)
    att.causal_kind = trt.CausalMaskKind.LOWER_RIGHT
    with pytest.raises(ReplayError, match="LOWER_RIGHT"):
        net.run(q=q, k=k, v=v, lengths=lengths)


@pytest.mark.parametrize("kind", ["bool", "add"])
def test_attention_masks(kind):
    q, k, v = randn(1, 2, 3, 4), randn(1, 2, 3, 4), randn(1, 2, 3, 4)
    allowed = np.array([[True, False, True], [True, True, False], [False, True, True]])
    mask = allowed[None, None] if kind == "bool" else np.where(allowed, 0, -1e9).astype(np.float32)[None, None]
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.NONE)
    att.mask = net.input("mask", mask)
    net.out(att)
    np.testing.assert_allclose(net.run(q=q, k=k, v=v, mask=mask)["out"][0], _numpy_attention(q[0], k[0], v[0], allowed), rtol=1e-5, atol=1e-5)


def test_attention_packed_sequences():
    q_len, kv_len = [2, 1, 4], [3, 5, 4]
    q, k, v = randn(sum(q_len), 4, 8), randn(sum(kv_len), 2, 8), randn(sum(kv_len), 2, 8)
    q_cum, kv_cum = np.cumsum([0] + q_len).astype(np.int32), np.cumsum([0] + kv_len).astype(np.int32)
    net = Net()
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v),
                                       trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.LOWER_RIGHT)
    att.query_form = trt.AttentionIOForm.PACKED_NHD
    att.key_value_form = trt.AttentionIOForm.PACKED_NHD
    att.query_lengths = net.input("ql", q_cum)
    att.key_value_lengths = net.input("kl", kv_cum)
    net.out(att)
    out = net.run(q=q, k=k, v=v, ql=q_cum, kl=kv_cum)["out"]
    for b in range(3):
        sq, skv = q_len[b], kv_len[b]
        allowed = np.arange(skv)[None, :] <= np.arange(sq)[:, None] + (skv - sq)
        qs, ks = slice(q_cum[b], q_cum[b + 1]), slice(kv_cum[b], kv_cum[b + 1])
        expected = _numpy_attention(q[qs].transpose(1, 0, 2), k[ks].transpose(1, 0, 2), v[ks].transpose(1, 0, 2), allowed)
        np.testing.assert_allclose(out[qs], expected.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interleaved, rotary_dim, positions", [(False, 0, False), (True, 0, False), (False, 4, True), (True, 4, True)])
def test_rotary_embedding(interleaved, rotary_dim, positions):
    b, h, s, d = 2, 3, 5, 8
    r = rotary_dim or d
    x = randn(b, h, s, d)
    angles = rng.uniform(-3, 3, size=(7 if positions else b, s if not positions else r // 2))
    if not positions:
        angles = rng.uniform(-3, 3, size=(b, s, r // 2))
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    pos = rng.integers(0, 7, size=(b, s)).astype(np.int64)
    net = Net()
    layer = net.network.add_rotary_embedding(net.input("x", x), net.input("cos", cos), net.input("sin", sin), interleaved, rotary_dim)
    if positions:
        layer.set_input(3, net.input("pos", pos))
    net.out(layer)
    feed = dict(x=x, cos=cos, sin=sin, **({"pos": pos} if positions else {}))
    # RoPE as complex rotation: pair (a, b) is a + ib, multiplied by e^(i angle)
    theta = angles[pos] if positions else angles  # [b, s, r/2]
    first = x[..., 0:r:2] if interleaved else x[..., : r // 2]
    second = x[..., 1:r:2] if interleaved else x[..., r // 2 : r]
    z = (first + 1j * second) * np.exp(1j * theta.astype(np.float32))[:, None]
    expected = x.copy()
    if interleaved:
        expected[..., 0:r:2], expected[..., 1:r:2] = z.real, z.imag
    else:
        expected[..., : r // 2], expected[..., r // 2 : r] = z.real, z.imag
    np.testing.assert_allclose(net.run(**feed)["out"], expected, rtol=1e-5, atol=1e-5)


def test_kv_cache_update_in_place_padded_and_packed():
    cache = np.zeros((2, 3, 6, 4), np.float32)
    update = randn(2, 3, 2, 4)
    write = np.array([1, 4], dtype=np.int32)
    net = Net()
    layer = net.network.add_kv_cache_update(net.input("cache", cache), net.input("update", update), net.input("write", write), trt.KVCacheMode.LINEAR)
    net.out(layer)
    assert net.builds()
    cache_t = torch.from_numpy(cache.copy())
    out = replay_network(net.network, {"cache": cache_t, "update": torch.from_numpy(update), "write": torch.from_numpy(write)})["out"]
    expected = cache.copy()
    expected[0, :, 1:3], expected[1, :, 4:6] = update[0], update[1]
    assert out is cache_t  # the engine updates the cache in place
    np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(ReplayError, match="drops such updates silently"):
        replay_network(net.network, {"cache": cache_t, "update": torch.from_numpy(update), "write": torch.tensor([0, 5], dtype=torch.int32)})

    packed = randn(5, 3, 4)  # sequences of 2 and 3 tokens
    lengths = np.array([0, 2, 5], dtype=np.int32)
    net = Net()
    layer = net.network.add_kv_cache_update(net.input("cache", cache), net.input("update", packed), net.input("write", write), trt.KVCacheMode.LINEAR)
    layer.update_form = trt.AttentionIOForm.PACKED_NHD
    layer.update_lengths = net.input("lengths", lengths)
    net.out(layer)
    out = net.run(cache=cache, update=packed, write=np.array([0, 3], np.int32), lengths=lengths)["out"]
    expected = cache.copy()
    expected[0, :, 0:2] = packed[0:2].transpose(1, 0, 2)
    expected[1, :, 3:6] = packed[2:5].transpose(1, 0, 2)
    np.testing.assert_array_equal(out, expected)


# ---- plugins (test double: TensorRT-RTX has no plugin layers or TensorRT-LLM plugins) ----


def test_gpt_attention_plugin_maps_to_the_reference_op():
    from ditto.ops.kv_cache import unregister_pool

    rotary = 8
    fields = plugin_fields(2, rotary)  # PositionEmbeddingType.rope_gpt_neox
    positions = np.arange(16)[:, None] * (10000.0 ** (-np.arange(0, rotary, 2) / rotary))[None]
    cos, sin = np.cos(positions).astype(np.float32), np.sin(positions).astype(np.float32)
    plugin_table = np.stack([cos, sin], axis=-1).reshape(1, -1)  # TensorRT-LLM: a (cos, sin) pair per frequency
    reference_table = np.concatenate([cos, sin], axis=-1)  # ditto's op: all cos, then all sin
    qkv = torch.from_numpy(randn(sum(LENGTHS), (HEADS + 2 * KV_HEADS) * HEAD_SIZE))

    def inputs(pool, table):
        return plugin_inputs(pool, qkv, {"rotary_inv_freq": torch.zeros(rotary // 2), "rotary_cos_sin": torch.from_numpy(table)})

    pools = [new_pool() for _ in range(2)]
    try:
        feed = inputs(pools[0], plugin_table)
        replayed = REPLAYS["PLUGIN_V2"].fn(gpt_attention_call(fields, list(feed.values())))
        feed = inputs(pools[1], reference_table)
        kwargs = {k: fields[k] for k in OP_FIELDS}
        expected = torch.ops.ditto.gpt_attention(**feed, **kwargs, position_embedding_type="rope_gpt_neox",
                                                 rotary_embedding_scale_type="none", sliding_window=16)
        assert torch.equal(replayed, expected)
        assert torch.equal(pools[0], pools[1])  # the same K/V written into the cache

        for bad, match in (({"paged_kv_cache": 0}, "paged_kv_cache = 0"), ({"new_field": 1}, "new_field")):
            with pytest.raises(ReplayError, match=match):
                REPLAYS["PLUGIN_V2"].fn(gpt_attention_call({**fields, **bad}, list(feed.values())))
        with pytest.raises(ReplayError, match="plugin_fields"):
            REPLAYS["PLUGIN_V2"].fn(gpt_attention_call(None, list(feed.values())))
    finally:
        for pool in pools:
            unregister_pool(pool)


# ---- what replay refuses -----------------------------------------------------------------


def test_unknown_layer_type_names_the_layer():
    x = randn(2, 2)
    net = Net()
    layer = net.network.add_non_zero(net.input("x", x))  # no converter emits NON_ZERO
    layer.name = "my_non_zero"
    net.out(layer)
    with pytest.raises(ReplayError, match="layer 'my_non_zero' has type NON_ZERO, which replay does not compute"):
        net.run(x=x)


def test_unknown_enum_value_names_the_attribute():
    x = randn(2, 2)
    net = Net()
    layer = net.network.add_reduce(net.input("x", x), trt.ReduceOperation.SUM, 1, False)
    layer.op = trt.ReduceOperation.NONE  # a collective's no-op, not a reduction
    layer.name = "my_reduce"
    net.out(layer)
    with pytest.raises(ReplayError, match=r"'my_reduce' \(REDUCE\): op = ReduceOperation.NONE"):
        net.run(x=x)


def test_an_attribute_replay_does_not_interpret_is_refused(monkeypatch):
    # as if a newer TensorRT had added `zero_is_placeholder` to IShuffleLayer
    original = REPLAYS["SHUFFLE"]
    monkeypatch.setitem(REPLAYS, "SHUFFLE", Replay(original.fn, original.reads - {"zero_is_placeholder"}))
    x = randn(2, 2)
    net = Net()
    net.out(net.network.add_shuffle(net.input("x", x)))
    with pytest.raises(ReplayError, match="zero_is_placeholder"):
        net.run(x=x)


def test_a_wrong_replay_is_caught_by_tensorrt_shape_inference(monkeypatch):
    # a replay reading the permutation the other way round disagrees with the network's shapes
    original = REPLAYS["SHUFFLE"]

    def inverse_permutation(call: LayerCall):
        x = call.input(0)
        order = list(call.attr("first_transpose"))[: x.dim()]
        return x.permute([order.index(i) for i in range(x.dim())])

    monkeypatch.setitem(REPLAYS, "SHUFFLE", Replay(inverse_permutation, original.reads))
    x = randn(2, 3, 5)
    net = Net()
    layer = net.network.add_shuffle(net.input("x", x))
    layer.first_transpose = (1, 2, 0)
    net.out(layer)
    with pytest.raises(ReplayError, match=r"shape \(5, 2, 3\), the network declares \(3, 5, 2\)"):
        net.run(x=x)


def test_inputs_that_do_not_fit_the_network():
    x = randn(2, 3)
    net = Net()
    net.out(net.network.add_identity(net.input("x", x)))
    with pytest.raises(DittoError, match="missing \\['x'\\]"):
        net.run()
    with pytest.raises(DittoError, match="the network takes torch.float32"):
        net.run(x=x.astype(np.float16))
    with pytest.raises(DittoError, match="closest: out"):
        net.run(["outt"], x=x)


def test_any_tensor_can_be_read():
    x = randn(2, 3)
    net = Net()
    relu = net.network.add_activation(net.input("x", x), trt.ActivationType.RELU)
    relu.get_output(0).name = "inner"
    net.out(net.network.add_unary(relu.get_output(0), trt.UnaryOperation.NEG))
    out = net.run(["inner", "out"], x=x)
    np.testing.assert_array_equal(out["inner"], np.maximum(x, 0))
    np.testing.assert_array_equal(out["out"], -np.maximum(x, 0))
