"""Replay of TensorRT's TopK layer (MoE routing picks its experts with it).

NvInfer.h ITopKLayer: along the single axis in the `axes` bitmask, the `k` largest (MAX) or
smallest (MIN) values, output 0 the values (input dtype), output 1 their indices
(`indices_type`, int32 by default). Ties are not ordered by the documentation, so a tie
between two selected values is an error rather than a guess at TensorRT's order.
"""

from __future__ import annotations

import torch

from ditto.replay.layer_args import axes_from_bitmask
from ditto.replay.registry import LayerCall, replays, torch_dtype


@replays("TOPK", reads=("axes", "indices_type", "k", "op"))
def topk(call: LayerCall):
    x = call.input(0)
    axes = axes_from_bitmask(call, "axes", x.dim())
    if len(axes) != 1:
        raise call.refuse("axes", int(call.attr("axes")), "TensorRT's TopK reduces exactly one axis")
    k = int(call.attr("k"))
    if not 0 < k <= x.shape[axes[0]]:
        raise call.refuse("k", k, f"outside [1, {x.shape[axes[0]]}]")
    largest = call.enum("op", {"MAX": True, "MIN": False})
    values, indices = torch.topk(x, k, dim=axes[0], largest=largest, sorted=True)
    if k > 1:
        call.undefined_if(values.diff(dim=axes[0]) == 0,
                          "two of the selected values are equal; TensorRT does not document the order of ties")
    index_dtype = torch_dtype(call.attr("indices_type"), f"indices_type of layer {call.name!r}")
    return values, indices.to(index_dtype)
