"""`trt_network_def.py`: a TensorRT network definition as readable Python text.

One writer for every network ditto looks at: ditto's own builds and `trtllm-build` under
`ditto.patches`, so the two files can be read side by side and diffed. Only the generic
`INetworkDefinition` / `ILayer` / `ITensor` API is used, so it works for `tensorrt` and
`tensorrt_rtx` alike.

The text is valid Python syntax but is meant for reading, not running. Each layer is one
statement; the comment right above it is the name of the layer that produces the tensors the
statement assigns (the names `TRTLLM_ADD_OUTPUT` takes). `t["name"]` is the tensor called `name`:

    # LLaMAForCausalLM/transformer/layers/0/mlp/fc/MATRIX_MULTIPLY_0
    t["..._output_0"] = MATRIX_MULTIPLY(t["a"], t["b"], op0=MatrixOperation.NONE, ...)  # float16[-1, 11008]
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from ditto.trt.layer_types import typed_layer

# Arrays with at most this many elements are written out in full (scales, epsilons, shapes).
MAX_INLINE_ELEMENTS = 16

_DTYPE_NAMES = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
    "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8_e4m3", "INT4": "int4",
    "FP4": "float4_e2m1", "E8M0": "float8_e8m0",
}


def write_network_definition(network, path: str | os.PathLike) -> Path:
    """Write `network_definition_text(network)` to `path` atomically; returns the path."""
    from ditto import fsutil

    return fsutil.write_text(path, network_definition_text(network))


def network_definition_text(network) -> str:
    """The network as readable Python text: inputs, one statement per layer, outputs."""
    lines = [
        f"# TensorRT network {network.name!r}: {network.num_inputs} inputs, {network.num_layers} layers, "
        f"{network.num_outputs} outputs.",
        "# Written by ditto for reading and diffing, not for running. Each statement is one layer; the",
        "# comment right above it is the name of the layer producing the tensors it assigns.",
        '# t["name"] is the tensor called "name"; the comment after a statement gives dtype[shape].',
        "",
        "t = {}",
        "",
        "# inputs",
    ]
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        args = [f"dtype={dtype_name(tensor.dtype)!r}", f"shape={_value(tuple(tensor.shape))}"]
        location = getattr(tensor, "location", None)  # TensorRT-RTX has no host tensors
        if location is not None and location.name != "DEVICE":
            args.append(f"location={_enum(location)}")
        lines.append(f"{_ref(tensor)} = INPUT({', '.join(args)})")
    for i in range(network.num_layers):
        _, layer = typed_layer(sys.modules[type(network).__module__], network.get_layer(i))
        lines += ["", f"# {layer.name}", _layer_statement(layer)]
    lines += ["", "# outputs", "OUTPUTS = ["]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    lines += [f"    {_ref(tensor)},  # {_tensor_type(tensor)}" for tensor in outputs]
    lines.append("]")
    return "\n".join(lines) + "\n"


def dtype_name(dtype) -> str:
    """TensorRT `DataType` as the torch-style name people read (`HALF` -> `float16`)."""
    return _DTYPE_NAMES.get(dtype.name, dtype.name.lower())




def _layer_statement(layer) -> str:
    outputs = [layer.get_output(k) for k in range(layer.num_outputs)]
    inputs = [layer.get_input(k) for k in range(layer.num_inputs)]
    args = [_ref(x) if x is not None else "None" for x in inputs]
    args += [f"{name}={text}" for name, text in _attributes(layer)]
    call = f"{layer.type.name}({', '.join(args)})"
    if not outputs:
        return call
    targets = ", ".join(_ref(x) for x in outputs)
    return f"{targets} = {call}  # {', '.join(_tensor_type(x) for x in outputs)}"


def _attributes(layer):
    """(name, python text) for the attributes a layer's concrete class adds to `ILayer`."""
    common = set(dir(sys.modules[type(layer).__module__].ILayer))
    for name in sorted(set(dir(layer)) - common):
        if name.startswith("_"):
            continue
        if name == "weights" and hasattr(layer, "shape"):  # constants: never copy big weights
            yield name, _weights_summary(layer)
            continue
        try:
            value = getattr(layer, name)
        except Exception:  # some getters refuse in some layer states (e.g. dynamic reshape)
            continue
        if callable(value):
            continue
        yield name, _value(value)


def _weights_summary(layer) -> str:
    dims = tuple(layer.shape)
    count = math.prod(dims) if all(d >= 0 for d in dims) else -1
    dtype = dtype_name(layer.get_output(0).dtype)
    if 0 <= count <= MAX_INLINE_ELEMENTS:
        try:
            return _value(np.asarray(layer.weights))
        except Exception:  # weights not set yet (filled later by the builder)
            pass
    return f"Weights(dtype={dtype!r}, shape={_value(dims)})"


def _value(value) -> str:
    """Python text for an attribute value; always valid syntax."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, np.generic):
        return _value(value.item())
    if isinstance(value, np.ndarray):
        if value.size <= MAX_INLINE_ELEMENTS:
            values = ", ".join(_array_item(v) for v in value.reshape(-1))
            return f"array([{values}], dtype={str(value.dtype)!r})"
        return f"Weights(dtype={str(value.dtype)!r}, shape={_value(value.shape)})"
    if hasattr(type(value), "__members__") and hasattr(value, "name"):  # bindings enum
        return _enum(value)
    if hasattr(value, "plugin_type"):  # IPluginV2 on plugin layers
        return (f"Plugin(type={value.plugin_type!r}, version={value.plugin_version!r}, "
                f"namespace={value.plugin_namespace!r})")
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and hasattr(value, "__getitem__")):
        items = [_value(v) for v in list(value)]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(str(value))


def _array_item(value: np.generic) -> str:
    """One array element; floats at their own precision (float32 1e-06, not 9.99999997e-07)."""
    if isinstance(value, np.floating):
        return str(value) if np.isfinite(value) else f"float({str(value)!r})"
    return repr(value.item())


def _enum(value) -> str:
    return f"{type(value).__name__}.{value.name}"


def _ref(tensor) -> str:
    return f"t[{tensor.name!r}]"


def _tensor_type(tensor) -> str:
    shape = tuple(tensor.shape)
    return f"{dtype_name(tensor.dtype)}[{', '.join(str(d) for d in shape)}]"
