"""A TEST DOUBLE of TensorRT's runtime (Runtime / ICudaEngine / IExecutionContext) that executes
the network by ditto's replay instead of a serialized plan.

No TensorRT engine can execute on the CPU machines (TensorRT-RTX's `deserialize_cuda_engine`
needs a CUDA driver), so this double stands in for exactly the part the engine runner
(`ditto.runtime.engine`) cannot reach here: what an engine computes. Everything else the
runner does runs for real against it: the I/O tensor table, dtypes, host/device placement,
optimization-profile bounds, `set_input_shape`, `set_tensor_address` with raw addresses (the
double reads and writes the runner's memory through them, so a wrong, freed or mis-sized
buffer shows up), output shapes queried before execution, and `execute_async_v3`.

What the double assumes, and a real engine may not do alike: tensor location is HOST for
inputs named `host_*` (TensorRT-LLM's convention; a real engine reports its own), and
`get_tensor_shape` of an output computes the step (replay has no separate shape inference;
`execute_async_v3` then reuses that result if the inputs are unchanged). The "plan" is an
opaque key registered with `register` by whoever built the network; the double refuses any
other bytes. Passing tests on this double verify the runner's bookkeeping, never that it
runs on TensorRT.
"""

from __future__ import annotations

import ctypes
import hashlib
import types

import torch

from ditto.replay.network import replay_network
from ditto.replay.registry import torch_dtype


def _key(plan) -> str:
    return hashlib.sha256(bytes(plan)).hexdigest()


class ReplayRuntimeDouble:
    """Stands in for the `tensorrt` module as the runner uses it: `double.module` has `Runtime`,
    `Logger`, `TensorIOMode`, `TensorLocation` (the real enums of `trt`)."""

    def __init__(self, trt):
        self.trt = trt
        self.networks: dict[str, object] = {}  # plan key -> BuiltNetwork (network + profile)
        self.executions = 0
        double = self

        class Runtime:
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, plan):
                built = double.networks.get(_key(plan))
                return None if built is None else EngineDouble(double, built)

        self.module = types.SimpleNamespace(
            __name__=f"replay double of {trt.__name__}", Runtime=Runtime, Logger=trt.Logger,
            TensorIOMode=trt.TensorIOMode, TensorLocation=trt.TensorLocation,
        )

    def register(self, plan: bytes, built) -> None:
        """Make `plan` deserialize to `built` (a ditto.trt.network.BuiltNetwork with live weights)."""
        self.networks[_key(plan)] = built


class EngineDouble:
    def __init__(self, double: ReplayRuntimeDouble, built):
        self.double, self.built, self.network = double, built, built.network
        ins = [self.network.get_input(i) for i in range(self.network.num_inputs)]
        outs = [self.network.get_output(i) for i in range(self.network.num_outputs)]
        self.tensors = {t.name: t for t in ins + outs}
        self.input_names = [t.name for t in ins]
        self.names = [t.name for t in ins + outs]
        self.num_io_tensors = len(self.names)
        self.num_optimization_profiles = 1

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str):
        mode = self.double.trt.TensorIOMode
        return mode.INPUT if name in self.input_names else mode.OUTPUT

    def get_tensor_dtype(self, name: str):
        return self.tensors[name].dtype

    def get_tensor_shape(self, name: str):
        return tuple(self.tensors[name].shape)

    def get_tensor_location(self, name: str):
        location = self.double.trt.TensorLocation
        return location.HOST if name.startswith("host_") else location.DEVICE

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        if profile_index != 0 or name not in self.built.profile:
            raise ValueError(f"no profile {profile_index} shape for {name!r}")
        return [tuple(s) for s in self.built.profile[name]]

    def create_execution_context(self):
        return ContextDouble(self)


class ContextDouble:
    def __init__(self, engine: EngineDouble):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self._computed: tuple | None = None  # (input snapshot, outputs) from the last shape query

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(shape)
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            return False  # TensorRT refuses shapes outside the profile
        self.shapes[name] = shape
        self._computed = None
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.tensors or not address:
            return False
        self.addresses[name] = address
        return True

    def get_tensor_shape(self, name: str):
        if name in self.engine.input_names:
            return self.shapes.get(name, self.engine.get_tensor_shape(name))
        outputs = self._outputs()
        return tuple(outputs[name].shape) if outputs is not None else self.engine.get_tensor_shape(name)

    def execute_async_v3(self, stream_handle: int) -> bool:
        outputs = self._outputs()
        if outputs is None or any(n not in self.addresses for n in self.engine.names):
            return False
        for name, value in outputs.items():
            self._view(name, value.shape).copy_(value)
        self.engine.double.executions += 1
        return True

    def _outputs(self) -> dict | None:
        """The step's outputs (None while an input's shape or address is unset), recomputed when
        the inputs differ from those of the last computation."""
        names = self.engine.input_names
        if any(n not in self.shapes or n not in self.addresses for n in names):
            return None
        inputs = {n: self._view(n, self.shapes[n]).clone() for n in names}  # engine inputs are read-only
        if self._computed is not None and all(torch.equal(inputs[n], self._computed[0][n]) for n in names):
            return self._computed[1]
        with torch.no_grad():
            outputs = replay_network(self.engine.network, {n: v.clone() for n, v in inputs.items()})
        self._computed = (inputs, outputs)
        return outputs

    def _view(self, name: str, shape) -> torch.Tensor:
        """The runner's memory at the address bound to `name`, as a tensor of `shape`."""
        dtype = torch_dtype(self.engine.tensors[name].dtype, name)
        count = 1
        for d in shape:
            count *= d
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        if nbytes == 0:
            return torch.empty(tuple(shape), dtype=dtype)
        buffer = (ctypes.c_char * nbytes).from_address(self.addresses[name])
        return torch.frombuffer(buffer, dtype=dtype).view(tuple(shape))
