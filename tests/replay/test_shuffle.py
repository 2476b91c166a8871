"""Replay of SHUFFLE (first transpose, reshape, second transpose), against numpy written from TensorRT's documentation of each layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ditto.replay import ReplayError
from tests.replay._helpers import (
    FAST,
    Net,
    randn,
)

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
