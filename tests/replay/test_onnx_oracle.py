"""An independent oracle for replay: the same computation as a TensorRT network (replayed by
`ditto.replay`) and as an ONNX graph run by onnxruntime, on random inputs and shapes.

tests/replay/test_<kind>.py check replay against expectations written by the same hands;
here the expectation comes from another runtime, written by other people from the ONNX
operator specifications. Each TensorRT layer kind replay computes is paired with the ONNX
operator(s) that define the same function:

| TensorRT layer | ONNX |
| --- | --- |
| ELEMENTWISE | Add Mul Max Min Sub Div Pow And Or Xor Equal Greater Less; FLOOR_DIV = Floor(Div) |
| UNARY | Exp Log Sqrt Reciprocal Abs Neg Sin Cos Tan Sinh Cosh Asin Acos Atan Asinh Acosh Atanh Ceil Floor Erf Not Sign Round IsInf IsNaN |
| ACTIVATION | Relu Sigmoid Tanh LeakyRelu Elu Selu Softsign Softplus Clip HardSigmoid ThresholdedRelu Gelu; SCALED_TANH = Mul(Tanh(Mul)) |
| REDUCE, SOFTMAX, NORMALIZATION, CUMULATIVE | ReduceSum/Prod/Max/Min/Mean, Softmax, LayerNormalization, CumSum |
| MATRIX_MULTIPLY, EINSUM | MatMul (+ Transpose, Unsqueeze/Squeeze for VECTOR), Einsum |
| SHUFFLE, SLICE | Transpose + Reshape + Transpose; Slice, and Pad (wrap, edge, reflect, constant) + Slice for WRAP, CLAMP, REFLECT, FILL |
| GATHER, SCATTER | Gather, GatherElements, GatherND; ScatterElements, ScatterND |
| TOPK | TopK (values, and indices cast to TensorRT's index type) |
| CONCATENATION, SELECT, CAST, CONSTANT, IDENTITY | Concat, Where, Cast, Constant, Identity |
| SHAPE, SQUEEZE, UNSQUEEZE, FILL | Shape, Squeeze, Unsqueeze, Range (1-D LINSPACE) |
| ROTARY_EMBEDDING, ATTENTION_INPUT/OUTPUT, KV_CACHE_UPDATE | RotaryEmbedding (23), Attention (23, scale 1), TensorScatter (24) |

Without an ONNX counterpart (checked in test_replay_layers.py against numpy instead):
- ASSERTION: ONNX has no assertion operator.
- PLUGIN_V2 / PLUGIN_V3: a plugin computes what its vendor kernel computes; ONNX knows no
  TensorRT-LLM GPTAttention (its reference op is checked in test_ops_reference.py).
- the packed (PACKED_NHD) forms of attention and of the KV-cache update: ONNX's Attention
  and TensorScatter take padded [batch, heads, seq, dim] tensors only.
- GATHER DEFAULT with one elementwise dim: no ONNX gather takes a per-batch axis gather.
- out-of-bounds gather indices (replay: zeros): ONNX declares them an error.
- FILL LINSPACE of rank > 1: ONNX Range is 1-D.
- tied values inside a TOPK selection: replay refuses them (TensorRT leaves their order open).

Tolerances: data movement, integers and booleans must match exactly; float32 arithmetic
1e-5 relative + 1e-5 absolute (onnxruntime's vectorised exp/log/erf/tanh differ from torch's
by a few ulps; any semantic slip is orders of magnitude larger). Hypothesis runs derandomized,
so a run is reproducible (the mutation suite relies on it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.needs_tensorrt import tensorrt_or_skip
from tests.replay._helpers import TRT_TYPES, Net

trt = tensorrt_or_skip("tensorrt_rtx")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[test]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[test]')")
from onnx import TensorProto, helper  # noqa: E402

EXAMPLES = settings(max_examples=12, deadline=None, derandomize=True, database=None)
RTOL = ATOL = 1e-5
_NP_TYPES = {trt.float32: np.float32, trt.float16: np.float16, trt.int32: np.int32, trt.int64: np.int64, trt.bool: np.bool_}


def onnx_run(nodes: list, feeds: dict[str, np.ndarray], outputs: dict[str, type], opset: int = 21,
             constants: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Run an ONNX graph of `nodes` in onnxruntime; `outputs`: name -> numpy dtype."""
    constants = constants or {}
    graph = helper.make_graph(
        nodes,
        "oracle",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), None) for n, t in outputs.items()],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(outputs, session.run(list(outputs), feeds)))


def agree(net: Net, nodes: list, opset: int = 21, constants: dict | None = None, exact: bool | None = None) -> None:
    """Replay `net` and run `nodes` on the same feeds; every marked output must agree."""
    names = [net.network.get_output(i).name for i in range(net.network.num_outputs)]
    types = {n: _NP_TYPES[net.network.get_output(i).dtype] for i, n in enumerate(names)}
    replayed = net.replay()
    expected = onnx_run(nodes, net.feeds, types, opset, constants)
    for name in names:
        got, want = replayed[name], expected[name]
        assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, want.shape, got.dtype, want.dtype)
        if exact or (exact is None and not np.issubdtype(got.dtype, np.floating)):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=name)


def shapes(draw, rank_min=1, rank_max=4, dim_max=5):
    rank = draw(st.integers(rank_min, rank_max))
    return tuple(draw(st.lists(st.integers(1, dim_max), min_size=rank, max_size=rank)))


def broadcast_partner(draw, shape):
    """A shape of the same rank whose every dim is the other's or 1 (TensorRT broadcasting)."""
    return tuple(d if draw(st.booleans()) else 1 for d in shape)


def floats(seed: int, shape, low=-3.0, high=3.0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


# ---- elementwise ---------------------------------------------------------------------------

_BINARY = {  # TensorRT op -> (ONNX op, how to draw the inputs)
    "SUM": "Add", "PROD": "Mul", "MAX": "Max", "MIN": "Min", "SUB": "Sub", "DIV": "Div", "POW": "Pow",
    "EQUAL": "Equal", "GREATER": "Greater", "LESS": "Less", "AND": "And", "OR": "Or", "XOR": "Xor", "FLOOR_DIV": None,
}


def _binary_inputs(op: str, seed: int, sa, sb, integer: bool):
    rng = np.random.default_rng(seed)
    if op in ("AND", "OR", "XOR"):
        return rng.integers(0, 2, sa).astype(bool), rng.integers(0, 2, sb).astype(bool)
    if integer:
        a, b = rng.integers(0 if op in ("DIV", "FLOOR_DIV") else -9, 10, sa), rng.integers(1, 5, sb)
        if op not in ("DIV", "FLOOR_DIV", "POW"):
            b = b * rng.choice([-1, 1], sb)
        return a.astype(np.int32), b.astype(np.int32)
    if op in ("EQUAL", "GREATER", "LESS"):  # small integers as floats: many ties
        return rng.integers(-2, 3, sa).astype(np.float32), rng.integers(-2, 3, sb).astype(np.float32)
    a = rng.uniform(-3, 3, sa).astype(np.float32)
    b = rng.uniform(0.5, 2, sb).astype(np.float32) * rng.choice([-1, 1], sb).astype(np.float32)
    if op == "POW":
        a = np.abs(a) + 0.1
    return a, b


@pytest.mark.parametrize("op", sorted(_BINARY))
@EXAMPLES
@given(data=st.data())
def test_elementwise(op, data):
    sa = data.draw(st.composite(shapes)())
    sb = data.draw(st.composite(broadcast_partner)(sa))
    if data.draw(st.booleans()):
        sa, sb = sb, sa
    integer = op not in ("AND", "OR", "XOR", "POW") and data.draw(st.booleans())
    a, b = _binary_inputs(op, data.draw(st.integers(0, 2**16)), sa, sb, integer)
    net = Net(output="y")
    net.out(net.network.add_elementwise(net.input("a", a), net.input("b", b), getattr(trt.ElementWiseOperation, op)))
    if op == "FLOOR_DIV":
        last = helper.make_node("Identity" if integer else "Floor", ["q"], ["y"])
        nodes = [helper.make_node("Div", ["a", "b"], ["q"]), last]
    else:
        nodes = [helper.make_node(_BINARY[op], ["a", "b"], ["y"])]
    agree(net, nodes)


# ---- unary ---------------------------------------------------------------------------------

_UNARY = {  # TensorRT op -> (ONNX op, low, high)
    "EXP": ("Exp", -3, 3), "LOG": ("Log", 0.05, 5), "SQRT": ("Sqrt", 0, 5), "RECIP": ("Reciprocal", 0.2, 3),
    "ABS": ("Abs", -3, 3), "NEG": ("Neg", -3, 3), "SIN": ("Sin", -4, 4), "COS": ("Cos", -4, 4), "TAN": ("Tan", -1.2, 1.2),
    "SINH": ("Sinh", -2, 2), "COSH": ("Cosh", -2, 2), "ASIN": ("Asin", -0.99, 0.99), "ACOS": ("Acos", -0.99, 0.99),
    "ATAN": ("Atan", -4, 4), "ASINH": ("Asinh", -4, 4), "ACOSH": ("Acosh", 1, 4), "ATANH": ("Atanh", -0.95, 0.95),
    "CEIL": ("Ceil", -3, 3), "FLOOR": ("Floor", -3, 3), "ERF": ("Erf", -2, 2), "SIGN": ("Sign", -2, 2),
    "ROUND": ("Round", -3, 3), "ISINF": ("IsInf", -3, 3), "ISNAN": ("IsNaN", -3, 3), "NOT": ("Not", 0, 1),
}


@pytest.mark.parametrize("op", sorted(_UNARY))
@EXAMPLES
@given(shape=st.composite(shapes)(), seed=st.integers(0, 2**16))
def test_unary(op, shape, seed):
    onnx_op, low, high = _UNARY[op]
    rng = np.random.default_rng(seed)
    if op == "NOT":
        x = rng.integers(0, 2, shape).astype(bool)
    elif op in ("ROUND", "SIGN", "CEIL", "FLOOR"):
        x = (rng.integers(-6, 7, shape) / 2).astype(np.float32)  # halves: ties, zeros, integers
        x = x + rng.choice([0, 0.1, -0.1], shape).astype(np.float32) * (op != "ROUND")
    else:
        x = rng.uniform(low, high, shape).astype(np.float32)
    if op in ("ISINF", "ISNAN"):
        x.reshape(-1)[rng.integers(0, x.size, 2)] = [np.inf, -np.inf] if op == "ISINF" else [np.nan, np.inf]
    if op in ("ABS", "NEG", "SIGN") and rng.integers(0, 2):
        x = np.round(x * 3).astype(np.int32)
    net = Net(output="y")
    net.out(net.network.add_unary(net.input("x", x), getattr(trt.UnaryOperation, op)))
    agree(net, [helper.make_node(onnx_op, ["x"], ["y"])])


# ---- activations ---------------------------------------------------------------------------


def _activation_nodes(kind: str, alpha: float, beta: float) -> tuple[list, dict]:
    node = helper.make_node
    simple = {"RELU": "Relu", "SIGMOID": "Sigmoid", "TANH": "Tanh", "SOFTSIGN": "Softsign"}
    if kind in simple:
        return [node(simple[kind], ["x"], ["y"])], {}
    if kind == "LEAKY_RELU":
        return [node("LeakyRelu", ["x"], ["y"], alpha=alpha)], {}
    if kind == "ELU":
        return [node("Elu", ["x"], ["y"], alpha=alpha)], {}
    if kind == "SELU":
        return [node("Selu", ["x"], ["y"], alpha=alpha, gamma=beta)], {}
    if kind == "HARD_SIGMOID":
        return [node("HardSigmoid", ["x"], ["y"], alpha=alpha, beta=beta)], {}
    if kind == "THRESHOLDED_RELU":
        return [node("ThresholdedRelu", ["x"], ["y"], alpha=alpha)], {}
    if kind == "CLIP":
        return [node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": np.float32(alpha), "hi": np.float32(beta)}
    if kind == "GELU_ERF":
        return [node("Gelu", ["x"], ["y"])], {}
    if kind == "GELU_TANH":
        return [node("Gelu", ["x"], ["y"], approximate="tanh")], {}
    scales = {"a": np.float32(alpha), "b": np.float32(beta)}
    if kind == "SOFTPLUS":  # alpha * log(1 + exp(beta * x))
        return [node("Mul", ["x", "b"], ["bx"]), node("Softplus", ["bx"], ["s"]), node("Mul", ["s", "a"], ["y"])], scales
    if kind == "SCALED_TANH":  # alpha * tanh(beta * x)
        return [node("Mul", ["x", "b"], ["bx"]), node("Tanh", ["bx"], ["t"]), node("Mul", ["t", "a"], ["y"])], scales
    raise AssertionError(kind)


_ACTIVATIONS = ["RELU", "SIGMOID", "TANH", "LEAKY_RELU", "ELU", "SELU", "SOFTSIGN", "SOFTPLUS", "CLIP", "HARD_SIGMOID",
                "SCALED_TANH", "THRESHOLDED_RELU", "GELU_ERF", "GELU_TANH"]


@pytest.mark.parametrize("kind", _ACTIVATIONS)
@EXAMPLES
@given(shape=st.composite(shapes)(), seed=st.integers(0, 2**16), alpha=st.floats(0.1, 2.0), beta=st.floats(0.1, 2.0))
def test_activation(kind, shape, seed, alpha, beta):
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    if kind == "CLIP":
        alpha, beta = -alpha, beta
    x = floats(seed, shape, -4, 4)
    net = Net(output="y")
    layer = net.network.add_activation(net.input("x", x), getattr(trt.ActivationType, kind))
    layer.alpha, layer.beta = alpha, beta
    net.out(layer)
    nodes, constants = _activation_nodes(kind, alpha, beta)
    agree(net, nodes, opset=21, constants=constants)


# ---- reductions, softmax, normalization, cumulative ----------------------------------------

_REDUCE = {"SUM": "ReduceSum", "PROD": "ReduceProd", "MAX": "ReduceMax", "MIN": "ReduceMin", "AVG": "ReduceMean"}


@pytest.mark.parametrize("op", sorted(_REDUCE))
@EXAMPLES
@given(data=st.data())
def test_reduce(op, data):
    shape = data.draw(st.composite(shapes)())
    axes = sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    keep = data.draw(st.booleans())
    seed = data.draw(st.integers(0, 2**16))
    integer = op != "AVG" and data.draw(st.booleans())
    x = np.random.default_rng(seed).integers(-3, 4, shape).astype(np.int32) if integer else floats(seed, shape, 0.5, 1.5)
    net = Net(output="y")
    net.out(net.network.add_reduce(net.input("x", x), getattr(trt.ReduceOperation, op), sum(1 << a for a in axes), keep))
    agree(net, [helper.make_node(_REDUCE[op], ["x", "axes"], ["y"], keepdims=int(keep))], opset=18,
          constants={"axes": np.array(axes, np.int64)})


@EXAMPLES
@given(shape=st.composite(lambda draw: shapes(draw, 2, 4))(), seed=st.integers(0, 2**16), data=st.data())
def test_softmax(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = floats(seed, shape, -4, 4)
    net = Net(output="y")
    layer = net.network.add_softmax(net.input("x", x))
    layer.axes = 1 << axis
    net.out(layer)
    agree(net, [helper.make_node("Softmax", ["x"], ["y"], axis=axis)], opset=13)


@EXAMPLES
@given(shape=st.composite(lambda draw: shapes(draw, 2, 4))(), seed=st.integers(0, 2**16), data=st.data())
def test_normalization_over_trailing_axes(shape, seed, data):
    first = data.draw(st.integers(1, len(shape) - 1))  # normalise axes first..rank-1
    epsilon = data.draw(st.sampled_from([1e-5, 1e-2, 0.5]))
    x = floats(seed, shape, -2, 2) + floats(seed + 1, shape[:first] + (1,) * (len(shape) - first), -3, 3)
    scale, bias = floats(seed + 2, shape[first:]), floats(seed + 3, shape[first:])
    net = Net(output="y")
    padded = (1,) * first
    layer = net.network.add_normalization(net.input("x", x), net.const(scale.reshape(padded + scale.shape)),
                                          net.const(bias.reshape(padded + bias.shape)), sum(1 << a for a in range(first, len(shape))))
    layer.epsilon = epsilon
    net.out(layer)
    agree(net, [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=first, epsilon=epsilon)], opset=17,
          constants={"scale": scale, "bias": bias})


@EXAMPLES
@given(shape=st.composite(shapes)(), seed=st.integers(0, 2**16), data=st.data())
def test_cumulative_sum(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    exclusive, reverse = data.draw(st.booleans()), data.draw(st.booleans())
    integer = data.draw(st.booleans())
    x = np.random.default_rng(seed).integers(-5, 6, shape).astype(np.int32) if integer else floats(seed, shape)
    net = Net(output="y")
    net.out(net.network.add_cumulative(net.input("x", x), net.const(np.array(axis, np.int32)), trt.CumulativeOperation.SUM,
                                       exclusive, reverse))
    agree(net, [helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=int(exclusive), reverse=int(reverse))], opset=14,
          constants={"axis": np.array(axis, np.int32)})


# ---- matrix multiply, einsum ---------------------------------------------------------------


@pytest.mark.parametrize("op0", ["NONE", "TRANSPOSE", "VECTOR"])
@pytest.mark.parametrize("op1", ["NONE", "TRANSPOSE", "VECTOR"])
@EXAMPLES
@given(data=st.data())
def test_matrix_multiply(op0, op1, data):
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    batch = data.draw(st.lists(st.integers(1, 3), max_size=2))
    batch_a = [b if data.draw(st.booleans()) else 1 for b in batch]
    batch_b = [b if data.draw(st.booleans()) else 1 for b in batch]
    seed = data.draw(st.integers(0, 2**16))
    a_shape = {"NONE": [m, k], "TRANSPOSE": [k, m], "VECTOR": [k]}[op0]
    b_shape = {"NONE": [k, n], "TRANSPOSE": [n, k], "VECTOR": [k]}[op1]
    a, b = floats(seed, batch_a + a_shape), floats(seed + 1, batch_b + b_shape)
    net = Net(output="y")
    op = trt.MatrixOperation
    net.out(net.network.add_matrix_multiply(net.input("a", a), getattr(op, op0), net.input("b", b), getattr(op, op1)))
    rank_a, rank_b = a.ndim, b.ndim
    node = helper.make_node
    nodes, constants = [], {"m2": np.array([-2], np.int64), "m1": np.array([-1], np.int64)}
    lhs, rhs = "a", "b"
    if op0 == "TRANSPOSE":
        nodes.append(node("Transpose", ["a"], ["at"], perm=list(range(rank_a - 2)) + [rank_a - 1, rank_a - 2]))
        lhs = "at"
    if op0 == "VECTOR":  # [.., K] -> [.., 1, K]
        nodes.append(node("Unsqueeze", ["a", "m2"], ["av"]))
        lhs = "av"
    if op1 == "TRANSPOSE":
        nodes.append(node("Transpose", ["b"], ["bt"], perm=list(range(rank_b - 2)) + [rank_b - 1, rank_b - 2]))
        rhs = "bt"
    if op1 == "VECTOR":  # [.., K] -> [.., K, 1]
        nodes.append(node("Unsqueeze", ["b", "m1"], ["bv"]))
        rhs = "bv"
    nodes.append(node("MatMul", [lhs, rhs], ["p"]))
    squeeze = ([-1] if op1 == "VECTOR" else []) + ([-2] if op0 == "VECTOR" else [])
    if squeeze:
        constants["sq"] = np.array(squeeze, np.int64)
        nodes.append(node("Squeeze", ["p", "sq"], ["y"]))
    else:
        nodes.append(node("Identity", ["p"], ["y"]))
    agree(net, nodes, constants=constants)


@pytest.mark.parametrize("equation, shapes_", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij->ji", [(3, 5)]),
    ("ij,ij->i", [(4, 3), (4, 3)]),
])
def test_einsum(equation, shapes_):
    net = Net(output="y")
    inputs = [net.input(f"x{i}", floats(i, s)) for i, s in enumerate(shapes_)]
    net.out(net.network.add_einsum(inputs, equation))
    agree(net, [helper.make_node("Einsum", [f"x{i}" for i in range(len(shapes_))], ["y"], equation=equation)], opset=12)


# ---- shuffle, slice ------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_shuffle(data):
    shape = data.draw(st.composite(lambda draw: shapes(draw, 2, 4))())
    first = data.draw(st.permutations(range(len(shape))))
    moved = [shape[p] for p in first]
    # reshape: keep the leading dim by 0 (a placeholder), merge the rest by -1, or split it
    reshape = data.draw(st.sampled_from(["merge", "keep_first", "all"]))
    dims = {"merge": [-1], "keep_first": [0, -1], "all": list(moved)}[reshape]
    rank = len(dims) if reshape != "keep_first" else 2
    second = data.draw(st.permutations(range(rank)))
    x = floats(data.draw(st.integers(0, 2**16)), shape)
    net = Net(output="y")
    net.out(net.shuffle(net.input("x", x), first, dims, second))
    node = helper.make_node
    nodes = [node("Transpose", ["x"], ["t"], perm=list(first)), node("Reshape", ["t", "dims"], ["r"]),
             node("Transpose", ["r"], ["y"], perm=list(second))]
    agree(net, nodes, opset=21, constants={"dims": np.array(dims, np.int64)}, exact=True)


_PAD_MODES = {"WRAP": "wrap", "CLAMP": "edge", "REFLECT": "reflect", "FILL": "constant"}


@pytest.mark.parametrize("mode", ["STRICT_BOUNDS", "WRAP", "CLAMP", "REFLECT", "FILL"])
@EXAMPLES
@given(data=st.data())
def test_slice_modes(mode, data):
    shape = data.draw(st.composite(lambda draw: shapes(draw, 1, 3, 6))())
    starts, sizes, strides, before, after = [], [], [], [], []
    for n in shape:
        stride = data.draw(st.integers(1, 3))
        if mode == "STRICT_BOUNDS":
            start = data.draw(st.integers(0, n - 1))
            size = data.draw(st.integers(1, (n - 1 - start) // stride + 1))
        else:  # coordinates reach up to n - 1 past either edge (one reflection)
            reach = max(n - 1, 0) if mode == "REFLECT" else n
            start = data.draw(st.integers(-reach, n - 1))
            size = data.draw(st.integers(1, (n - 1 + reach - start) // stride + 1))
        last = start + (size - 1) * stride
        starts.append(start), sizes.append(size), strides.append(stride)
        before.append(max(0, -start)), after.append(max(0, last - (n - 1)))
    x = floats(data.draw(st.integers(0, 2**16)), shape)
    fill = np.float32(data.draw(st.sampled_from([0.0, 2.5])))
    net = Net(output="y")
    layer = net.network.add_slice(net.input("x", x), tuple(starts), tuple(sizes), tuple(strides))
    layer.mode = getattr(trt.SampleMode, mode)
    if mode == "FILL" and fill:
        layer.set_input(4, net.const(np.array(fill, np.float32)))
    net.out(layer)
    node = helper.make_node
    source, nodes = "x", []
    constants = {}
    if mode != "STRICT_BOUNDS":
        constants.update(pads=np.array(before + after, np.int64), value=np.array(fill, np.float32))
        nodes.append(node("Pad", ["x", "pads", "value"], ["padded"], mode=_PAD_MODES[mode]))
        source = "padded"
    begin = [s + b for s, b in zip(starts, before)]
    end = [b + (size - 1) * st_ + 1 for b, size, st_ in zip(begin, sizes, strides)]
    constants.update(starts=np.array(begin, np.int64), ends=np.array(end, np.int64), steps=np.array(strides, np.int64))
    nodes.append(node("Slice", [source, "starts", "ends", "", "steps"], ["y"]))
    agree(net, nodes, opset=19, constants=constants, exact=True)


def test_slice_with_negative_stride():
    x = floats(0, (4, 6))
    net = Net(output="y")
    net.out(net.network.add_slice(net.input("x", x), (3, 5), (2, 3), (-1, -2)))
    constants = dict(starts=np.array([3, 5], np.int64), ends=np.array([1, 0], np.int64), steps=np.array([-1, -2], np.int64))
    agree(net, [helper.make_node("Slice", ["x", "starts", "ends", "", "steps"], ["y"])], constants=constants, exact=True)


# ---- gather, scatter -----------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_gather_default(data):
    shape = data.draw(st.composite(shapes)())
    axis = data.draw(st.integers(0, len(shape) - 1))
    index_shape = data.draw(st.composite(lambda draw: shapes(draw, 0, 2, 4))())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    n = shape[axis]
    indices = rng.integers(-n, n, index_shape).astype(data.draw(st.sampled_from([np.int32, np.int64])))
    x = floats(data.draw(st.integers(0, 2**16)), shape)
    net = Net(output="y")
    net.out(net.network.add_gather(net.input("x", x), net.input("i", indices), axis))
    agree(net, [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], exact=True)


@EXAMPLES
@given(data=st.data())
def test_gather_element(data):
    shape = data.draw(st.composite(shapes)())
    axis = data.draw(st.integers(0, len(shape) - 1))
    index_shape = tuple(d if i == axis else data.draw(st.integers(1, d)) for i, d in enumerate(shape))
    index_shape = tuple(data.draw(st.integers(1, 4)) if i == axis else d for i, d in enumerate(index_shape))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    indices = rng.integers(-shape[axis], shape[axis], index_shape).astype(np.int32)
    x = floats(data.draw(st.integers(0, 2**16)), shape)
    net = Net(output="y")
    layer = net.network.add_gather_v2(net.input("x", x), net.input("i", indices), trt.GatherMode.ELEMENT)
    layer.axis = axis
    net.out(layer)
    agree(net, [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)], exact=True)


@EXAMPLES
@given(data=st.data())
def test_gather_nd(data):
    shape = data.draw(st.composite(lambda draw: shapes(draw, 1, 4))())
    batch = data.draw(st.integers(0, len(shape) - 1))
    k = data.draw(st.integers(1, len(shape) - batch))
    middle = data.draw(st.lists(st.integers(1, 3), max_size=2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    indexed = shape[batch : batch + k]
    indices = np.stack([rng.integers(-n, n, (*shape[:batch], *middle)) for n in indexed], axis=-1).astype(np.int64)
    x = floats(data.draw(st.integers(0, 2**16)), shape)
    net = Net(output="y")
    layer = net.network.add_gather_v2(net.input("x", x), net.input("i", indices), trt.GatherMode.ND)
    layer.num_elementwise_dims = batch
    net.out(layer)
    agree(net, [helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch)], opset=13, exact=True)


@EXAMPLES
@given(data=st.data())
def test_scatter_element(data):
    shape = data.draw(st.composite(shapes)())
    axis = data.draw(st.integers(0, len(shape) - 1))
    update_shape = tuple(data.draw(st.integers(1, d)) for d in shape)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    # along the axis, each line writes distinct positions (TensorRT leaves repeats undefined)
    order = np.argsort(rng.random((*update_shape[:axis], shape[axis], *update_shape[axis + 1 :])), axis=axis)
    indices = np.take(order, np.arange(update_shape[axis]), axis=axis).astype(np.int32)
    x, updates = floats(1, shape), floats(2, update_shape)
    net = Net(output="y")
    layer = net.network.add_scatter(net.input("x", x), net.input("i", indices), net.input("u", updates), trt.ScatterMode.ELEMENT)
    layer.axis = axis
    net.out(layer)
    agree(net, [helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=axis)], exact=True)


@EXAMPLES
@given(data=st.data())
def test_scatter_nd(data):
    shape = data.draw(st.composite(lambda draw: shapes(draw, 1, 4))())
    k = data.draw(st.integers(1, len(shape)))
    cells = math.prod(shape[:k])
    count = data.draw(st.integers(1, cells))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    flat = rng.permutation(cells)[:count]
    indices = np.stack(np.unravel_index(flat, shape[:k]), axis=-1).astype(np.int32)
    x, updates = floats(1, shape), floats(2, (count, *shape[k:]))
    net = Net(output="y")
    net.out(net.network.add_scatter(net.input("x", x), net.input("i", indices), net.input("u", updates), trt.ScatterMode.ND))
    nodes = [helper.make_node("Cast", ["i"], ["i64"], to=TensorProto.INT64), helper.make_node("ScatterND", ["x", "i64", "u"], ["y"])]
    agree(net, nodes, exact=True)


@pytest.mark.parametrize("op", ["MAX", "MIN"])
@EXAMPLES
@given(data=st.data())
def test_topk(op, data):
    shape = data.draw(st.composite(lambda draw: shapes(draw, 2, 4))())  # TensorRT's TopK takes rank >= 2
    axis = data.draw(st.integers(0, len(shape) - 1))
    k = data.draw(st.integers(1, shape[axis]))
    x = floats(data.draw(st.integers(0, 2**16)), shape)  # distinct values: no ties
    net = Net(output="y")
    layer = net.network.add_topk(net.input("x", x), getattr(trt.TopKOperation, op), k, 1 << axis)
    net.out(layer, "values")
    indices = layer.get_output(1)
    indices.name = "indices"
    net.network.mark_output(indices)
    index_type = helper.np_dtype_to_tensor_dtype(np.dtype(_NP_TYPES[indices.dtype]))
    nodes = [helper.make_node("TopK", ["x", "k"], ["values", "i64"], axis=axis, largest=int(op == "MAX"), sorted=1),
             helper.make_node("Cast", ["i64"], ["indices"], to=index_type)]
    agree(net, nodes, constants={"k": np.array([k], np.int64)}, exact=True)


# ---- joining, selecting, casting, creating ---------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_concatenation(data):
    shape = data.draw(st.composite(shapes)())
    axis = data.draw(st.integers(0, len(shape) - 1))
    count = data.draw(st.integers(1, 4))
    net = Net(output="y")
    parts = []
    for i in range(count):
        part = list(shape)
        part[axis] = data.draw(st.integers(1, 3))
        parts.append(net.input(f"x{i}", floats(i, part)))
    layer = net.network.add_concatenation(parts)
    layer.axis = axis
    net.out(layer)
    agree(net, [helper.make_node("Concat", [f"x{i}" for i in range(count)], ["y"], axis=axis)], exact=True)


@EXAMPLES
@given(data=st.data())
def test_select(data):
    shape = data.draw(st.composite(shapes)())
    sc, sa, sb = (data.draw(st.composite(broadcast_partner)(shape)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    c = rng.integers(0, 2, sc).astype(bool)
    net = Net(output="y")
    net.out(net.network.add_select(net.input("c", c), net.input("a", floats(1, sa)), net.input("b", floats(2, sb))))
    agree(net, [helper.make_node("Where", ["c", "a", "b"], ["y"])], exact=True)


@pytest.mark.parametrize("source, target", [
    ("float32", "int32"), ("float32", "int64"), ("float32", "bool"), ("float32", "float16"), ("float16", "float32"),
    ("int32", "float32"), ("int64", "int32"), ("bool", "float32"), ("int32", "bool"),
])
@EXAMPLES
@given(shape=st.composite(shapes)(), seed=st.integers(0, 2**16))
def test_cast(source, target, shape, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 40, shape) * rng.integers(0, 2, shape)  # zeros among them
    if source in ("int32", "int64") and target == "float32":
        values = values - 20  # negative integers are exact
    x = (values if source.startswith("float") else np.round(values)).astype(source)
    net = Net(output="y")
    net.out(net.network.add_cast(net.input("x", x), TRT_TYPES[target]))
    to = helper.np_dtype_to_tensor_dtype(np.dtype(target))
    agree(net, [helper.make_node("Cast", ["x"], ["y"], to=to)], exact=True)


def test_constant_identity_shape_squeeze_unsqueeze():
    x = floats(0, (3, 1, 4, 1))
    value = floats(1, (2, 3))
    net = Net(output="y")
    inp = net.input("x", x)
    net.out(net.network.add_constant(value.shape, trt.Weights(np.ascontiguousarray(value))), "constant")
    net.out(net.network.add_identity(inp), "identity")
    net.out(net.network.add_shape(inp), "shape")
    net.out(net.network.add_squeeze(inp, net.const(np.array([1, -1], np.int64))), "squeeze")
    net.out(net.network.add_unsqueeze(inp, net.const(np.array([0, -1], np.int64))), "unsqueeze")
    node = helper.make_node
    nodes = [
        node("Constant", [], ["constant"], value=onnx.numpy_helper.from_array(value)),
        node("Identity", ["x"], ["identity"]),
        node("Shape", ["x"], ["shape"]),
        node("Squeeze", ["x", "sq"], ["squeeze"]),
        node("Unsqueeze", ["x", "unsq"], ["unsqueeze"]),
    ]
    agree(net, nodes, constants={"sq": np.array([1, -1], np.int64), "unsq": np.array([0, -1], np.int64)}, exact=True)


@pytest.mark.parametrize("dtype", ["int32", "float32"])
@EXAMPLES
@given(n=st.integers(0, 9), alpha=st.integers(-5, 5), beta=st.integers(-3, 3))
def test_fill_linspace_1d(dtype, n, alpha, beta):
    net = Net(output="y")
    layer = net.network.add_fill((n,), trt.FillOperation.LINSPACE, TRT_TYPES[dtype])
    layer.alpha, layer.beta = alpha, beta
    net.out(layer)
    if beta == 0:  # Range needs a non-zero delta; n copies of alpha
        constants = {"v": np.full((1,), alpha, dtype), "n": np.array([n], np.int64)}
        agree(net, [helper.make_node("Expand", ["v", "n"], ["y"])], constants=constants, exact=True)
        return
    constants = {"a": np.array(alpha, dtype), "limit": np.array(alpha + n * beta, dtype), "b": np.array(beta, dtype)}
    agree(net, [helper.make_node("Range", ["a", "limit", "b"], ["y"])], constants=constants, exact=True)


# ---- rotary embedding, attention, KV-cache update ------------------------------------------


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("with_positions", [False, True])
@EXAMPLES
@given(data=st.data())
def test_rotary_embedding(interleaved, with_positions, data):
    b, h, s = (data.draw(st.integers(1, 3)) for _ in range(3))
    d = 2 * data.draw(st.integers(1, 4))
    rotary = 2 * data.draw(st.integers(1, d // 2)) if data.draw(st.booleans()) else 0
    half = (rotary or d) // 2
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((b, h, s, d)).astype(np.float32)
    angles = rng.uniform(-3, 3, (7, half) if with_positions else (b, s, half))
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    positions = rng.integers(0, 7, (b, s)).astype(np.int64)
    net = Net(output="y")
    layer = net.network.add_rotary_embedding(net.input("x", x), net.input("cos", cos), net.input("sin", sin), interleaved, rotary)
    if with_positions:
        layer.set_input(3, net.input("positions", positions))
    net.out(layer)
    inputs = ["x", "cos", "sin"] + (["positions"] if with_positions else [])
    attrs = dict(interleaved=int(interleaved), **({"rotary_embedding_dim": rotary} if rotary else {}))
    agree(net, [helper.make_node("RotaryEmbedding", inputs, ["y"], **attrs)], opset=23)


# TensorRT takes a mask only without a causal kind
@pytest.mark.parametrize("causal, mask", [("NONE", None), ("NONE", "bool"), ("NONE", "add"), ("UPPER_LEFT", None), ("LOWER_RIGHT", None)])
@EXAMPLES
@given(data=st.data())
def test_attention_padded(causal, mask, data):
    batch, kv_heads, group = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    s_q = data.draw(st.integers(1, 4))
    s_kv = data.draw(st.integers(s_q, 6)) if causal != "NONE" else data.draw(st.integers(1, 6))
    d = data.draw(st.integers(1, 8))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    q = rng.standard_normal((batch, kv_heads * group, s_q, d)).astype(np.float32)
    k, v = (rng.standard_normal((batch, kv_heads, s_kv, d)).astype(np.float32) for _ in range(2))
    allowed = rng.integers(0, 4, (batch, 1, s_q, s_kv)) > 0
    allowed[..., 0] = True  # every query keeps one key (a fully masked row has no defined value)
    net = Net(output="y")
    att = net.network.add_attention_v2(net.input("q", q), net.input("k", k), net.input("v", v), trt.AttentionNormalizationOp.SOFTMAX,
                                       getattr(trt.CausalMaskKind, causal))
    feeds = ["q", "k", "v"]
    if mask == "bool":
        att.mask = net.input("mask", np.broadcast_to(allowed, (batch, kv_heads * group, s_q, s_kv)).copy())
    elif mask == "add":
        att.mask = net.input("mask", np.where(allowed, rng.uniform(-1, 1, allowed.shape), -1e4).astype(np.float32)
                             .repeat(kv_heads * group, axis=1))
    net.out(att)
    node = helper.make_node
    nodes, constants = [], {}
    if mask:
        feeds.append("mask")
    if causal == "LOWER_RIGHT":  # ONNX's is_causal is upper-left; the lower-right band as a boolean mask
        constants["band"] = np.arange(s_kv)[None, :] <= np.arange(s_q)[:, None] + (s_kv - s_q)
        feeds.append("band")
    nodes.append(node("Attention", feeds, ["y"], scale=1.0, is_causal=int(causal == "UPPER_LEFT")))
    agree(net, nodes, opset=23, constants=constants)


@EXAMPLES
@given(data=st.data())
def test_kv_cache_update_padded(data):
    batch, heads = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    max_len, d = data.draw(st.integers(2, 8)), data.draw(st.integers(1, 4))
    new = data.draw(st.integers(1, max_len))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    cache = rng.standard_normal((batch, heads, max_len, d)).astype(np.float32)
    update = rng.standard_normal((batch, heads, new, d)).astype(np.float32)
    write = rng.integers(0, max_len - new + 1, batch).astype(np.int32)
    net = Net(output="y")
    net.out(net.network.add_kv_cache_update(net.input("cache", cache), net.input("update", update), net.input("write", write),
                                            trt.KVCacheMode.LINEAR))
    nodes = [helper.make_node("Cast", ["write"], ["w64"], to=TensorProto.INT64),
             helper.make_node("TensorScatter", ["cache", "update", "w64"], ["y"], axis=2, mode="linear")]
    agree(net, nodes, opset=24, exact=True)
