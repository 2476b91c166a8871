"""Replay of REDUCE, SOFTMAX, NORMALIZATION and CUMULATIVE, against numpy written from TensorRT's documentation of each layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ditto.replay import ReplayError
from tests.replay._helpers import (
    FAST,
    Net,
    randn,
    trt,
)

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
