"""Walk an `INetworkDefinition` in dependency order and compute every layer in torch.

Only the generic network API is used (`get_layer`, `get_input`/`get_output`, tensor names,
dtypes and shapes), plus each layer's own attributes after casting it to its concrete class,
as TensorRT's Python documentation describes. Layers run in creation order except where a
layer consumes a tensor created after it (`set_input` on an earlier layer): then it waits for
its producer. Each computed output is checked against what the network declares for it: its
data type (the network is strongly typed, so that is exact) and every static dimension. A
replay that disagrees with TensorRT's own shape inference fails there, at that layer.
"""

from __future__ import annotations

import difflib
import heapq
import math
import sys

import torch

from ditto.errors import DittoError
from ditto.replay.registry import (
    NEUTRAL_ATTRIBUTES,
    REPLAYS,
    LayerCall,
    ReplayError,
    own_attributes,
    torch_dtype,
)
from ditto.trt.layer_types import typed_layer


def replay_network(
    network,
    inputs: dict[str, torch.Tensor],
    outputs: list[str] | None = None,
    device: str | torch.device = "cpu",
    plugin_fields: dict[str, dict] | None = None,
) -> dict[str, torch.Tensor]:
    """Compute `network` on `inputs` in torch; returns the tensors named in `outputs`.

    `outputs` may name any tensor of the network (layer outputs too); None means the
    network's marked outputs. Only the layers they depend on are computed (and assertions).
    `plugin_fields` maps a plugin layer's name to the fields its plugin was created with
    (IPluginV2 objects do not expose them; see `ditto.replay.plugin_layers`). Inputs are used as
    they are, except that a KV-cache-update layer writes into its cache input in place, as
    the engine does. To run one network many times, prepare a `ReplayPlan` once.
    """
    return ReplayPlan(network, outputs, device, plugin_fields, keep_constants=False).run(inputs)


class ReplayPlan:
    """A network's replay prepared once and run many times (a stepwise backend runs every step).

    Preparing reads what does not change between runs: the layer order, each layer's replay
    and the checks on its attributes, the declared type and static shape of every output.
    With `keep_constants`, a constant layer's tensor is computed (read from the host and
    uploaded) at its first run and kept on the device: the weights are uploaded once and
    held once. Constants are scheduled right before their first consumer, so a run without
    kept constants holds only the weights in use.

    Layers computed from constants only (a weight's reshape, a cast or transpose of one, a
    shape computed from constant dims) are folded the same way: computed at the first run with
    `keep_constants` and kept, each run after that starts from the kept values. Only what a
    layer of the per-run part (or the caller) reads is kept: a weight whose only consumer is a
    folded transpose is kept once, as the transposed copy. The first run computes every layer
    as `replay_network` does, with the same checks; the folding only skips recomputing, later,
    what cannot change (a layer is a function of its inputs and attributes).

    Shape arithmetic stays on the host: SHAPE outputs, small integer constants, `host_*`
    network inputs and every integer/bool output computed only from such tensors are
    computed on the CPU (the same integer arithmetic), and moved to the device only where a
    device layer reads them. On a GPU this spares a device round trip (a sync) for every
    reshape or slice whose dims come from a tensor.
    """

    def __init__(self, network, outputs=None, device="cpu", plugin_fields=None, keep_constants: bool = True,
                 host_shapes: bool | None = None, donated: frozenset | set = frozenset(),
                 host_inputs: frozenset | set = frozenset(), graphs=False):
        trt = sys.modules[type(network).__module__]  # the bindings module (tensorrt or tensorrt_rtx)
        if not network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED):
            raise DittoError("replay follows strongly typed networks only; create the network with STRONGLY_TYPED")
        self.network, self.trt, self.device = network, trt, torch.device(device)
        self.keep_constants = keep_constants
        self.donated = frozenset(donated)  # network inputs the caller lets layers write into (see run)
        self.constants: dict[str, torch.Tensor] = {}  # output tensor name -> kept value
        self.declared_inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
        layers = dependency_order(network)
        produced = {t.name for layer in layers for t in _outputs(layer)} | set(self.declared_inputs)
        wanted = [network.get_output(i).name for i in range(network.num_outputs)] if outputs is None else list(outputs)
        for name in wanted:
            if name not in produced:
                close = difflib.get_close_matches(name, sorted(produced), n=5)
                raise DittoError(f"the network has no tensor {name!r}; closest: {', '.join(close) or '(none)'}")
        self.wanted = wanted
        layers = _sources_before_first_use(_needed(layers, wanted))
        last_use = {t.name: i for i, layer in enumerate(layers) for t in _inputs(layer) if t is not None}
        on_device = self.device.type != "cpu" if host_shapes is None else host_shapes
        self.host_split = on_device
        # network inputs the caller gives on the host: TensorRT-LLM's host_* and `host_inputs` (values
        # the caller also has there, e.g. sequence lengths, so that shape arithmetic on them needs no sync)
        self.host = ({name for name in self.declared_inputs if name.startswith("host_") or name in host_inputs}
                     if on_device else set())
        self.steps = []
        static = set()  # tensors computed from constants only
        for layer in layers:
            outs = _outputs(layer)
            given = [t.name for t in _inputs(layer) if t is not None]
            kind = layer.type.name
            if outs and (kind == "CONSTANT" or (given and kind in _FOLDABLE and all(n in static for n in given))):
                static.update(t.name for t in outs)
        # folded tensors that the per-run part (or the caller) reads: kept after the first run
        self.frontier = {n for layer in layers if not all(t.name in static for t in _outputs(layer)) or
                         not _outputs(layer) for t in _inputs(layer) if t is not None for n in [t.name] if n in static}
        self.frontier |= static & set(wanted)
        self.folded = False  # True once a run with keep_constants has computed and kept them
        for index, layer in enumerate(layers):
            kind, layer = _checked(trt, layer)
            ins = [None if t is None else t.name for t in _inputs(layer)]
            outs = [(t.name, torch_dtype(t.dtype, f"output {t.name!r}"), _static_shape(t)) for t in _outputs(layer)]
            free = [n for n in dict.fromkeys(ins) if n is not None and last_use[n] == index and n not in wanted]
            host = on_device and _on_host(kind, layer, ins, outs, self.host)
            if host:
                self.host.update(name for name, _, _ in outs)
            step = _Step(layer, kind, REPLAYS[kind].fn, ins, outs, free, (plugin_fields or {}).get(layer.name),
                         torch.device("cpu") if host else self.device)
            step.on_host = host
            step.static = bool(outs) and all(name in static for name, _, _ in outs)
            step.host_read = _HOST_READ.get(kind, frozenset())
            # a host layer's outputs are reused while its inputs are the very same tensors as at the
            # last run (kept constants, reused outputs upstream) or, for SHAPE, of the same shape:
            # replays never write into their host inputs, so equal inputs mean equal outputs
            step.reuse = host and not step.static and keep_constants and (kind == "SHAPE" or bool(ins))
            step.last = None
            step.may_overwrite = _OVERWRITES.get(kind, ())
            self.steps.append(step)
        # after folding, a run skips the static layers: the kept ones are inserted, the others are not needed
        self.run_steps = [step for step in self.steps if not step.static]
        self.kept_names = [name for step in self.steps if step.static for name, _, _ in step.outs
                           if name in self.frontier]
        # graphs: True records the device work of each input signature as a CUDA graph on a CUDA
        # device (ditto.replay.graphs); a recorder object records with it on any device (tests)
        self.graphs = None
        if graphs and keep_constants and (graphs is not True or self.device.type == "cuda"):
            from ditto.replay.graphs import StepGraphs

            self.graphs = StepGraphs(self, None if graphs is True else graphs)

    def kept_bytes(self) -> int:
        """Bytes kept on the device (the weights, once): views of one storage count once."""
        storages = {}
        for t in self.constants.values():
            if t.device.type == self.device.type:
                storage = t.untyped_storage()
                storages[(storage.data_ptr(), t.device)] = storage.nbytes()
        return sum(storages.values())

    def run(self, inputs: dict[str, torch.Tensor], record: bool = True) -> dict[str, torch.Tensor]:
        """The wanted outputs of one run; `record`: this run's device work may be recorded or replayed
        as a CUDA graph (when the plan has graphs), else it runs layer by layer."""
        values = _network_inputs(self.declared_inputs, inputs, self.device, self.host)
        if self.folded:
            values.update((name, self.constants[name]) for name in self.kept_names)
            if self.graphs is not None and record:
                outputs = self.graphs.run(values)
                if outputs is not None:
                    return outputs
            steps = self.run_steps
        else:
            steps = self.steps
        for step in steps:
            self._execute(step, values)
        if self.keep_constants:
            self.folded = True
        return {name: values[name] for name in self.wanted}

    def _execute(self, step, values: dict, copies: dict | None = None, capturing: bool = False,
                 free: bool = True) -> None:
        """Compute one layer into `values`. `copies`: device copies of host tensors that device
        layers read as data (a recorded CUDA graph reads them from there); `free`: drop the
        values whose last use this layer is."""
        args = [None if n is None else values[n] for n in step.ins]
        if step.reuse:  # host shape arithmetic: the same inputs as at the last run give the same outputs
            key = tuple(args[0].shape) if step.kind == "SHAPE" else args
            last = step.last
            if last is not None and (last[0] == key if step.kind == "SHAPE" else
                                     len(last[0]) == len(key) and all(a is b for a, b in zip(last[0], key))):
                for (name, _, _), value in zip(step.outs, last[1]):
                    values[name] = value
                if free:
                    for name in step.free:
                        values.pop(name, None)
                return
        if not step.on_host and (copies is not None or step.device != _CPU):
            # a device layer reads host tensors from the device (from `copies` while recording), except shape data
            args = [a if a is None or i in step.host_read or step.ins[i] not in self.host
                    else copies[step.ins[i]] if copies is not None else a.to(step.device, non_blocking=True)
                    for i, a in enumerate(args)]
        host_args = frozenset(i for i, a in enumerate(args) if a is not None and a.device.type == "cpu"
                              and (not self.host_split or step.ins[i] in self.host))
        call = LayerCall(step.layer, step.kind, self.trt, args, step.device, step.fields, step.memo,
                         self._overwritable(step, args, values) if step.may_overwrite else frozenset(), capturing,
                         host_args)
        timer = getattr(self, "_timer", None)  # bench/replay_profile.py: times each layer
        results = step.fn(call) if timer is None else timer(step, lambda: step.fn(call))
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        if len(results) != len(step.outs):
            raise call.error(f"replay produced {len(results)} outputs, the layer has {len(step.outs)}")
        for k, (name, dtype, shape) in enumerate(step.outs):
            _check_output(call, k, dtype, shape if shape is not None else tuple(step.layer.get_output(k).shape),
                          results[k])
            values[name] = results[k]
        if step.reuse:
            step.last = (key, results)
        if step.static and self.keep_constants:
            self.constants.update((name, values[name]) for name, _, _ in step.outs if name in self.frontier)
        if free:
            for name in step.free:
                values.pop(name, None)

    def _overwritable(self, step, args: list, values: dict) -> frozenset:
        """The inputs of `step` its replay may write into: at their last use, not a caller's
        input (unless donated), and sharing storage with no other live value or kept constant
        (a reshape is a view: writing through one name would change the other)."""
        allowed = set()
        for i in step.may_overwrite:
            name = step.ins[i] if i < len(step.ins) else None
            if (name is None or name not in step.free or step.ins.count(name) > 1
                    or (name in self.declared_inputs and name not in self.donated)):
                continue
            storage = args[i].untyped_storage().data_ptr()
            others = [v for n, v in values.items() if n != name and isinstance(v, torch.Tensor)]
            others += list(self.constants.values())
            if all(v.device != args[i].device or v.untyped_storage().data_ptr() != storage for v in others):
                allowed.add(i)
        return frozenset(allowed)


_CPU = torch.device("cpu")
_INTEGRAL = (torch.int32, torch.int64, torch.int8, torch.uint8, torch.bool)
_SMALL_CONSTANT = 4096  # elements: an integer constant at most this large is shape data


def _on_host(kind: str, layer, ins: list, outs: list, host: set) -> bool:
    """Whether a layer is shape arithmetic, computed on the host (see ReplayPlan)."""
    given = [n for n in ins if n is not None]
    from_host = bool(given) and all(n in host for n in given)
    if not outs:
        return from_host  # an assertion on shape data
    if any(dtype not in _INTEGRAL for _, dtype, _ in outs):
        return False
    if kind == "SHAPE":
        return True
    if kind == "CONSTANT":
        shape = outs[0][2]
        return shape is not None and math.prod(shape) <= _SMALL_CONSTANT
    return from_host


# layer kinds that are functions of their inputs and attributes alone: computed once when every
# input is a constant (not assertions, plugins, attention or cache updates, which act on run state)
_FOLDABLE = frozenset({
    "SHUFFLE", "CAST", "ELEMENTWISE", "UNARY", "GATHER", "SLICE", "CONCATENATION", "SHAPE", "SQUEEZE", "UNSQUEEZE",
    "IDENTITY", "REDUCE", "SELECT", "ACTIVATION", "MATRIX_MULTIPLY", "CUMULATIVE", "SOFTMAX", "NORMALIZATION", "FILL",
})


# inputs that a layer's replay reads as Python numbers (dims, starts, axes, lengths, write
# positions), or, for GATHER's indices, takes on either device: a host tensor there stays on
# the host (moving it to the device and reading it back would cost a device sync per layer)
_HOST_READ = {
    "SHUFFLE": frozenset({1}), "SLICE": frozenset({1, 2, 3, 5}), "FILL": frozenset({0}),
    "SQUEEZE": frozenset({1}), "UNSQUEEZE": frozenset({1}), "CUMULATIVE": frozenset({1}), "GATHER": frozenset({1}),
    "ATTENTION_INPUT": frozenset({5, 6}), "KV_CACHE_UPDATE": frozenset({2, 3}),
}


# layer kinds whose replay can write into an input instead of copying it (LayerCall.overwritable):
# SCATTER's data, the KV pool that every layer of a step writes its new keys and values into
_OVERWRITES = {"SCATTER": (0,)}


class _Step:
    __slots__ = ("layer", "kind", "fn", "ins", "outs", "free", "fields", "device", "memo", "static", "host_read",
                 "reuse", "last", "may_overwrite", "on_host")

    def __init__(self, layer, kind, fn, ins, outs, free, fields, device):
        self.layer, self.kind, self.fn, self.ins, self.outs, self.free, self.fields = layer, kind, fn, ins, outs, free, fields
        self.device = device
        self.memo: dict = {}  # the layer's attributes as read at the first run


def dependency_order(network) -> list:
    """The layers, each after the producers of its inputs, otherwise in creation order."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer = {t.name: i for i, layer in enumerate(layers) for t in _outputs(layer)}
    waits_on = [{producer[t.name] for t in _inputs(layer) if t is not None and t.name in producer} for layer in layers]
    consumers: dict[int, list[int]] = {}
    for i, deps in enumerate(waits_on):
        for d in deps:
            consumers.setdefault(d, []).append(i)
    pending = [len(deps) for deps in waits_on]
    ready = [i for i, n in enumerate(pending) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(layers[i])
        for c in consumers.get(i, ()):
            pending[c] -= 1
            if pending[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(layers):
        stuck = [layers[i].name for i, n in enumerate(pending) if n][:5]
        raise ReplayError(f"layers {stuck} are part of a cycle; a network must be acyclic")
    return order


def _needed(layers: list, wanted: list[str]) -> list:
    """The layers `wanted` depends on, and every assertion (a layer without outputs), in the
    same order; the others are not computed."""
    needed_tensors = set(wanted)
    needed = []
    for layer in reversed(layers):
        outputs = _outputs(layer)
        if not outputs or any(t.name in needed_tensors for t in outputs):
            needed.append(layer)
            needed_tensors.update(t.name for t in _inputs(layer) if t is not None)
    return needed[::-1]


def _sources_before_first_use(layers: list) -> list:
    """The same layers, each layer without inputs (a constant) moved to just before its first
    consumer instead of wherever it was created (ditto creates all weights first)."""
    sources = {id(layer) for layer in layers if layer.num_inputs == 0 and layer.num_outputs}
    pending = {t.name: layer for layer in layers if id(layer) in sources for t in _outputs(layer)}
    order = []
    for layer in layers:
        if id(layer) in sources:
            continue
        for t in _inputs(layer):
            if t is not None and t.name in pending:
                source = pending.pop(t.name)
                for other in _outputs(source):
                    pending.pop(other.name, None)
                order.append(source)
        order.append(layer)
    placed = {id(layer) for layer in order}
    return order + [layer for layer in layers if id(layer) not in placed]


def _checked(trt, layer):
    """(kind, the layer cast to its concrete class), refusing what replay does not interpret."""
    kind, layer = typed_layer(trt, layer)
    replay = REPLAYS.get(kind)
    name = layer.name
    if replay is None:
        raise ReplayError(
            f"layer {name!r} has type {kind}, which replay does not compute; add it in ditto/replay/ "
            "with @replays(...), written from TensorRT's documentation of the layer"
        )
    unknown = own_attributes(trt, type(layer)) - replay.reads - NEUTRAL_ATTRIBUTES
    if unknown:
        raise ReplayError(
            f"layer {name!r} ({kind}) has attribute(s) {', '.join(sorted(unknown))} that replay does not "
            "interpret (a newer TensorRT?); teach its replay in ditto/replay/ what they mean"
        )
    if getattr(layer, "num_ranks", 1) != 1:
        raise ReplayError(f"layer {name!r} ({kind}): num_ranks = {layer.num_ranks}: replay runs one rank")
    return kind, layer


def _static_shape(tensor) -> tuple | None:
    """The declared shape, or None when TensorRT cannot infer it (read again, and failing, at
    the check: the layer's replay gets to refuse the case first)."""
    try:
        return tuple(tensor.shape)
    except RuntimeError:
        return None


def _check_output(call: LayerCall, index: int, declared: torch.dtype, shape: tuple, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise call.error(f"replay produced {type(value).__name__} for output {index}, not a tensor")
    if value.dtype != declared:
        raise call.error(f"replay computed output {index} as {value.dtype}, the network declares {declared}")
    if len(shape) != value.dim() or any(d >= 0 and d != v for d, v in zip(shape, value.shape)):
        raise call.error(f"replay computed output {index} with shape {tuple(value.shape)}, the network declares {shape}")


def _network_inputs(declared: dict, inputs: dict, device, host: set = frozenset()) -> dict:
    missing = sorted(set(declared) - set(inputs))
    extra = sorted(set(inputs) - set(declared))
    if missing or extra:
        raise DittoError(
            f"replay inputs do not match the network's: missing {missing or 'none'}, not inputs of the network "
            f"{extra or 'none'}; the network takes {sorted(declared)}"
        )
    values = {}
    for name, tensor in declared.items():
        value = inputs[name]
        dtype = torch_dtype(tensor.dtype, f"network input {name!r}")
        shape = tuple(tensor.shape)
        if value.dtype != dtype or value.dim() != len(shape) or any(d >= 0 and d != v for d, v in zip(shape, value.shape)):
            raise DittoError(
                f"input {name!r} is {value.dtype} {tuple(value.shape)}; the network takes {dtype} {shape} (-1: any)"
            )
        target = _CPU if name in host else device
        # a host input is copied: a fresh tensor every run (never the caller's, which it may
        # change in place), so host layers reading it are recomputed (ReplayPlan.run reuses by identity)
        values[name] = value.clone() if name in host and value.device == target else value.to(target)
    return values


def _inputs(layer):
    return [layer.get_input(i) for i in range(layer.num_inputs)]


def _outputs(layer):
    return [layer.get_output(i) for i in range(layer.num_outputs)]
