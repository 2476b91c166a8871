"""Replays of TensorRT's layers that make tensors (SHAPE, CONSTANT, FILL) and ASSERTION; the reading rules are in ditto/replay/layer_args.py."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import torch

from ditto.replay.registry import LayerCall, replays


@replays("SHAPE")
def shape(call: LayerCall) -> torch.Tensor:
    return torch.tensor(list(call.input(0).shape), dtype=torch.int64, device=call.device)


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
    call.undefined_if(torch.logical_not(call.input(0)), f"assertion failed: {call.attr('message')}")
    return []
