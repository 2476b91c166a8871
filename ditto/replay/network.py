"""Execute a TensorRT INetworkDefinition layer by layer in torch (see `ditto.replay.layers`).

Why: no machine here can run a TensorRT engine, and on a GPU node an engine mismatch leaves
open whether the network or TensorRT's kernels differ. Replay answers the first question
anywhere a network can be built. Each output is given the dtype the (strongly typed)
network declares for it.
"""

from __future__ import annotations

import torch

from ditto.replay.layers import LAYERS, ReplayError

# LayerType name -> the concrete layer class to view a generic ILayer as
_CLASSES = {
    "CONSTANT": "IConstantLayer",
    "SHUFFLE": "IShuffleLayer",
    "ELEMENTWISE": "IElementWiseLayer",
    "UNARY": "IUnaryLayer",
    "ACTIVATION": "IActivationLayer",
    "CAST": "ICastLayer",
    "IDENTITY": "IIdentityLayer",
    "REDUCE": "IReduceLayer",
    "MATRIX_MULTIPLY": "IMatrixMultiplyLayer",
    "GATHER": "IGatherLayer",
    "SLICE": "ISliceLayer",
    "CONCATENATION": "IConcatenationLayer",
    "SHAPE": "IShapeLayer",
    "SOFTMAX": "ISoftMaxLayer",
    "SELECT": "ISelectLayer",
    "SCATTER": "IScatterLayer",
    "CUMULATIVE": "ICumulativeLayer",
}

_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "INT8": torch.int8,
}


def torch_dtype(trt_dtype) -> torch.dtype:
    name = str(trt_dtype).split(".")[-1]
    if name not in _DTYPES:
        raise ReplayError(f"replay does not know the TensorRT dtype {name}")
    return _DTYPES[name]


def replay_network(network, trt, inputs: dict[str, torch.Tensor], device: str = "cpu") -> dict[str, torch.Tensor]:
    """The network's outputs (and only those) for `inputs`, computed layer by layer."""
    env: dict[str, torch.Tensor] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in inputs:
            raise ReplayError(f"no value for network input {tensor.name!r}")
        env[tensor.name] = inputs[tensor.name].to(device=device, dtype=torch_dtype(tensor.dtype))
    for lay in _topological(network, set(env)):
        kind = str(lay.type).split(".")[-1]
        if kind not in LAYERS:
            raise ReplayError(f"replay does not implement layer {lay.name!r} of type {kind}")
        lay.__class__ = getattr(trt, _CLASSES[kind])
        args = [env[lay.get_input(j).name] if lay.get_input(j) is not None else None for j in range(lay.num_inputs)]
        results = LAYERS[kind](trt, lay, args)
        for j, value in enumerate(results):
            out = lay.get_output(j)
            env[out.name] = value.to(device=device, dtype=torch_dtype(out.dtype))
    return {network.get_output(i).name: env[network.get_output(i).name] for i in range(network.num_outputs)}


def _topological(network, available: set[str]) -> list:
    """Layers in an order where each runs after the producers of its inputs (a network's
    layer list is its creation order, which need not be that)."""
    pending = [network.get_layer(i) for i in range(network.num_layers)]
    ordered = []
    while pending:
        ready = [
            lay for lay in pending
            if all(lay.get_input(j) is None or lay.get_input(j).name in available for j in range(lay.num_inputs))
        ]
        if not ready:
            raise ReplayError(f"layers {[lay.name for lay in pending[:5]]} wait on tensors nothing produces")
        for lay in ready:
            ordered.append(lay)
            available.update(lay.get_output(j).name for j in range(lay.num_outputs))
        ready_ids = {id(lay) for lay in ready}
        pending = [lay for lay in pending if id(lay) not in ready_ids]
    return ordered
