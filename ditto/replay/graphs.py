"""A replay plan's device work recorded as CUDA graphs, one per input-shape signature.

A replay step launches thousands of layers from Python; on a GPU the launches, not the
arithmetic, set the step time. Once the constants are kept (`ReplayPlan` folded), a run is
split in two: the host layers (shape arithmetic, `ReplayPlan.host`) run in Python as before,
then the device layers run as one recorded CUDA graph. What a device layer does is fixed by
its attributes and by what it reads on the host: the shapes of its device inputs and the
values of the host tensors it reads as numbers (dims, slice bounds, gather indices). Those
make the signature; a run whose signature was recorded replays the graph, any other runs
layer by layer and records its device work for the next run of that signature. Device inputs are copied into the
graph's own input buffers (a donated input, the KV pool, is the caller's own tensor: its
address is part of the signature); host tensors that device layers read as data are copied
into device buffers first. The outputs are copied out of the graph's buffers (the next replay
overwrites them), except donated inputs written in place.

A layer that must read a device value on the host cannot be recorded (the recording raises);
its signature is then marked and runs layer by layer, as without graphs. Checks for inputs
TensorRT leaves undefined become device-side asserts while recording (`LayerCall.undefined_if`).
All graphs share one memory pool; the number of recorded signatures is bounded (`MAX_GRAPHS`,
the oldest is dropped).
"""

from __future__ import annotations

import collections
import logging

import torch

_log = logging.getLogger(__name__)

MAX_GRAPHS = 8  # signatures kept: a context step and decode steps a block of positions apart


class CudaGraphRecorder:
    """Records a function's device work as a CUDA graph; all graphs share one memory pool."""

    def __init__(self, device):
        self.device, self.pool = device, None

    def record(self, body):
        """A function that replays what `body` launched (`body` runs once, recorded, not executed)."""
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                body()
        finally:
            torch.cuda.synchronize(self.device)
        self.pool = graph.pool()
        return graph.replay


class StepGraphs:
    """The recorded graphs of one plan, by input signature (see the module docstring).

    The host layers need, besides host values, the shapes of some device tensors (a SHAPE
    layer of an activation). A run first computes the host layers taking those shapes from the
    most recently used recording, then its signature: if it is that recording's, every device
    layer sees the inputs it was recorded with, so the shapes taken were the true ones and the
    recording replays. Otherwise the run goes layer by layer (host and device interleaved, as
    without graphs), and its device work is recorded for the next run of its signature.
    """

    def __init__(self, plan, recorder=None):
        self.plan = plan
        self.recorder = recorder or CudaGraphRecorder(plan.device)
        steps = plan.run_steps
        host = plan.host
        self.host_steps = [s for s in steps if s.on_host]
        self.device_steps = [s for s in steps if not s.on_host]
        # device tensors whose shape a host layer reads (SHAPE of an activation)
        self.shaped = list(dict.fromkeys(n for s in self.host_steps for n in s.ins if n is not None and n not in host
                                         and s.kind == "SHAPE"))
        reads, data = {}, {}
        for step in self.device_steps:
            for i, name in enumerate(step.ins):
                if name is not None and name in host:
                    (reads if i in step.host_read else data)[name] = None
        self.host_reads = list(reads)  # host tensors device layers read as numbers: values in the signature
        self.host_data = list(data)  # host tensors device layers read as data: copied to the device
        self.device_inputs = [n for n in plan.declared_inputs if n not in host]
        self.graphs: collections.OrderedDict = collections.OrderedDict()  # signature -> _Recorded | None
        self.recorded = 0  # signatures recorded so far (tests, benches)

    def signature(self, values: dict) -> tuple:
        parts = []
        for name in self.device_inputs:
            v = values[name]
            parts.append((name, tuple(v.shape), v.dtype, v.data_ptr() if name in self.plan.donated else None))
        for name in self.host_data:
            v = values[name]
            parts.append((name, tuple(v.shape), v.dtype))
        for name in self.host_reads:
            parts.append((name, tuple(values[name].reshape(-1).tolist())))
        return tuple(parts)

    def run(self, values: dict) -> dict:
        """The outputs of one run (`values`: the network inputs and kept constants)."""
        recorded = next((g for g in reversed(self.graphs.values()) if g is not None), None)
        for _ in range(2):  # the most recent recording, then the one the first try's signature names
            if recorded is None:
                break
            trial = dict(values)
            # device activations whose shape a host layer reads: stand-ins of the recorded shape
            trial.update((name, torch.empty(shape, device="meta")) for name, shape in recorded.shapes.items()
                         if name not in values)
            for step in self.host_steps:
                self.plan._execute(step, trial, free=False)  # a host value may feed a later device layer
            key = self.signature(trial)
            if key == recorded.key:
                self.graphs.move_to_end(key)
                return recorded.replay(trial)
            recorded = self.graphs.get(key)
        return self._run_and_record(values)

    def _run_and_record(self, values: dict) -> dict:
        """Layer by layer; then the device work is recorded for this signature (if not known)."""
        plan = self.plan
        inputs = {name: values[name] if name in plan.donated else values[name].clone() for name in self.device_inputs}
        shapes = {}
        host = {name: value for name, value in values.items() if name in plan.host}  # what the recording bakes in
        for step in plan.run_steps:
            if step.on_host and step.kind == "SHAPE" and step.ins[0] in self.shaped:
                shapes[step.ins[0]] = tuple(values[step.ins[0]].shape)
            plan._execute(step, values)
            if step.on_host:
                host.update((name, values[name]) for name, _, _ in step.outs if name in values)
        outputs = {name: values[name] for name in plan.wanted}
        key = self.signature({**host, **inputs})
        if key not in self.graphs:
            base = dict(host)
            base.update((name, plan.constants[name]) for name in plan.kept_names)
            base.update(inputs)
            self.graphs[key] = self._record(key, base, inputs, shapes)
            if len(self.graphs) > MAX_GRAPHS:
                self.graphs.popitem(last=False)
        return outputs

    def _record(self, key, base: dict, inputs: dict, shapes: dict):
        plan = self.plan
        copies = {name: torch.empty(base[name].shape, dtype=base[name].dtype, device=plan.device)
                  for name in self.host_data}
        outputs = {}

        def body():
            recording = dict(base)
            for step in self.device_steps:
                plan._execute(step, recording, copies, capturing=True)
            outputs.update((name, recording[name]) for name in plan.wanted)

        try:
            replay = self.recorder.record(body)
        except Exception as e:  # a layer read a device value on the host: not recordable
            _log.info("replay: this input signature runs layer by layer (cannot record a CUDA graph: %s)", e)
            return None
        self.recorded += 1
        return _Recorded(key, replay, inputs, copies, outputs, shapes, plan.donated)


class _Recorded:
    def __init__(self, key, replay, inputs: dict, copies: dict, outputs: dict, shapes: dict, donated):
        self.key, self.run, self.inputs, self.copies, self.outputs = key, replay, inputs, copies, outputs
        self.shapes = shapes  # device tensor -> shape, for the host layers that read it
        self.donated = {inputs[name].untyped_storage().data_ptr() for name in donated if name in inputs}

    def replay(self, values: dict) -> dict:
        for name, buffer in self.inputs.items():
            if buffer.data_ptr() != values[name].data_ptr():
                buffer.copy_(values[name], non_blocking=True)
        for name, buffer in self.copies.items():
            buffer.copy_(values[name], non_blocking=True)
        self.run()
        # the graph's output buffers are overwritten by its next replay: copied out, except a donated
        # input written in place (the caller's own tensor)
        return {name: t if t.untyped_storage().data_ptr() in self.donated else t.clone()
                for name, t in self.outputs.items()}
