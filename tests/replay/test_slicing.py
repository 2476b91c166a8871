"""Replay of SLICE, GATHER and SCATTER, against numpy written from TensorRT's documentation of each layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ditto.replay import ReplayError
from tests.replay._helpers import (
    FAST,
    Net,
    randn,
    rng,
    trt,
)

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


def _scatter_chain(net: Net, data):
    """data -> scatter rows 0 -> scatter rows 2 (-> 'out'); the chain of a step's KV writes."""
    first = net.network.add_scatter(data, net.const(np.array([[0]], dtype=np.int32)),
                                    net.const(np.full((1, 3), 5, np.float32)), trt.ScatterMode.ND)
    second = net.network.add_scatter(first.get_output(0), net.const(np.array([[2]], dtype=np.int32)),
                                     net.const(np.full((1, 3), 7, np.float32)), trt.ScatterMode.ND)
    return first, second


def test_scatter_writes_in_place_only_into_dead_undonated_free_values():
    """A scatter whose data is dead after it writes in place (no copy of the KV pool per layer);
    a caller's input is written only when donated; a value still read later is never written."""
    from ditto.replay.network import ReplayPlan

    data = randn(4, 3)
    expected = data.copy()
    expected[0], expected[2] = 5, 7
    net = Net()
    first, second = _scatter_chain(net, net.input("data", data))
    net.out(second)
    for donated in (set(), {"data"}):
        given = torch.from_numpy(data.copy())
        out = ReplayPlan(net.network, donated=donated).run({"data": given})["out"]
        np.testing.assert_array_equal(out.numpy(), expected)
        # the second scatter's data (the first's output) is dead: written in place either way
        assert (out.data_ptr() == given.data_ptr()) == bool(donated)
        np.testing.assert_array_equal(given.numpy(), expected if donated else data)

    # the first scatter's output is read after the second (a second network output): kept intact
    net = Net()
    first, second = _scatter_chain(net, net.input("data", data))
    net.out(second)
    net.out(first, "first")
    outs = ReplayPlan(net.network, donated={"data"}).run({"data": torch.from_numpy(data.copy())})
    np.testing.assert_array_equal(outs["out"].numpy(), expected)
    assert outs["first"][2].tolist() == data[2].tolist()

    # a view of the data that lives on (a reshape read after the scatter) is not written through
    net = Net()
    inp = net.input("data", data)
    view = net.shuffle(inp, (0, 1), (12,), (0,))
    first, second = _scatter_chain(net, inp)
    net.out(second)
    net.out(view, "flat")
    outs = ReplayPlan(net.network, donated={"data"}).run({"data": torch.from_numpy(data.copy())})
    np.testing.assert_array_equal(outs["flat"].numpy(), data.reshape(-1))
    np.testing.assert_array_equal(outs["out"].numpy(), expected)
