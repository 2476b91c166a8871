"""Replay of whole networks: layers run after the producers of their inputs; what replay refuses, naming the layer."""

from __future__ import annotations

import numpy as np
import pytest

from ditto.errors import DittoError
from ditto.replay import ReplayError
from ditto.replay.registry import REPLAYS, LayerCall, Replay
from tests.replay._helpers import (
    Net,
    randn,
    trt,
)

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


def test_layers_run_after_the_producers_of_inputs_set_later():
    x = randn(2, 6)
    net = Net()
    layer = net.network.add_shuffle(net.input("x", x))  # created before the layers making its dims
    shape = net.network.add_shape(layer.get_input(0)).get_output(0)
    reversed_shape = net.network.add_gather(shape, net.const(np.array([1, 0], dtype=np.int32)), 0)
    layer.set_input(1, reversed_shape.get_output(0))
    net.out(layer)
    np.testing.assert_array_equal(net.run(x=x)["out"], x.reshape(6, 2))
