"""Replays of TensorRT's shuffle-like layers (SHUFFLE, CONCATENATION, SQUEEZE, UNSQUEEZE); the reading rules are in ditto/replay/layer_args.py."""

from __future__ import annotations

import math

import torch

from ditto.replay.layer_args import axis_index, int_list
from ditto.replay.registry import LayerCall, replays

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
        x = x.reshape(_reshape_dims(call, tuple(x.shape), int_list(dims)))
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


@replays("CONCATENATION", reads=("axis",))
def concatenation(call: LayerCall) -> torch.Tensor:
    parts = [call.input(i) for i in range(len(call.inputs))]
    axis = int(call.attr("axis"))
    if not 0 <= axis < parts[0].dim():
        raise call.refuse("axis", axis, f"outside [0, {parts[0].dim() - 1}]")
    if len({p.dtype for p in parts}) != 1 or len({p.dim() for p in parts}) != 1:
        raise call.error(f"inputs {[(p.dtype, tuple(p.shape)) for p in parts]} differ in type or rank")
    return torch.cat(parts, axis)


@replays("SQUEEZE")
def squeeze(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    axes = sorted({axis_index(call, "axes (input 1)", a, x.dim()) for a in call.ints(1)})
    if any(x.shape[a] != 1 for a in axes):
        raise call.error(f"squeeze of axes {axes} that are not 1 in shape {tuple(x.shape)}")
    return x.reshape([n for i, n in enumerate(x.shape) if i not in axes])


@replays("UNSQUEEZE")
def unsqueeze(call: LayerCall) -> torch.Tensor:
    x = call.input(0)
    requested = call.ints(1)
    rank = x.dim() + len(requested)
    axes = {axis_index(call, "axes (input 1)", a, rank) for a in requested}
    if len(axes) != len(requested):
        raise call.error(f"repeated unsqueeze axes {requested}")
    dims = iter(x.shape)
    return x.reshape([1 if i in axes else next(dims) for i in range(rank)])
