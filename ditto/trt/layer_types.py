"""A TensorRT layer as its concrete `I*Layer` class: the one lookup the network printer
(ditto.debug.network_def) and the replay (ditto.replay.network) share.

`INetworkDefinition.get_layer` returns a bare `ILayer`; the Python bindings expose a layer's own
attributes (`op0`, `reshape_dims`, ...) only on its concrete class, found from its `LayerType`
name (`ELEMENTWISE` -> `IElementWiseLayer`; `CONDITIONAL_INPUT` -> `IIfConditionalInputLayer`).
Works for `tensorrt` and `tensorrt_rtx` alike: the module is the one the layer came from.
"""

from __future__ import annotations

import functools


def typed_layer(trt, layer) -> tuple[str, object]:
    """(LayerType name, `layer` cast to its concrete class). The type is read before the cast
    because some concrete classes (IActivationLayer) reuse `type` for their own attribute."""
    kind = layer.type.name
    cls = layer_classes(trt).get(_key(kind))
    if cls is not None and not isinstance(layer, cls):
        layer.__class__ = cls
    return kind, layer


@functools.cache
def layer_classes(trt) -> dict[str, type]:
    """`I*Layer` classes of the module (ILayer itself excluded), keyed like `LayerType` names
    without underscores, lower case; `IIf*` classes also without their `If`."""
    classes = {}
    for name in dir(trt):
        cls = getattr(trt, name)
        if name.startswith("I") and name.endswith("Layer") and isinstance(cls, type) and issubclass(cls, trt.ILayer) \
                and cls is not trt.ILayer:
            key = _key(name[1 : -len("Layer")])
            classes[key] = cls
            if key.startswith("if"):  # LayerType.CONDITIONAL_INPUT is IIfConditionalInputLayer
                classes[key[2:]] = cls
    return classes


def _key(name: str) -> str:
    return name.replace("_", "").lower()
