"""Replay of CAST, CONSTANT, CONCATENATION, SHAPE, FILL, SQUEEZE, EINSUM and ASSERTION, against numpy
written from TensorRT's documentation of each layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ditto.replay import ReplayError, replay_network
from tests.replay._helpers import (
    Net,
    randn,
    trt,
)

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
