"""Replays of TensorRT's MATRIX_MULTIPLY and EINSUM layers; the reading rules are in ditto/replay/layer_args.py."""

from __future__ import annotations

import torch

from ditto.replay.layer_args import HALF, widen
from ditto.replay.registry import LayerCall, replays

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
    native = a.is_cuda and a.dtype in HALF
    x, y = (a, b) if native else (widen(a), widen(b))
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
    return torch.einsum(call.attr("equation"), *[widen(t) for t in operands]).to(operands[0].dtype)
