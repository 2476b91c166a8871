"""Replay of MATRIX_MULTIPLY, against numpy written from TensorRT's documentation of each layer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.replay._helpers import (
    Net,
    randn,
    trt,
)

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
