"""What `ditto.patches` does to TensorRT-LLM, as plain functions that need no TensorRT-LLM.

Importing `ditto.patches` patches TensorRT-LLM and so requires it; the logic lives here so it
can be tested anywhere. Networks are any TensorRT `INetworkDefinition` (`tensorrt` or
`tensorrt_rtx`), used only through the generic layer/tensor API.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ditto.errors import DittoError

ADD_OUTPUT_ENV = "TRTLLM_ADD_OUTPUT"

# (major, minor) -> the release line whose sources the patched functions were read from.
# Add a line only after reading every function ditto.patches wraps in that release.
SUPPORTED_TRTLLM_VERSIONS = {
    (1, 2): "1.2.x",
    (0, 20): "0.20.x",
}

# The layer TRTLLM_ADD_OUTPUT adds per alias: an identity, so the original tensor keeps its name.
ADDED_OUTPUT_LAYER_PREFIX = "ditto/add_output/"

# Where examples/run.py lives: the release container (WORKDIR /app/tensorrt_llm, `COPY examples
# examples` in docker/Dockerfile.multi), then the seed's /workspace layout.
DEFAULT_RUN_PY = (Path("/app/tensorrt_llm/examples/run.py"), Path("/workspace/tensorrt_llm/examples/run.py"))
EXAMPLES_DIR_ENV = "TRTLLM_EXAMPLES_DIR"


def check_trtllm_version(version: str) -> str:
    """The supported release line `version` belongs to; DittoError naming both otherwise."""
    match = re.match(r"^\s*(\d+)\.(\d+)\.", str(version))
    line = SUPPORTED_TRTLLM_VERSIONS.get((int(match[1]), int(match[2]))) if match else None
    if line is None:
        supported = ", ".join(SUPPORTED_TRTLLM_VERSIONS.values())
        raise DittoError(
            f"ditto.patches does not know TensorRT-LLM {version}: it patches TensorRT-LLM internals "
            f"(Builder.build_engine, GenerationSession.dump_debug_buffers) and was written against "
            f"{supported} only. Use a supported release, or read those functions in {version} and "
            "add its line to SUPPORTED_TRTLLM_VERSIONS in ditto/debug/trtllm.py"
        )
    return line


def parse_add_output(text: str | None) -> dict[str, str]:
    """`TRTLLM_ADD_OUTPUT` as {TensorRT layer name: alias}; unset or blank means none."""
    if text is None or not text.strip():
        return {}
    example = '\'{"<TensorRT layer name>": "<alias>"}\''
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise DittoError(
            f"{ADD_OUTPUT_ENV} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            f"expected an object like {example}"
        ) from None
    if not isinstance(pairs, _Pairs):
        kind = {list: "array", str: "string", type(None): "null", bool: "boolean"}.get(type(pairs), "number")
        raise DittoError(
            f"{ADD_OUTPUT_ENV} must be a JSON object mapping TensorRT layer names to aliases, "
            f"got a JSON {kind}; expected an object like {example}"
        )
    spec: dict[str, str] = {}
    layers_of: dict[str, list[str]] = {}
    for layer, alias in pairs:
        if layer in spec:
            raise DittoError(f"{ADD_OUTPUT_ENV} names layer {layer!r} twice; give each layer once")
        if not isinstance(alias, str) or not alias or not layer:
            shown = json.dumps(dict(alias) if isinstance(alias, _Pairs) else alias)
            raise DittoError(
                f"{ADD_OUTPUT_ENV}: layer {layer!r} maps to {shown}; layer names and aliases "
                f"must be non-empty strings, as in {example}"
            )
        spec[layer] = alias
        layers_of.setdefault(alias, []).append(layer)
    duplicates = {alias: layers for alias, layers in layers_of.items() if len(layers) > 1}
    if duplicates:
        listing = "; ".join(f"{alias!r} for {', '.join(map(repr, layers))}" for alias, layers in duplicates.items())
        raise DittoError(f"{ADD_OUTPUT_ENV} gives the same alias to several layers ({listing}); aliases become "
                         "engine output names and must be unique")
    return spec


class _Pairs(list):
    """A JSON object's (key, value) pairs in order, duplicates kept (json's object_pairs_hook)."""


def add_outputs(network, spec: Mapping[str, str]) -> list[str]:
    """Mark each named layer's first output as a network output called by its alias.

    The output is an identity of the tensor, so the tensor keeps its name for every other
    consumer. Validates everything before changing the network: unknown layers (with the
    closest names), layers without outputs, aliases clashing with tensor names.
    """
    if not spec:
        return []
    layers = {}
    tensor_names = {network.get_input(i).name for i in range(network.num_inputs)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        layers[layer.name] = layer
        tensor_names.update(layer.get_output(k).name for k in range(layer.num_outputs))
    unknown = [name for name in spec if name not in layers]
    if unknown:
        raise DittoError(_unknown_layers_message(unknown, list(layers)))
    for name, alias in spec.items():
        if layers[name].num_outputs == 0:
            raise DittoError(f"{ADD_OUTPUT_ENV}: layer {name!r} has no output to mark")
        if alias in tensor_names:
            raise DittoError(f"{ADD_OUTPUT_ENV}: alias {alias!r} (for layer {name!r}) is already a tensor name in "
                             "the network; choose another alias")
    for name, alias in spec.items():
        identity = network.add_identity(layers[name].get_output(0))
        identity.name = ADDED_OUTPUT_LAYER_PREFIX + alias
        output = identity.get_output(0)
        output.name = alias
        network.mark_output(output)
    return list(spec.values())


def _unknown_layers_message(unknown: Sequence[str], names: Sequence[str]) -> str:
    lines = [f"{ADD_OUTPUT_ENV} names {len(unknown)} layer(s) the network does not have:"]
    for name in unknown:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = "; closest: " + ", ".join(map(repr, close)) if close else "; no similar layer name"
        lines.append(f"  {name!r}{hint}")
    lines.append("Layer names are the comments above each tensor in trt_network_def.py, which "
                 "scripts/trtllm-build writes into DEBUG_ARTIFACTS_DIR")
    return "\n".join(lines)


@dataclass
class PluginFields:
    """One plugin layer's creation fields, as TensorRT-LLM passed them to the plugin creator."""

    layer: str
    plugin: str
    version: str
    fields: dict[str, np.ndarray]


def plugin_fields(collection) -> dict[str, np.ndarray]:
    """{name: copied values} of a TensorRT `PluginFieldCollection` (or iterable of `PluginField`).

    Read it while the field arrays are alive: a `PluginField` only points at its array.
    """
    return {field.name: np.array(field.data, copy=True) for field in collection}


def format_plugin_fields(records: Sequence[PluginFields]) -> str:
    """`plugin.txt`: one block per plugin layer, one `name: dtype = value` line per field.

    Single values are written as scalars whatever their array rank, so ditto's and
    TensorRT-LLM's files diff line by line.
    """
    lines = ["# Plugin creation fields, one block per plugin layer in network order. Written by ditto."]
    for record in records:
        lines += ["", f"[{record.layer}]", f"# {record.plugin} version {record.version}, {len(record.fields)} fields"]
        for name, values in record.fields.items():
            values = np.asarray(values)
            items = [_field_value(v) for v in values.reshape(-1)]
            if len(items) == 1:
                lines.append(f"{name}: {values.dtype} = {items[0]}")
            else:
                lines.append(f"{name}: {values.dtype}[{len(items)}] = [{', '.join(items)}]")
    return "\n".join(lines) + "\n"


def _field_value(value) -> str:
    if isinstance(value, bytes):
        return repr(value.decode(errors="replace"))
    return str(value)  # numpy scalars print their shortest round-trip form (float32 0.0883883)


def step_dump(buffers: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """One step's engine inputs and outputs as CPU copies, each at the shape the engine used.

    TensorRT-LLM's python session binds some buffers larger than, or shaped differently from,
    what the engine reads (`input_ids` from a [batch, beam] tensor, `logits` from a max-size
    buffer); the engine reads the first numel(shape) elements, so that is what is dumped.
    """
    dump = {}
    for name, tensor in buffers.items():
        tensor = tensor.detach()
        shape = tuple(shapes.get(name, ()))
        if shape and all(d >= 0 for d in shape):
            count = math.prod(shape)
            if tensor.numel() >= count:
                tensor = tensor.reshape(-1)[:count].reshape(shape)
        dump[name] = tensor.to("cpu", copy=True).contiguous()
    return dump


def prepare_build_argv(argv: Sequence[str], artifacts_dir: str | os.PathLike | None) -> list[str]:
    """trtllm-build's arguments, checked and completed for the patches.

    A bare `--visualize_network` (the seed's spelling) gets the artifacts folder as its value:
    trtllm-build's flag takes the directory it writes the network's ONNX to. `--workers N > 1`
    is refused: trtllm-build spawns fresh worker processes that the patches do not reach.
    """
    argv = list(argv)
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if arg.partition("=")[0] == "--workers" and value.isdigit() and int(value) > 1:
            raise DittoError(f"--workers {value}: ditto's patches do not reach the worker processes trtllm-build "
                             "spawns; build with --workers 1 (one engine per rank in turn) or under mpirun")
    for i, arg in enumerate(argv):
        if arg == "--visualize_network" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            if not artifacts_dir:
                raise DittoError("--visualize_network needs a directory (trtllm-build writes the network's ONNX "
                                 "there): give one, or set DEBUG_ARTIFACTS_DIR to use that folder")
            return argv[: i + 1] + [str(artifacts_dir)] + argv[i + 1 :]
    return argv


def find_run_py(environ: Mapping[str, str], defaults: Sequence[Path] = DEFAULT_RUN_PY) -> Path:
    """TensorRT-LLM's examples/run.py, which the installed package does not contain."""
    if environ.get(EXAMPLES_DIR_ENV):
        path = Path(environ[EXAMPLES_DIR_ENV]) / "run.py"
        if path.is_file():
            return path
        raise DittoError(f"{EXAMPLES_DIR_ENV}={environ[EXAMPLES_DIR_ENV]} has no run.py; point it at the "
                         "examples/ folder of the TensorRT-LLM release you have installed")
    for path in defaults:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in defaults)
    raise DittoError(f"cannot find TensorRT-LLM's examples/run.py (tried {tried}); set {EXAMPLES_DIR_ENV} to the "
                     "examples/ folder of the TensorRT-LLM release you have installed")
