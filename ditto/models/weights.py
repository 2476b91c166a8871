"""Lazy weights: what each graph weight is made of, read from safetensors only when asked.

Export runs on the meta device, so the graph never holds real weights. Each weight of the
TensorRT-LLM-form graph is described by a `WeightSource`: a tensor in a checkpoint file, a
tensor kept in memory (non-persistent buffers such as RoPE tables, tiny constants), a
concatenation, slice or transpose of other sources (fused QKV / gate-up projections, experts
in TensorRT-LLM's layout), or the output of one of
transformers' checkpoint converters (per-expert tensors stacked into 3-D, see
`ditto.models.conversion`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ditto.errors import DittoError


@dataclass(frozen=True)
class CheckpointTensor:
    """A tensor stored under `key` in a safetensors file."""

    file: Path
    key: str


@dataclass(frozen=True)
class InMemoryTensor:
    """A tensor computed at load or pass time (buffers, RoPE tables, constants)."""

    tensor: torch.Tensor


@dataclass(frozen=True)
class Concat:
    """Sources concatenated along `dim` (fused projections)."""

    parts: tuple["WeightSource", ...]
    dim: int = 0


@dataclass(frozen=True)
class Narrow:
    """`length` entries of a source from `start` along `dim`, every `step`-th (half of a fused
    gate/up weight; step 2: one half of an interleaved one, GPT-OSS)."""

    part: "WeightSource"
    dim: int
    start: int
    length: int
    step: int = 1


@dataclass(frozen=True)
class Transposed:
    """A source with dims `dim0` and `dim1` swapped (weights stored [in, out] per expert)."""

    part: "WeightSource"
    dim0: int
    dim1: int


@dataclass(frozen=True)
class Converted:
    """Parameter `target` as transformers' `converter` (a `core_model_loading.WeightConverter`)
    makes it from checkpoint tensors `parts` ((source pattern, tensor) in load order);
    `first_target` is the name transformers files the whole conversion under."""

    converter: Any = field(compare=False)
    parts: tuple[tuple[str, CheckpointTensor], ...]
    first_target: str
    target: str
    config: Any = field(default=None, compare=False)
    # (name, shape) of every parameter the conversion produces: some operations size their
    # outputs by the model's parameters (`Split` of a fused QKV by each target's rows)
    target_shapes: tuple[tuple[str, tuple[int, ...]], ...] = field(default=(), compare=False)


WeightSource = CheckpointTensor | InMemoryTensor | Concat | Narrow | Transposed | Converted


@dataclass
class WeightSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    source: WeightSource


class WeightTable:
    """name -> WeightSpec; names are valid Python identifiers (graph attribute names)."""

    def __init__(self) -> None:
        self._specs: dict[str, WeightSpec] = {}

    def add(self, name: str, spec: WeightSpec) -> None:
        self._specs[name] = spec

    def remove(self, name: str) -> None:
        self._specs.pop(name, None)

    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> WeightSpec:
        return self._specs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def nbytes(self) -> int:
        return sum(_numel(s.shape) * s.dtype.itemsize for s in self._specs.values())

    def load(self, name: str) -> torch.Tensor:
        """Read weight `name` now, in its recorded dtype."""
        spec = self._specs[name]
        tensor = read_source(spec.source)
        if tuple(tensor.shape) != tuple(spec.shape):
            raise DittoError(
                f"weight {name!r} has shape {tuple(tensor.shape)} in the checkpoint but the model expects "
                f"{tuple(spec.shape)}; check that config.json matches the safetensors files"
            )
        return tensor.to(spec.dtype)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def read_source(source: WeightSource) -> torch.Tensor:
    if isinstance(source, InMemoryTensor):
        return source.tensor
    if isinstance(source, Concat):
        return torch.cat([read_source(p) for p in source.parts], dim=source.dim)
    if isinstance(source, Narrow):
        tensor = read_source(source.part)
        if source.step != 1:
            rows = torch.arange(source.start, source.start + source.step * source.length, source.step)
            return tensor.index_select(source.dim, rows).contiguous()
        return tensor.narrow(source.dim, source.start, source.length).contiguous()
    if isinstance(source, Transposed):
        return read_source(source.part).transpose(source.dim0, source.dim1).contiguous()
    if isinstance(source, Converted):
        from ditto.models.conversion import run_converter

        return run_converter(source)
    from safetensors import safe_open

    try:
        with safe_open(str(source.file), framework="pt") as f:
            return f.get_tensor(source.key)
    except FileNotFoundError:
        raise DittoError(f"weight file {source.file} disappeared; re-download or re-save the model") from None
