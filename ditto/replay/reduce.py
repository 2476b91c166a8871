"""Replays of TensorRT's reducing layers (REDUCE, SOFTMAX, NORMALIZATION, CUMULATIVE); the reading rules are in ditto/replay/layer_args.py."""

from __future__ import annotations

import math

import torch

from ditto.replay.layer_args import axes_from_bitmask, axis_index, widen
from ditto.replay.registry import LayerCall, replays

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
    axes = axes_from_bitmask(call, "axes", x.dim())
    keep = bool(call.attr("keep_dims"))
    if x.dtype == torch.bool:
        raise call.error("reduce of a bool tensor")
    if call.attr("op").name == "AVG" and not x.dtype.is_floating_point:
        total = x.long().sum(axes, keepdim=keep)
        count = math.prod(x.shape[a] for a in axes)
        call.undefined_if(total % count != 0, "integer AVG with an inexact mean: TensorRT does not document its rounding")
        return (total // count).to(x.dtype)
    return fn(widen(x), axes, keep).to(x.dtype)


@replays("SOFTMAX", reads=("axes",))
def softmax(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    axes = axes_from_bitmask(call, "axes", x.dim())
    if len(axes) != 1:
        raise call.refuse("axes", int(call.attr("axes")), "TensorRT's softmax takes exactly one axis")
    return torch.softmax(widen(x), axes[0]).to(x.dtype)


# NvInfer.h INormalizationLayer: Y = (X - Mean(X, axes)) / Sqrt(Variance(X) + epsilon) * S + B
@replays("NORMALIZATION", reads=("axes", "epsilon", "num_groups", "is_v2"))
def normalization(call: LayerCall) -> torch.Tensor:
    x, scale, bias = call.input(0), call.input(1), call.input(2)
    if int(call.attr("num_groups")) != 1:
        raise call.refuse("num_groups", int(call.attr("num_groups")), "replay computes one group only")
    if scale.dim() != x.dim() or bias.dim() != x.dim():
        raise call.error(f"scale {tuple(scale.shape)} and bias {tuple(bias.shape)} need the input's rank {x.dim()}")
    axes = axes_from_bitmask(call, "axes", x.dim())
    wide = widen(x)
    mean = wide.mean(axes, keepdim=True)
    variance = ((wide - mean) ** 2).mean(axes, keepdim=True)
    y = (wide - mean) / torch.sqrt(variance + float(call.attr("epsilon"))) * widen(scale) + widen(bias)
    return y.to(x.dtype)


# NvInfer.h ICumulativeLayer: forward/reverse, inclusive/exclusive sums along input 1's axis
@replays("CUMULATIVE", reads=("exclusive", "op", "reverse"))
def cumulative(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    call.enum("op", {"SUM": None})
    (axis,) = call.ints(1)
    axis = axis_index(call, "axis (input 1)", axis, x.dim())
    wide = widen(x) if x.dtype.is_floating_point else x.long()
    if call.attr("reverse"):
        wide = wide.flip(axis)
    out = wide.cumsum(axis)
    if call.attr("exclusive"):
        out = out - wide
    if call.attr("reverse"):
        out = out.flip(axis)
    return out.to(x.dtype)
