"""ditto.trt.layer_types: every TensorRT layer kind finds its concrete I*Layer class, and the
network printer and the replay use this one lookup."""


from ditto.trt.layer_types import layer_classes, typed_layer
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip()  # tensorrt where installed, else tensorrt_rtx

# LayerType members the installed bindings give no class of their own (read as a bare ILayer)
WITHOUT_CLASS = {"PLUGIN"}


def test_every_layer_kind_has_its_concrete_class():
    found = {}
    for kind in trt.LayerType.__members__:
        cls = layer_classes(trt).get(kind.replace("_", "").lower())
        if kind in WITHOUT_CLASS and cls is None:
            continue
        assert cls is not None, f"LayerType.{kind} has no I*Layer class"
        found[kind] = cls.__name__
    # the two whose class name is not the kind's
    assert found["CONDITIONAL_INPUT"] == "IIfConditionalInputLayer"
    assert found["CONDITIONAL_OUTPUT"] == "IIfConditionalOutputLayer"
    assert found["ELEMENTWISE"] == "IElementWiseLayer" and found["PLUGIN_V2"] == "IPluginV2Layer"
    assert len(set(found.values())) == len(found)  # no two kinds share a class


def test_a_layer_from_the_network_is_cast_and_its_own_attributes_read():
    network = trt.Builder(trt.Logger(trt.Logger.ERROR)).create_network(0)
    x = network.add_input("x", trt.float32, (2, 3))
    network.add_elementwise(x, x, trt.ElementWiseOperation.PROD)
    network.add_activation(x, trt.ActivationType.RELU)
    kind, layer = typed_layer(trt, network.get_layer(0))
    assert kind == "ELEMENTWISE" and type(layer).__name__ == "IElementWiseLayer" and layer.op == trt.ElementWiseOperation.PROD
    kind, layer = typed_layer(trt, network.get_layer(1))  # IActivationLayer.type is its activation, read after
    assert kind == "ACTIVATION" and layer.type == trt.ActivationType.RELU


def test_the_printer_and_the_replay_share_the_lookup():
    import ditto.debug.network_def as network_def
    import ditto.replay.network as replay_network

    assert network_def.typed_layer is typed_layer and replay_network.typed_layer is typed_layer
