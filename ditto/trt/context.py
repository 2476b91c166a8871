"""Conversion state shared by the converters: the network, the TensorRT module, FX values.

Helpers here are the small vocabulary every converter speaks: constants of a given dtype,
casts, shape tensors (int64), broadcasting to a common rank, and layer naming after the FX
node so that a built layer leads back to the node it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.fx import Node

TRT_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.bool: "bool",
    torch.int8: "int8",
}


@dataclass
class ConversionContext:
    trt: object  # the TensorRT module (tensorrt or tensorrt_rtx)
    network: object  # INetworkDefinition
    values: dict = field(default_factory=dict)  # FX node -> ITensor | list | int
    keep_alive: list = field(default_factory=list)  # host memory the network's weights point into
    node: Node | None = None  # the node being converted (layer names)
    _count: int = 0

    # ---- naming -------------------------------------------------------------------------
    def name(self, layer, suffix: str = ""):
        """Name `layer` after the current FX node: `<node>` or `<node>/<suffix>_<n>`."""
        base = self.node.name if self.node is not None else "ditto"
        self._count += 1
        layer.name = f"{base}/{suffix}_{self._count}" if suffix else base
        return layer

    def out(self, layer, suffix: str = ""):
        self.name(layer, suffix)
        return layer.get_output(0)

    # ---- dtypes and constants -----------------------------------------------------------
    def dtype(self, torch_dtype: torch.dtype):
        return getattr(self.trt, TRT_DTYPE_NAMES[torch_dtype])

    def torch_dtype(self, trt_dtype) -> torch.dtype:
        for t, name in TRT_DTYPE_NAMES.items():
            if getattr(self.trt, name) == trt_dtype:
                return t
        raise ValueError(f"no torch dtype for {trt_dtype}")

    def constant(self, tensor: torch.Tensor, suffix: str = "const", keep_0d: bool = False):
        """A network constant that points into `tensor` (kept alive, not copied again)."""
        tensor = tensor.detach().contiguous().cpu()
        if tensor.dim() == 0 and not keep_0d:
            tensor = tensor.reshape(1)
        self.keep_alive.append(tensor)
        weights = self.trt.Weights(self.dtype(tensor.dtype), tensor.data_ptr(), tensor.numel())
        return self.out(self.network.add_constant(tuple(tensor.shape), weights), suffix)

    def scalar(self, value, like, rank: int | None = None):
        """A constant broadcastable against `like` ([1] * rank) with `like`'s dtype."""
        dtype = self.torch_dtype(like.dtype)
        rank = len(like.shape) if rank is None else rank
        return self.constant(torch.tensor(value, dtype=dtype).reshape([1] * max(rank, 1)), "scalar")

    def cast(self, x, torch_dtype: torch.dtype):
        if x.dtype == self.dtype(torch_dtype):
            return x
        return self.out(self.network.add_cast(x, self.dtype(torch_dtype)), "cast")

    # ---- shapes ---------------------------------------------------------------------------
    def shape_of(self, x):
        """int64 [rank] shape tensor of x."""
        return self.cast_int64(self.out(self.network.add_shape(x), "shape"))

    def cast_int64(self, x):
        return self.cast(x, torch.int64)

    def dim(self, x, axis: int):
        """int64 [1] tensor: x.shape[axis]."""
        shape = self.shape_of(x)
        index = self.constant(torch.tensor([axis % len(x.shape)], dtype=torch.int64), "axis")
        return self.out(self.network.add_gather(shape, index, 0), "dim")

    def shape_tensor(self, dims: list):
        """int64 [len(dims)] from ints and int64 [1] tensors."""
        parts = [self.constant(torch.tensor([int(d)]), "d") if isinstance(d, (int, np.integer)) else self.cast(d, torch.int64) for d in dims]
        if len(parts) == 1:
            return parts[0]
        layer = self.network.add_concatenation(parts)
        layer.axis = 0
        return self.out(layer, "shape")

    def reshape(self, x, dims: list):
        if all(isinstance(d, (int, np.integer)) for d in dims):
            layer = self.network.add_shuffle(x)
            layer.reshape_dims = tuple(int(d) for d in dims)
        else:
            shape = self.shape_tensor(dims)  # created first: layers stay in dependency order
            layer = self.network.add_shuffle(x)
            layer.set_input(1, shape)
        layer.zero_is_placeholder = False  # torch semantics: a 0 is an empty dim, not "copy the input's"
        return self.out(layer, "reshape")

    def columns(self, x, start: int, stop: int):
        """x[..., start:stop] for a static last dim, as a gather of those columns.

        Not a slice: TensorRT's builder splits (and re-fuses) a GEMM whose output is sliced and
        holds copies of its weights while doing so; measured on a Llama MLP (fused gate/up GEMM
        sliced in two), the builder's memory peaked at 1.73x the weights with slices and 1.19x
        with this gather, which computes the same values.
        """
        index = self.constant(torch.arange(start, stop, dtype=torch.int32), "columns")
        return self.out(self.network.add_gather(x, index, len(x.shape) - 1), "columns")

    def transpose(self, x, perm: list[int]):
        layer = self.network.add_shuffle(x)
        layer.first_transpose = tuple(perm)
        return self.out(layer, "transpose")

    def to_rank(self, x, rank: int):
        """Prepend size-1 dims so x has `rank` dims (numpy broadcasting)."""
        missing = rank - len(x.shape)
        if missing <= 0:
            return x
        if all(d >= 0 for d in x.shape):
            return self.reshape(x, [1] * missing + list(x.shape))
        shape = self.shape_tensor([1] * missing + [self.dim(x, i) for i in range(len(x.shape))])
        layer = self.network.add_shuffle(x)
        layer.set_input(1, shape)
        return self.out(layer, "unsqueeze")

    def elementwise(self, a, b, op):
        rank = max(len(a.shape), len(b.shape))
        a, b = self.to_rank(a, rank), self.to_rank(b, rank)
        return self.out(self.network.add_elementwise(a, b, op), "elementwise")
