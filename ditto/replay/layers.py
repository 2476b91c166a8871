"""Replays of TensorRT's standard layers, each written from TensorRT's documentation of it.

Sources: the class and enum comments of `NvInfer.h` (NVIDIA/TensorRT, include/, TensorRT
11.1) and the operator pages (docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/).
Where the documentation leaves a case open, the replay refuses the case instead of picking
an answer: integer DIV whose quotient is negative and inexact, a cast of a negative
non-integer float to an integer type, scatter indices that repeat or leave the data, a
random fill. Floating-point layers that reduce (matrix multiply, reduce, softmax,
normalization, cumulative, activations, unary math) compute in float32 and round to the
declared type at the end, as TensorRT's kernels accumulate in float32.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import torch

from ditto.replay.registry import LayerCall, replays, torch_dtype

_HALF = (torch.float16, torch.bfloat16)


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _HALF else x


def _dims(value) -> list[int]:
    return [int(v) for v in value]


def _axes(call: LayerCall, attribute: str, rank: int) -> list[int]:
    """A bitmask attribute (bit i: axis i) as axis numbers."""
    mask = int(call.attr(attribute))
    axes = [i for i in range(32) if mask >> i & 1]
    if not axes or axes[-1] >= rank:
        raise call.refuse(attribute, mask, f"a bitmask of axes of a rank-{rank} tensor with at least one bit set")
    return axes


def _axis(call: LayerCall, what: str, axis: int, rank: int) -> int:
    """An axis in [-rank, rank - 1], as a non-negative number."""
    if not -rank <= axis < rank:
        raise call.refuse(what, axis, f"outside [-{rank}, {rank - 1}]")
    return axis % rank


# ---- shuffle -----------------------------------------------------------------------------
# NvInfer.h IShuffleLayer: first transpose, reshape, second transpose, in sequence. The
# permutation examples (CHW -> HWC is [1, 2, 0]) define output dim i as input dim order[i].
# Reshape: 0 copies the input dim at the same index (when zero_is_placeholder), one -1 is
# inferred; the dims come from input 1 when it is set.


@replays("SHUFFLE", reads=("first_transpose", "reshape_dims", "second_transpose", "zero_is_placeholder"))
def shuffle(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    x = x.permute(_permutation(call, "first_transpose", x.dim()))
    dims = call.ints(1) if call.optional(1) is not None else call.attr_dims("reshape_dims")
    if dims is not None:
        x = x.reshape(_reshape_dims(call, tuple(x.shape), _dims(dims)))
    return x.permute(_permutation(call, "second_transpose", x.dim()))


def _permutation(call: LayerCall, attribute: str, rank: int) -> list[int]:
    order = call.attr_dims(attribute)
    if sorted(order[:rank]) != list(range(rank)):
        raise call.refuse(attribute, tuple(order), f"its first {rank} entries are not a permutation of 0..{rank - 1}")
    return order[:rank]


def _reshape_dims(call: LayerCall, shape: tuple, dims: list[int]) -> list[int]:
    placeholder = bool(call.attr("zero_is_placeholder"))
    out = []
    for i, d in enumerate(dims):
        if d == 0 and placeholder:
            if i >= len(shape):
                raise call.refuse("reshape dims", tuple(dims), f"0 at index {i} has no input dim to copy")
            d = shape[i]
        elif d < -1:
            raise call.refuse("reshape dims", tuple(dims), "negative dims other than -1")
        out.append(d)
    volume = math.prod(shape)
    if out.count(-1) > 1:
        raise call.refuse("reshape dims", tuple(dims), "more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or volume % known:
            raise call.refuse("reshape dims", tuple(dims), f"-1 cannot be inferred for input shape {shape}")
        out[out.index(-1)] = volume // known
    if math.prod(out) != volume:
        raise call.refuse("reshape dims", tuple(dims), f"they change the volume of input shape {shape}")
    return out


# ---- slice -------------------------------------------------------------------------------
# NvInfer.h ISliceLayer + SampleMode: output[j] along each sliced axis reads coordinate
# start + j * stride; inputs 1, 2, 3, 4, 5 replace start, size, stride, the fill value and the
# axes. Out-of-bounds coordinates: STRICT_BOUNDS fails, WRAP wraps periodically, CLAMP clamps,
# FILL uses the fill value (0 when input 4 is absent), REFLECT reflects about the middle of the
# edge element, repeating.


@replays("SLICE", reads=("start", "shape", "stride", "mode", "axes"))
def slice_(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    rank = x.dim()
    mode = call.enum("mode", {m: m for m in ("STRICT_BOUNDS", "WRAP", "CLAMP", "FILL", "REFLECT")})
    start, size, stride = (
        call.ints(i) if call.optional(i) is not None else call.attr_dims(a) for i, a in ((1, "start"), (2, "shape"), (3, "stride"))
    )
    axes = call.ints(5) if call.optional(5) is not None else getattr(call.layer, "axes", None)
    axes = list(range(rank)) if axes is None else [_axis(call, "axes", a, rank) for a in _dims(axes)]
    if len(set(axes)) != len(axes) or not len(start) == len(size) == len(stride) == len(axes):
        raise call.error(f"start {start}, size {size}, stride {stride} and axes {axes} do not line up for rank {rank}")
    fill = call.optional(4)
    if fill is not None and mode != "FILL":
        raise call.refuse("mode", call.attr("mode"), "a fill value (input 4) is only allowed with FILL")
    if any(s < 0 for s in size):
        raise call.error(f"negative slice size {size}")
    out_shape = list(x.shape)
    for axis, s in zip(axes, size):
        out_shape[axis] = s
    if mode == "FILL":
        value = torch.zeros((), dtype=x.dtype, device=x.device) if fill is None else fill.reshape(()).to(x.dtype)
        if any(x.shape[a] == 0 for a in axes):
            return value.expand(out_shape).clone()
    inside = None
    for axis, first, count, step in zip(axes, start, size, stride):
        n = x.shape[axis]
        coords = first + torch.arange(count, device=x.device, dtype=torch.int64) * step
        valid = (coords >= 0) & (coords < n)
        if mode == "STRICT_BOUNDS" and not bool(valid.all()):
            raise call.error(f"STRICT_BOUNDS slice reads coordinates {coords.tolist()} of an axis of length {n}")
        if n == 0 and count:
            raise call.error(f"{mode} slice of length {count} on an empty axis")
        if mode == "WRAP":
            coords = coords % n if n else coords
        elif mode == "REFLECT":
            period = 2 * (n - 1)
            coords = torch.zeros_like(coords) if n == 1 else coords % period
            coords = torch.where(coords >= n, period - coords, coords) if n > 1 else coords
        else:  # CLAMP, and FILL (the clamped reads are replaced by the fill value below)
            coords = coords.clamp(0, max(n - 1, 0))
        x = x.index_select(axis, coords)
        if mode == "FILL":
            shape = [1] * rank
            shape[axis] = count
            inside = valid.reshape(shape) if inside is None else inside & valid.reshape(shape)
    if mode == "FILL" and inside is not None:
        x = torch.where(inside, x, value)
    return x


# ---- gather ------------------------------------------------------------------------------
# NvInfer.h IGatherLayer: DEFAULT is ONNX Gather (optionally one leading elementwise dim,
# broadcast), ELEMENT is ONNX GatherElements, ND is ONNX GatherND with num_elementwise_dims
# leading batch dims. Negative indices count from the end; out-of-bounds reads store zero.


@replays("GATHER", reads=("axis", "mode", "num_elementwise_dims"))
def gather(call: LayerCall) -> torch.Tensor:
    data, indices = call.input(0), call.input(1)
    if indices.dtype not in (torch.int32, torch.int64):
        raise call.error(f"indices are {indices.dtype}; TensorRT takes int32 or int64")
    mode = call.enum("mode", {"DEFAULT": _gather_default, "ELEMENT": _gather_element, "ND": _gather_nd})
    elementwise = int(call.attr("num_elementwise_dims"))
    if indices.device.type == "cpu":  # host indices (shape data, a constant column list)
        if mode is _gather_default and elementwise == 0:
            out = _gather_host_indices(call, data, indices)
            if out is not None:
                return out
        indices = indices.to(data.device)
    return mode(call, data, indices.long(), elementwise)


def _gather_host_indices(call, data, indices):
    """DEFAULT gather by indices held on the host, all in [-n, n): no bounds mask is needed
    (that is what the mask would keep); a run of consecutive indices reads a slice of the data
    (a view) instead of copying it. None when some index is out of bounds (the masked path)."""
    axis = _axis(call, "axis", int(call.attr("axis")), data.dim())
    n = data.shape[axis]
    memo = call.memo if call.memo is not None else {}
    cached = memo.get("host_indices")
    if cached is not None and cached[0] is indices and cached[1] == n and cached[2] == data.device:
        how = cached[3]  # the same (kept) index tensor as at an earlier run
    else:
        flat = indices.reshape(-1).tolist()
        if any(not -n <= i < n for i in flat):
            return None
        flat = [i + n if i < 0 else i for i in flat]
        if flat and flat == list(range(flat[0], flat[0] + len(flat))):
            how = (flat[0], len(flat))
        else:
            how = torch.tensor(flat, dtype=torch.int64, device=data.device)
        memo["host_indices"] = (indices, n, data.device, how)
    out = data.narrow(axis, *how) if isinstance(how, tuple) else data.index_select(axis, how)
    return out.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


def _in_range(indices: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices made non-negative and clamped into range, which ones were in [-n, n))."""
    valid = (indices >= -n) & (indices < n)
    return torch.where(indices < 0, indices + n, indices).clamp(0, max(n - 1, 0)), valid


def _gather_default(call, data, indices, elementwise):
    axis = int(call.attr("axis"))
    if elementwise == 1:
        if axis < 1:
            raise call.refuse("axis", axis, "with one elementwise dim the gather axis must be at least 1")
        batch = max(data.shape[0], indices.shape[0])
        if {data.shape[0], indices.shape[0]} - {1, batch}:
            raise call.error(f"elementwise dims {data.shape[0]} and {indices.shape[0]} do not broadcast")
        parts = [
            _gather_axis(call, data[b if data.shape[0] > 1 else 0], indices[b if indices.shape[0] > 1 else 0], axis - 1)
            for b in range(batch)
        ]
        return torch.stack(parts)
    if elementwise != 0:
        raise call.refuse("num_elementwise_dims", elementwise, "DEFAULT gather takes 0 or 1")
    return _gather_axis(call, data, indices, _axis(call, "axis", axis, data.dim()))


def _gather_axis(call, data, indices, axis):
    index, valid = _in_range(indices, data.shape[axis])
    out = data.index_select(axis, index.reshape(-1))
    shape = (*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :])
    mask = valid.reshape((1,) * axis + tuple(indices.shape) + (1,) * (data.dim() - axis - 1))
    return torch.where(mask, out.reshape(shape), torch.zeros((), dtype=data.dtype, device=data.device))


def _gather_element(call, data, indices, elementwise):
    if elementwise != 0:
        raise call.refuse("num_elementwise_dims", elementwise, "ELEMENT gather takes 0")
    if indices.dim() != data.dim():
        raise call.error(f"ELEMENT gather needs indices of the data's rank {data.dim()}, got {indices.dim()}")
    axis = _axis(call, "axis", int(call.attr("axis")), data.dim())
    index, valid = _in_range(indices, data.shape[axis])
    out = torch.gather(data, axis, index)
    return torch.where(valid, out, torch.zeros((), dtype=data.dtype, device=data.device))


def _gather_nd(call, data, indices, batch_dims):
    k = indices.shape[-1] if indices.dim() else 0
    if not 0 <= batch_dims < data.dim() or indices.dim() < 1 or k > data.dim() - batch_dims:
        raise call.error(f"ND gather of {tuple(data.shape)} by indices {tuple(indices.shape)}, {batch_dims} elementwise dims")
    if tuple(data.shape[:batch_dims]) != tuple(indices.shape[:batch_dims]):
        raise call.error(f"ND gather elementwise dims differ: data {tuple(data.shape)}, indices {tuple(indices.shape)}")
    batch = math.prod(data.shape[:batch_dims])
    indexed = data.shape[batch_dims : batch_dims + k]
    rest = data.shape[batch_dims + k :]
    table = data.reshape(batch, math.prod(indexed), *rest)
    where = indices.reshape(batch, -1, k)
    linear = torch.zeros(where.shape[:2], dtype=torch.int64, device=data.device)
    inside = torch.ones(where.shape[:2], dtype=torch.bool, device=data.device)
    for j, n in enumerate(indexed):
        index, valid = _in_range(where[..., j], n)
        linear = linear * n + index
        inside &= valid
    out = table[torch.arange(batch, device=data.device)[:, None], linear]
    zero = torch.zeros((), dtype=data.dtype, device=data.device)
    out = torch.where(inside.reshape(*inside.shape, *([1] * len(rest))), out, zero)
    return out.reshape((*indices.shape[:-1], *rest))  # a tuple: the result may be 0-d


# ---- scatter -----------------------------------------------------------------------------
# NvInfer.h IScatterLayer: the data is copied, then ELEMENT writes output[K] = updates[J] with
# K = J with J[axis] replaced by the index (ONNX ScatterElements), ND writes whole slices
# addressed by index tuples (ONNX ScatterND). Writes to the same element are undefined in
# TensorRT, and negative indices are not documented: replay refuses both.


@replays("SCATTER", reads=("axis", "mode"))
def scatter(call: LayerCall) -> torch.Tensor:
    data, indices, updates = call.input(0), call.input(1), call.input(2)
    if updates.dtype != data.dtype:
        raise call.error(f"updates are {updates.dtype}, data {data.dtype}")
    indices = indices.long()
    mode = call.enum("mode", {"ELEMENT": "ELEMENT", "ND": "ND"})
    out = data.clone(memory_format=torch.contiguous_format)
    if mode == "ELEMENT":
        axis = _axis(call, "axis", int(call.attr("axis")), data.dim())
        fits = all(i <= n for d, (i, n) in enumerate(zip(indices.shape, data.shape)) if d != axis)
        if indices.dim() != data.dim() or updates.shape != indices.shape or not fits:
            raise call.error(f"ELEMENT scatter of {tuple(updates.shape)} at {tuple(indices.shape)} into {tuple(data.shape)}")
        _check_targets(call, indices, data.shape[axis])
        coords = list(torch.meshgrid(*[torch.arange(n, device=data.device) for n in indices.shape], indexing="ij"))
        coords[axis] = indices
        flat = sum(c * math.prod(data.shape[d + 1 :]) for d, c in enumerate(coords)).reshape(-1)
        _check_unique(call, flat)
        out.view(-1)[flat] = updates.reshape(-1)
        return out
    k = indices.shape[-1]
    if k > data.dim() or tuple(updates.shape) != (*indices.shape[:-1], *data.shape[k:]):
        raise call.error(f"ND scatter of {tuple(updates.shape)} at {tuple(indices.shape)} into {tuple(data.shape)}")
    linear = torch.zeros(indices.shape[:-1], dtype=torch.int64, device=data.device)
    for j in range(k):
        _check_targets(call, indices[..., j], data.shape[j])
        linear = linear * data.shape[j] + indices[..., j]
    _check_unique(call, linear)
    rest = data.shape[k:]
    view = out.view(math.prod(data.shape[:k]), *rest)
    view[linear.reshape(-1)] = updates.reshape(-1, *rest)
    return out


def _check_targets(call, indices, n):
    if bool(((indices < 0) | (indices >= n)).any()):
        raise call.error(f"scatter indices outside [0, {n}) (negative or out-of-bounds scatter indices are not documented)")


def _check_unique(call, flat):
    if flat.numel() != flat.reshape(-1).unique().numel():
        raise call.error("scatter writes one element twice, which TensorRT leaves undefined")


# ---- elementwise ---------------------------------------------------------------------------
# NvInfer.h ElementWiseOperation + IElementWiseLayer: inputs of the same rank, each dim equal
# or 1 (broadcast); AND/OR/XOR on bool; EQUAL/GREATER/LESS produce bool.


def _div(call, a, b):
    if a.dtype.is_floating_point:
        return a / b
    _no_zero_divisor(call, b)
    trunc = torch.div(a, b, rounding_mode="trunc")
    if not torch.equal(trunc, torch.div(a, b, rounding_mode="floor")):
        raise call.error("integer DIV with a negative inexact quotient: TensorRT does not document its rounding")
    return trunc


def _floor_div(call, a, b):
    if not a.dtype.is_floating_point:
        _no_zero_divisor(call, b)
    return torch.div(a, b, rounding_mode="floor")


def _no_zero_divisor(call, b):
    if bool((b == 0).any()):
        raise call.error("integer division by zero")


def _logical(fn):
    def run(call, a, b):
        if a.dtype != torch.bool:
            raise call.error(f"{fn.__name__} takes bool inputs, got {a.dtype}")
        return fn(a, b)

    return run


def _plain(fn):
    return lambda call, a, b: fn(a, b)


_BINARY = {
    "SUM": _plain(torch.add),
    "PROD": _plain(torch.mul),
    "MAX": _plain(torch.maximum),
    "MIN": _plain(torch.minimum),
    "SUB": _plain(torch.sub),
    "DIV": _div,
    "POW": _plain(torch.pow),
    "FLOOR_DIV": _floor_div,
    "AND": _logical(torch.logical_and),
    "OR": _logical(torch.logical_or),
    "XOR": _logical(torch.logical_xor),
    "EQUAL": _plain(torch.eq),
    "GREATER": _plain(torch.gt),
    "LESS": _plain(torch.lt),
}


@replays("ELEMENTWISE", reads=("op",))
def elementwise(call: LayerCall) -> torch.Tensor:
    a, b = call.input(0), call.input(1)
    op = call.enum("op", _BINARY)
    _same_rank_broadcast(call, a, b)
    if a.dtype != b.dtype:
        raise call.error(f"inputs are {a.dtype} and {b.dtype}; a strongly typed elementwise layer takes one type")
    return op(call, a, b)


def _same_rank_broadcast(call, *tensors):
    if len({t.dim() for t in tensors}) != 1:
        raise call.error(f"inputs of ranks {[t.dim() for t in tensors]}; TensorRT needs one rank")
    for dims in zip(*(t.shape for t in tensors)):
        if len(set(dims) - {1}) > 1:
            raise call.error(f"shapes {[tuple(t.shape) for t in tensors]} do not broadcast")


@replays("SELECT")
def select(call: LayerCall) -> torch.Tensor:
    condition, then, other = call.input(0), call.input(1), call.input(2)
    if condition.dtype != torch.bool or then.dtype != other.dtype:
        raise call.error(f"select of {condition.dtype} condition, {then.dtype} / {other.dtype} values")
    _same_rank_broadcast(call, condition, then, other)
    return torch.where(condition, then, other)


# ---- unary and activation ----------------------------------------------------------------


def _float_only(fn):
    def run(x):
        if not x.dtype.is_floating_point:
            raise TypeError(f"takes floating-point input, got {x.dtype}")
        return fn(_wide(x)).to(x.dtype)

    return run


def _bool_result(fn):
    return lambda x: fn(_wide(x))


_UNARY = {
    "EXP": _float_only(torch.exp),
    "LOG": _float_only(torch.log),
    "SQRT": _float_only(torch.sqrt),
    "RECIP": _float_only(torch.reciprocal),
    "ABS": torch.abs,
    "NEG": torch.neg,
    "SIN": _float_only(torch.sin),
    "COS": _float_only(torch.cos),
    "TAN": _float_only(torch.tan),
    "SINH": _float_only(torch.sinh),
    "COSH": _float_only(torch.cosh),
    "ASIN": _float_only(torch.asin),
    "ACOS": _float_only(torch.acos),
    "ATAN": _float_only(torch.atan),
    "ASINH": _float_only(torch.asinh),
    "ACOSH": _float_only(torch.acosh),
    "ATANH": _float_only(torch.atanh),
    "CEIL": _float_only(torch.ceil),
    "FLOOR": _float_only(torch.floor),
    "ERF": _float_only(torch.erf),
    "NOT": torch.logical_not,
    "SIGN": torch.sign,
    "ROUND": _float_only(torch.round),  # to nearest, ties to even
    "ISINF": _bool_result(torch.isinf),
    "ISNAN": _bool_result(torch.isnan),
}


@replays("UNARY", reads=("op",))
def unary(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    fn = call.enum("op", _UNARY)
    if call.attr("op").name == "NOT" and x.dtype != torch.bool:
        raise call.error(f"NOT takes bool input, got {x.dtype}")
    try:
        return fn(x)
    except TypeError as e:
        raise call.error(f"{call.attr('op').name} {e}") from None


_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# NvInfer.h ActivationType, formulas as written there; alpha and beta are the layer's.
_ACTIVATIONS = {
    "RELU": lambda x, a, b: torch.relu(x),
    "SIGMOID": lambda x, a, b: torch.sigmoid(x),
    "TANH": lambda x, a, b: torch.tanh(x),
    "LEAKY_RELU": lambda x, a, b: torch.where(x >= 0, x, a * x),
    "ELU": lambda x, a, b: torch.where(x >= 0, x, a * (torch.exp(x) - 1)),
    "SELU": lambda x, a, b: torch.where(x > 0, b * x, b * (a * torch.exp(x) - a)),
    "SOFTSIGN": lambda x, a, b: x / (1 + x.abs()),
    "SOFTPLUS": lambda x, a, b: a * torch.logaddexp(b * x, torch.zeros_like(x)),
    "CLIP": lambda x, a, b: x.clamp(max=b).clamp(min=a),
    "HARD_SIGMOID": lambda x, a, b: (a * x + b).clamp(max=1).clamp(min=0),
    "SCALED_TANH": lambda x, a, b: a * torch.tanh(b * x),
    "THRESHOLDED_RELU": lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x)),
    "GELU_ERF": lambda x, a, b: 0.5 * x * (1 + torch.erf(_SQRT_HALF * x)),
    "GELU_TANH": lambda x, a, b: 0.5 * x * (1 + torch.tanh(_SQRT_2_OVER_PI * (0.044715 * x**3 + x))),
}


# `type` on IActivationLayer is its ActivationType (it hides ILayer.type once cast)
@replays("ACTIVATION", reads=("alpha", "beta"))
def activation(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    fn = call.enum("type", _ACTIVATIONS)
    if not x.dtype.is_floating_point:
        raise call.error(f"activation of {x.dtype} input")
    return fn(_wide(x), float(call.attr("alpha")), float(call.attr("beta"))).to(x.dtype)


# ---- reductions, softmax, normalization, cumulative --------------------------------------


_REDUCE = {
    "SUM": lambda x, axes, keep: x.sum(axes, keepdim=keep),
    "PROD": lambda x, axes, keep: _prod(x, axes, keep),
    "MAX": lambda x, axes, keep: x.amax(axes, keepdim=keep),
    "MIN": lambda x, axes, keep: x.amin(axes, keepdim=keep),
    "AVG": lambda x, axes, keep: x.mean(axes, keepdim=keep),
}


def _prod(x, axes, keep):
    for axis in sorted(axes, reverse=True):
        x = x.prod(axis, keepdim=keep)
    return x


@replays("REDUCE", reads=("axes", "keep_dims", "op"))
def reduce(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    fn = call.enum("op", _REDUCE)
    axes = _axes(call, "axes", x.dim())
    keep = bool(call.attr("keep_dims"))
    if x.dtype == torch.bool:
        raise call.error("reduce of a bool tensor")
    if call.attr("op").name == "AVG" and not x.dtype.is_floating_point:
        total = x.long().sum(axes, keepdim=keep)
        count = math.prod(x.shape[a] for a in axes)
        if bool((total % count != 0).any()):
            raise call.error("integer AVG with an inexact mean: TensorRT does not document its rounding")
        return (total // count).to(x.dtype)
    return fn(_wide(x), axes, keep).to(x.dtype)


@replays("SOFTMAX", reads=("axes",))
def softmax(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    axes = _axes(call, "axes", x.dim())
    if len(axes) != 1:
        raise call.refuse("axes", int(call.attr("axes")), "TensorRT's softmax takes exactly one axis")
    return torch.softmax(_wide(x), axes[0]).to(x.dtype)


# NvInfer.h INormalizationLayer: Y = (X - Mean(X, axes)) / Sqrt(Variance(X) + epsilon) * S + B
@replays("NORMALIZATION", reads=("axes", "epsilon", "num_groups", "is_v2"))
def normalization(call: LayerCall) -> torch.Tensor:
    x, scale, bias = call.input(0), call.input(1), call.input(2)
    if int(call.attr("num_groups")) != 1:
        raise call.refuse("num_groups", int(call.attr("num_groups")), "replay computes one group only")
    if scale.dim() != x.dim() or bias.dim() != x.dim():
        raise call.error(f"scale {tuple(scale.shape)} and bias {tuple(bias.shape)} need the input's rank {x.dim()}")
    axes = _axes(call, "axes", x.dim())
    wide = _wide(x)
    mean = wide.mean(axes, keepdim=True)
    variance = ((wide - mean) ** 2).mean(axes, keepdim=True)
    y = (wide - mean) / torch.sqrt(variance + float(call.attr("epsilon"))) * _wide(scale) + _wide(bias)
    return y.to(x.dtype)


# NvInfer.h ICumulativeLayer: forward/reverse, inclusive/exclusive sums along input 1's axis
@replays("CUMULATIVE", reads=("exclusive", "op", "reverse"))
def cumulative(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    call.enum("op", {"SUM": None})
    (axis,) = call.ints(1)
    axis = _axis(call, "axis (input 1)", axis, x.dim())
    wide = _wide(x) if x.dtype.is_floating_point else x.long()
    if call.attr("reverse"):
        wide = wide.flip(axis)
    out = wide.cumsum(axis)
    if call.attr("exclusive"):
        out = out - wide
    if call.attr("reverse"):
        out = out.flip(axis)
    return out.to(x.dtype)


# ---- matrix multiply, einsum -------------------------------------------------------------
# NvInfer.h MatrixOperation / IMatrixMultiplyLayer: NONE takes the last two dims as a matrix,
# TRANSPOSE transposes them, VECTOR takes the last dim as a vector; leading dims are
# collections of the same count in both inputs, broadcast where one of them is 1.


class _float32_reductions:
    """cuBLAS may reduce split-K partial sums in half precision unless told not to."""

    _FLAGS = ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")

    def __enter__(self):
        matmul = torch.backends.cuda.matmul
        self.saved = [getattr(matmul, f) for f in self._FLAGS]
        for f in self._FLAGS:
            setattr(matmul, f, False)

    def __exit__(self, *exc):
        for f, value in zip(self._FLAGS, self.saved):
            setattr(torch.backends.cuda.matmul, f, value)


@replays("MATRIX_MULTIPLY", reads=("op0", "op1"))
def matrix_multiply(call: LayerCall) -> torch.Tensor:
    a, b = call.input(0), call.input(1)
    ops = {"NONE": "NONE", "TRANSPOSE": "TRANSPOSE", "VECTOR": "VECTOR"}
    op0, op1 = call.enum("op0", ops), call.enum("op1", ops)
    if a.dtype != b.dtype or not a.dtype.is_floating_point:
        raise call.error(f"matrix multiply of {a.dtype} and {b.dtype}")
    batch_a = a.shape[: a.dim() - (1 if op0 == "VECTOR" else 2)]
    batch_b = b.shape[: b.dim() - (1 if op1 == "VECTOR" else 2)]
    if len(batch_a) != len(batch_b) or any(len({x, y} - {1}) > 1 for x, y in zip(batch_a, batch_b)):
        raise call.error(f"collection dims {tuple(batch_a)} and {tuple(batch_b)} do not match")
    # float32 accumulation. On a GPU, half-precision operands go to the GEMM as they are (its
    # products are exact in float32 and it accumulates in float32, with split-K reductions
    # kept in float32 below) instead of upcasting every weight, which would copy each weight
    # at twice its size at every step.
    native = a.is_cuda and a.dtype in _HALF
    x, y = (a, b) if native else (_wide(a), _wide(b))
    x = x.unsqueeze(-2) if op0 == "VECTOR" else (x.transpose(-1, -2) if op0 == "TRANSPOSE" else x)  # [.., M, K]
    y = y.unsqueeze(-1) if op1 == "VECTOR" else (y.transpose(-1, -2) if op1 == "TRANSPOSE" else y)  # [.., K, N]
    if x.shape[-1] != y.shape[-2]:
        raise call.error(f"inner dims differ: {tuple(a.shape)} {op0} x {tuple(b.shape)} {op1}")
    if native:
        with _float32_reductions():
            out = torch.matmul(x, y)
    else:
        out = torch.matmul(x, y)
    if op1 == "VECTOR":
        out = out.squeeze(-1)
    if op0 == "VECTOR":
        out = out.squeeze(-1 if op1 == "VECTOR" else -2)
    return out.to(a.dtype)


@replays("EINSUM", reads=("equation",))
def einsum(call: LayerCall) -> torch.Tensor:
    operands = [call.input(i) for i in range(len(call.inputs))]
    return torch.einsum(call.attr("equation"), *[_wide(t) for t in operands]).to(operands[0].dtype)


# ---- data movement and creation ----------------------------------------------------------


@replays("CONCATENATION", reads=("axis",))
def concatenation(call: LayerCall) -> torch.Tensor:
    parts = [call.input(i) for i in range(len(call.inputs))]
    axis = int(call.attr("axis"))
    if not 0 <= axis < parts[0].dim():
        raise call.refuse("axis", axis, f"outside [0, {parts[0].dim() - 1}]")
    if len({p.dtype for p in parts}) != 1 or len({p.dim() for p in parts}) != 1:
        raise call.error(f"inputs {[(p.dtype, tuple(p.shape)) for p in parts]} differ in type or rank")
    return torch.cat(parts, axis)


@replays("CAST", reads=("to_type",))
def cast(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    dtype = torch_dtype(call.attr("to_type"), f"to_type of layer {call.name!r}")
    if x.dtype.is_floating_point and not dtype.is_floating_point and dtype != torch.bool:
        # the Cast operator page shows truncation (6.7 -> 6); negative non-integers are not shown
        if bool(((x < 0) & (x != x.trunc())).any()):
            raise call.error("cast of negative non-integer floats to an integer type: TensorRT does not document it")
    return x.to(dtype)


@replays("IDENTITY")
def identity(call: LayerCall) -> torch.Tensor:
    # strongly typed: the identity function (the output type check catches any conversion)
    return call.input(0)


@replays("SHAPE")
def shape(call: LayerCall) -> torch.Tensor:
    return torch.tensor(list(call.input(0).shape), dtype=torch.int64, device=call.device)


@replays("SQUEEZE")
def squeeze(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    axes = sorted({_axis(call, "axes (input 1)", a, x.dim()) for a in call.ints(1)})
    if any(x.shape[a] != 1 for a in axes):
        raise call.error(f"squeeze of axes {axes} that are not 1 in shape {tuple(x.shape)}")
    return x.reshape([n for i, n in enumerate(x.shape) if i not in axes])


@replays("UNSQUEEZE")
def unsqueeze(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    requested = call.ints(1)
    rank = x.dim() + len(requested)
    axes = {_axis(call, "axes (input 1)", a, rank) for a in requested}
    if len(axes) != len(requested):
        raise call.error(f"repeated unsqueeze axes {requested}")
    dims = iter(x.shape)
    return x.reshape([1 if i in axes else next(dims) for i in range(rank)])


@replays("CONSTANT", reads=("shape", "weights"))
def constant(call: LayerCall) -> torch.Tensor:
    shape = call.attr_dims("shape")
    weights = call.attr("weights")
    dtype = call.out_dtype()
    array = weights.numpy() if hasattr(weights, "numpy") else weights
    if isinstance(array, np.ndarray):
        tensor = torch.from_numpy(array) if array.flags.writeable else torch.from_numpy(array.copy())
    else:
        tensor = _raw_weights(call, weights, dtype)
    if tensor.numel() != math.prod(shape):
        raise call.error(f"{tensor.numel()} weights for shape {tuple(shape)}")
    if tensor.dtype != dtype:
        raise call.error(f"weights are {tensor.dtype}, the output is declared {dtype}")
    return tensor.reshape(shape).to(call.device)


def _raw_weights(call, weights, dtype) -> torch.Tensor:
    """Weights the bindings cannot give as numpy (bfloat16): read from their buffer.

    The bindings' `Weights` wraps nvinfer1::Weights {DataType type; void const* values;
    int64_t count}; its address sits right after the Python object header in the pybind11
    instance. The type and count read there must equal what the bindings report, else refuse.
    """
    holder = ctypes.c_void_p.from_address(id(weights) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    kind = ctypes.c_int32.from_address(holder).value if holder else None
    values = ctypes.c_void_p.from_address(holder + 8).value if holder else None
    count = ctypes.c_int64.from_address(holder + 16).value if holder else None
    if kind != int(weights.dtype) or count != weights.size or (count and not values):
        raise call.error(f"cannot read {weights.dtype.name} weights from the bindings")
    buffer = (ctypes.c_char * weights.nbytes).from_address(values)
    return torch.frombuffer(buffer, dtype=dtype) if count else torch.empty(0, dtype=dtype)


# NvInfer.h FillOperation / IFillLayer: LINSPACE gives element [i, j, ...] the value
# alpha + beta[0] * i + beta[1] * j + ...; inputs 0, 1, 2 replace shape, alpha, beta.
@replays("FILL", reads=("alpha", "beta", "is_alpha_beta_int64", "operation", "shape", "to_type"))
def fill(call: LayerCall) -> torch.Tensor:
    call.enum("operation", {"LINSPACE": None})  # random fills cannot be replayed value for value
    dtype = call.out_dtype()
    shape = call.ints(0) if call.optional(0) is not None else call.attr_dims("shape")
    if (call.optional(1) is None) != (call.optional(2) is None):
        raise call.error("alpha and beta must both be static or both be inputs")
    if call.optional(1) is not None:
        alpha = call.input(1).reshape(()).double()
        beta = call.input(2).reshape(-1).double()
    else:
        alpha = torch.tensor(float(call.attr("alpha")), dtype=torch.float64)
        beta = torch.tensor([float(call.attr("beta"))], dtype=torch.float64)
    if beta.numel() != len(shape):
        raise call.error(f"{beta.numel()} deltas for a rank-{len(shape)} fill (a static beta is one delta)")
    value = alpha.to(call.device).expand(shape).clone()
    for axis, n in enumerate(shape):
        index = torch.arange(n, dtype=torch.float64, device=call.device)
        value = value + (beta[axis].to(call.device) * index).reshape([n if i == axis else 1 for i in range(len(shape))])
    return value.to(dtype)


@replays("ASSERTION", reads=("message",))
def assertion(call: LayerCall) -> list:
    if not bool(call.input(0).all()):
        raise call.error(f"assertion failed: {call.attr('message')}")
    return []
