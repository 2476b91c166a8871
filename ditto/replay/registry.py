"""The registry of layer replays, and what a replay function sees of its layer.

A replay is one function per TensorRT `LayerType`, in any module of ditto/replay/ (the package
imports them all), added with one line:

    @replays("SHUFFLE", reads=("first_transpose", "reshape_dims", "second_transpose", "zero_is_placeholder"))
    def shuffle(call: LayerCall) -> torch.Tensor: ...

`reads` names every attribute of the layer's concrete class (beyond `ILayer`'s) that the
replay interprets. A layer whose class has an attribute outside that list (a newer TensorRT
added one) is refused, because replay cannot know what it changes; so is an enum value a
replay has no entry for. Refusals raise `ReplayError` naming the layer, its type and the
attribute.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from ditto.errors import DittoError
from ditto.registry import add_unique


class ReplayError(DittoError):
    """Replay met something it cannot compute without guessing (the message says what)."""


# the TensorRT DataType names and their torch dtypes
TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}

# ILayer attributes that do not change what a layer computes in a strongly typed network
NEUTRAL_ATTRIBUTES = frozenset({"metadata"})


@dataclass(frozen=True)
class Replay:
    fn: Callable
    reads: frozenset


REPLAYS: dict[str, Replay] = {}


def replays(layer_type: str, reads: tuple[str, ...] = ()):
    """Register `fn` as the replay of `LayerType.<layer_type>`; `reads`: the attributes it interprets."""

    def wrap(fn):
        add_unique(REPLAYS, layer_type, Replay(fn, frozenset(reads)), f"a replay of LayerType.{layer_type}")
        return fn

    return wrap


def torch_dtype(trt_dtype, what: str = "tensor") -> torch.dtype:
    try:
        return TORCH_DTYPES[trt_dtype.name]
    except KeyError:
        raise ReplayError(f"{what} has TensorRT data type {trt_dtype.name}, which replay does not compute") from None


@dataclass
class LayerCall:
    """One layer being replayed: its concrete-class object, its input values, where to compute."""

    layer: object  # the layer, cast to its concrete I*Layer class
    kind: str  # its LayerType name
    trt: object  # the TensorRT module the network came from
    inputs: list  # torch.Tensor or None per layer input
    device: torch.device
    plugin_fields: dict | None = None  # for plugin layers: the fields the plugin was created with
    # attribute values read at an earlier run of the same layer (a network does not change
    # once built; reading through the bindings costs more than many small torch ops)
    memo: dict | None = None
    # input indices whose tensor the replay may write into instead of copying: the plan found it
    # at its last use, shared with no other live value, not a kept constant, not a caller's input
    # (unless the caller donated it)
    overwritable: frozenset = frozenset()
    # True while the plan records a CUDA graph: the device work is recorded, not run, so a replay
    # must not read device values on the host (see `undefined_if`)
    capturing: bool = False
    # input indices holding host values (shape data the plan computed on the host, never written
    # in place); a plan without a host/device split passes every CPU input
    host_args: frozenset = frozenset()

    @property
    def name(self) -> str:
        return self.layer.name

    def error(self, message: str) -> ReplayError:
        return ReplayError(f"layer {self.name!r} ({self.kind}): {message}")

    def refuse(self, attribute: str, value, why: str = "replay does not know this value") -> ReplayError:
        return self.error(f"{attribute} = {_show(value)}: {why}")

    def undefined_if(self, bad: torch.Tensor, message: str) -> None:
        """Refuse inputs for which TensorRT leaves the result undefined (`bad` true anywhere): an
        error naming the layer; while a CUDA graph is recorded, a device-side assert instead (a
        host read of `bad` would sync the device, which recording does not allow)."""
        if self.capturing:
            torch._assert_async(torch.logical_not(bad.any()), f"layer {self.name!r} ({self.kind}): {message}")
        elif bool(bad.any()):
            raise self.error(message)

    def attr(self, attribute: str):
        if self.memo is None:
            return getattr(self.layer, attribute)
        if attribute not in self.memo:
            self.memo[attribute] = getattr(self.layer, attribute)
        return self.memo[attribute]

    def attr_dims(self, attribute: str) -> list[int] | None:
        """A Dims/Permutation attribute as a list of ints (None stays None)."""
        key = ("dims", attribute)
        if self.memo is not None and key in self.memo:
            return self.memo[key]
        value = self.attr(attribute)
        dims = None if value is None else [int(v) for v in value]
        if self.memo is not None:
            self.memo[key] = dims
        return dims

    def enum(self, attribute: str, table: dict):
        """`table[<the attribute's enum name>]`, refusing names the table lacks."""
        value = self.attr(attribute)
        if value.name not in table:
            raise self.refuse(attribute, value, f"replay knows {', '.join(sorted(table))}")
        return table[value.name]

    def input(self, index: int) -> torch.Tensor:
        value = self.optional(index)
        if value is None:
            raise self.error(f"input {index} is missing")
        return value

    def optional(self, index: int) -> torch.Tensor | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def ints(self, index: int) -> list[int]:
        """A shape-like input (int32/int64 1-D) as Python ints."""
        value = self.input(index)
        if value.dtype not in (torch.int32, torch.int64) or value.dim() > 1:
            raise self.error(f"input {index} should be a 0-D or 1-D int32/int64 tensor, got {value.dtype} {tuple(value.shape)}")
        return [int(v) for v in value.reshape(-1).tolist()]

    def out_dtype(self, index: int = 0) -> torch.dtype:
        return torch_dtype(self.layer.get_output(index).dtype, f"output {index} of layer {self.name!r}")


def _show(value) -> str:
    name = getattr(value, "name", None)
    if name is not None and hasattr(type(value), "__members__"):
        return f"{type(value).__name__}.{name}"
    return repr(value)


@functools.cache
def own_attributes(trt, cls: type) -> frozenset:
    """Public attributes `cls` adds to `ILayer`, methods included (plugins' set_* are refused too)."""
    return frozenset(a for a in dir(cls) if not a.startswith("_")) - frozenset(dir(trt.ILayer))
