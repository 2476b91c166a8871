"""One torch function per TensorRT layer type, computing the layer from its own attributes.

Each function follows the layer's documented semantics (TensorRT's Python API reference and
NvInfer.h: IShuffleLayer applies first_transpose, then the reshape (0 copies the input's
dimension, -1 is inferred), then second_transpose; ISliceLayer's start/shape/stride, or its
inputs 1-3 when set, ...), not ditto's converters: the functions never look at FX nodes and
know nothing of how a converter meant to use a layer. An attribute value a function does not
implement raises `ReplayError` naming the layer and the value; nothing is guessed.
Adding a layer type is one `@layer("TYPE")` function.
"""

from __future__ import annotations

import torch

LAYERS: dict = {}


class ReplayError(RuntimeError):
    pass


def layer(*type_names: str):
    def wrap(fn):
        for name in type_names:
            LAYERS[name] = fn
        return fn

    return wrap


def _unsupported(lay, what) -> ReplayError:
    return ReplayError(f"replay does not implement {what} of layer {lay.name!r} ({str(lay.type).split('.')[-1]})")


def _enum(value) -> str:
    return str(value).split(".")[-1]


@layer("CONSTANT")
def constant(trt, lay, inputs):
    weights = lay.weights
    try:
        array = weights.numpy() if hasattr(weights, "numpy") else weights
        values = torch.from_numpy(array.copy())
    except (TypeError, ValueError, RuntimeError):
        raise _unsupported(lay, f"weights of type {_enum(lay.get_output(0).dtype)} (no numpy view)") from None
    return [values.reshape(tuple(lay.shape))]


def _perm(permutation, rank: int) -> list[int]:
    return [int(permutation[i]) for i in range(rank)]


@layer("SHUFFLE")
def shuffle(trt, lay, inputs):
    x = inputs[0].permute(*_perm(lay.first_transpose, inputs[0].dim())) if inputs[0].dim() else inputs[0]
    if len(inputs) > 1 and inputs[1] is not None:
        target = [int(d) for d in inputs[1].tolist()]
    else:
        dims = lay.reshape_dims  # None when the layer only transposes
        target = None if dims is None else [int(d) for d in dims]
    if target is not None:
        if lay.zero_is_placeholder:
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        x = x.reshape(target)
    return [x.permute(*_perm(lay.second_transpose, x.dim())) if x.dim() else x]


_ELEMENTWISE = {
    "SUM": torch.add,
    "PROD": torch.mul,
    "MAX": torch.maximum,
    "MIN": torch.minimum,
    "SUB": torch.sub,
    "DIV": lambda a, b: torch.div(a, b) if a.is_floating_point() else torch.div(a, b, rounding_mode="trunc"),
    "POW": torch.pow,
    "FLOOR_DIV": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "AND": torch.logical_and,
    "OR": torch.logical_or,
    "XOR": torch.logical_xor,
    "EQUAL": torch.eq,
    "GREATER": torch.gt,
    "LESS": torch.lt,
}


@layer("ELEMENTWISE")
def elementwise(trt, lay, inputs):
    op = _enum(lay.op)
    if op not in _ELEMENTWISE:
        raise _unsupported(lay, f"op {op}")
    a, b = inputs
    if a.dim() != b.dim():
        raise _unsupported(lay, f"operands of rank {a.dim()} and {b.dim()} (TensorRT needs equal ranks)")
    return [_ELEMENTWISE[op](a, b)]


_UNARY = {
    "SQRT": torch.sqrt,
    "RECIP": torch.reciprocal,
    "NEG": torch.neg,
    "COS": torch.cos,
    "SIN": torch.sin,
    "EXP": torch.exp,
    "LOG": torch.log,
    "ABS": torch.abs,
    "NOT": torch.logical_not,
}


@layer("UNARY")
def unary(trt, lay, inputs):
    op = _enum(lay.op)
    if op not in _UNARY:
        raise _unsupported(lay, f"op {op}")
    return [_UNARY[op](inputs[0])]


_ACTIVATIONS = {
    "RELU": torch.relu,
    "SIGMOID": torch.sigmoid,
    "TANH": torch.tanh,
    "GELU_ERF": lambda x: torch.nn.functional.gelu(x),
    "GELU_TANH": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
}


@layer("ACTIVATION")
def activation(trt, lay, inputs):
    kind = _enum(lay.type)  # the layer is cast to IActivationLayer: `type` is its ActivationType
    if kind not in _ACTIVATIONS:
        raise _unsupported(lay, f"activation {kind}")
    return [_ACTIVATIONS[kind](inputs[0])]


@layer("CAST", "IDENTITY")
def cast(trt, lay, inputs):
    return [inputs[0]]  # the output dtype is applied by the executor


def _axes(mask: int, rank: int) -> list[int]:
    return [d for d in range(rank) if mask >> d & 1]


@layer("REDUCE")
def reduce(trt, lay, inputs):
    x = inputs[0]
    dims = _axes(lay.axes, x.dim())
    op = _enum(lay.op)
    keep = lay.keep_dims
    if op == "AVG":
        return [x.float().mean(dim=dims, keepdim=keep).to(x.dtype) if not x.is_floating_point() else x.mean(dim=dims, keepdim=keep)]
    if op == "SUM":
        return [x.sum(dim=dims, keepdim=keep)]
    if op in ("MAX", "MIN"):
        out = x
        for d in sorted(dims, reverse=True):
            out = (out.amax if op == "MAX" else out.amin)(dim=d, keepdim=keep)
        return [out]
    raise _unsupported(lay, f"reduce op {op}")


@layer("MATRIX_MULTIPLY")
def matrix_multiply(trt, lay, inputs):
    a, b = inputs
    ops = [_enum(lay.op0), _enum(lay.op1)]
    if "VECTOR" in ops:
        raise _unsupported(lay, "MatrixOperation.VECTOR")
    if ops[0] == "TRANSPOSE":
        a = a.transpose(-1, -2)
    if ops[1] == "TRANSPOSE":
        b = b.transpose(-1, -2)
    return [torch.matmul(a, b)]


@layer("GATHER")
def gather(trt, lay, inputs):
    data, indices = inputs
    mode = _enum(lay.mode)
    if lay.num_elementwise_dims != 0:
        raise _unsupported(lay, f"num_elementwise_dims={lay.num_elementwise_dims}")
    indices = indices.long()
    if mode == "DEFAULT":
        axis = lay.axis
        moved = data.movedim(axis, 0)[indices]
        return [moved.movedim(list(range(indices.dim())), list(range(axis, axis + indices.dim())))]
    if mode == "ND":
        k = indices.shape[-1]
        return [data[tuple(indices[..., i] for i in range(k))]]
    raise _unsupported(lay, f"gather mode {mode}")


def _dims_input(inputs, i, default):
    if len(inputs) > i and inputs[i] is not None:
        return [int(v) for v in inputs[i].tolist()]
    return list(default)


@layer("SLICE")
def slice_(trt, lay, inputs):
    x = inputs[0]
    if _enum(lay.mode) != "STRICT_BOUNDS":
        raise _unsupported(lay, f"slice mode {_enum(lay.mode)}")
    start = _dims_input(inputs, 1, lay.start)
    shape = _dims_input(inputs, 2, lay.shape)
    stride = _dims_input(inputs, 3, lay.stride)
    index = tuple(slice(s, s + (n - 1) * st + 1, st) for s, n, st in zip(start, shape, stride))
    out = x[index]
    if list(out.shape) != shape:
        raise ReplayError(f"slice {lay.name!r} goes out of bounds: input {list(x.shape)}, start {start}, shape {shape}")
    return [out]


@layer("CONCATENATION")
def concatenation(trt, lay, inputs):
    return [torch.cat(inputs, dim=lay.axis)]


@layer("SHAPE")
def shape(trt, lay, inputs):
    return [torch.tensor(list(inputs[0].shape), dtype=torch.int64)]


@layer("SOFTMAX")
def softmax(trt, lay, inputs):
    dims = _axes(lay.axes, inputs[0].dim())
    if len(dims) != 1:
        raise _unsupported(lay, f"softmax over axes {dims}")
    return [torch.softmax(inputs[0], dim=dims[0])]


@layer("SELECT")
def select(trt, lay, inputs):
    condition, a, b = inputs
    return [torch.where(condition.bool(), a, b)]


@layer("SCATTER")
def scatter(trt, lay, inputs):
    data, indices, updates = inputs
    if _enum(lay.mode) != "ND":
        raise _unsupported(lay, f"scatter mode {_enum(lay.mode)}")
    out = data.clone()
    k = indices.shape[-1]
    out[tuple(indices[..., i].long() for i in range(k))] = updates.to(out.dtype)
    return [out]


@layer("CUMULATIVE")
def cumulative(trt, lay, inputs):
    x, axis = inputs
    if _enum(lay.op) != "SUM":
        raise _unsupported(lay, f"cumulative op {_enum(lay.op)}")
    axis = int(axis.reshape(-1)[0])
    values = x.flip(axis) if lay.reverse else x
    out = values.cumsum(dim=axis)
    if lay.exclusive:
        out = out - values
    out = out.flip(axis) if lay.reverse else out
    return [out.to(x.dtype)]
