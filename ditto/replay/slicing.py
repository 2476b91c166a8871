"""Replays of TensorRT's indexing layers (SLICE, GATHER, SCATTER); the reading rules are in ditto/replay/layer_args.py."""

from __future__ import annotations

import math

import torch

from ditto.replay.layer_args import axis_index, int_list
from ditto.replay.registry import LayerCall, replays

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
    axes = list(range(rank)) if axes is None else [axis_index(call, "axes", a, rank) for a in int_list(axes)]
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
        ends = (first, first + (count - 1) * step) if count else ()  # the extreme coordinates, on the host
        if mode == "STRICT_BOUNDS" and not all(0 <= c < n for c in ends):
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
    if 1 in call.host_args:  # host indices (shape data, a constant column list)
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
    axis = axis_index(call, "axis", int(call.attr("axis")), data.dim())
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
    return _gather_axis(call, data, indices, axis_index(call, "axis", axis, data.dim()))


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
    axis = axis_index(call, "axis", int(call.attr("axis")), data.dim())
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
    # TensorRT's scatter writes a new tensor; where the data input is dead after this layer (the
    # KV pool chain of a step), writing into it computes the same without a copy per layer
    out = data if 0 in call.overwritable and data.is_contiguous() else data.clone(memory_format=torch.contiguous_format)
    if mode == "ELEMENT":
        axis = axis_index(call, "axis", int(call.attr("axis")), data.dim())
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
    call.undefined_if((indices < 0) | (indices >= n),
                      f"scatter indices outside [0, {n}) (negative or out-of-bounds scatter indices are not documented)")


def _check_unique(call, flat):
    ordered = flat.reshape(-1).sort().values  # a target written twice: two equal neighbours once sorted
    call.undefined_if(ordered[1:] == ordered[:-1], "scatter writes one element twice, which TensorRT leaves undefined")
