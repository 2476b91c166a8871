"""How ditto's replays read TensorRT's standard layers, and the helpers they share.

Each replay (ditto/replay/shuffle.py, slicing.py, elementwise.py, reduce.py, matmul.py,
creation.py: one module per kind, as in ditto/trt/converters/) is written from TensorRT's
documentation of its layer. Sources: the class and enum comments of `NvInfer.h`
(NVIDIA/TensorRT, include/, TensorRT 11.1) and the operator pages
(docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/).
Where the documentation leaves a case open, the replay refuses the case instead of picking
an answer: integer DIV whose quotient is negative and inexact, a cast of a negative
non-integer float to an integer type, scatter indices that repeat or leave the data, a
random fill. Floating-point layers that reduce (matrix multiply, reduce, softmax,
normalization, cumulative, activations, unary math) compute in float32 and round to the
declared type at the end, as TensorRT's kernels accumulate in float32.
"""

from __future__ import annotations

import torch

from ditto.replay.registry import LayerCall

HALF = (torch.float16, torch.bfloat16)


def widen(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in HALF else x


def int_list(value) -> list[int]:
    return [int(v) for v in value]


def axes_from_bitmask(call: LayerCall, attribute: str, rank: int) -> list[int]:
    """A bitmask attribute (bit i: axis i) as axis numbers."""
    mask = int(call.attr(attribute))
    axes = [i for i in range(32) if mask >> i & 1]
    if not axes or axes[-1] >= rank:
        raise call.refuse(attribute, mask, f"a bitmask of axes of a rank-{rank} tensor with at least one bit set")
    return axes


def axis_index(call: LayerCall, what: str, axis: int, rank: int) -> int:
    """An axis in [-rank, rank - 1], as a non-negative number."""
    if not -rank <= axis < rank:
        raise call.refuse(what, axis, f"outside [-{rank}, {rank - 1}]")
    return axis % rank
