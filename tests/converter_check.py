"""Converters checked on small exported modules: a real TensorRT-RTX network, checked three ways.

1. The network's outputs have the FX graph's dtypes and ranks, with -1 exactly where the
   graph's dims are symbolic (no size baked in from the example input).
2. TensorRT's builder accepts the network with a profile around the example sizes.
3. `ditto.replay` (TensorRT's documented layer semantics in torch) computes what the module
   computes, on the example input and on inputs of other sizes along the dynamic dims.

Used by the converter tests (tests/trt/) and by the tests of ops whose lowering is a converter
(tests/ops/, tests/pipeline/).
"""

import operator

import torch
from torch.export import Dim

from ditto.passes.complex_to_real import complex_to_real_graph
from ditto.passes.functionalize_inplace import functionalize_graph
from ditto.replay.network import replay_network
from ditto.trt.context import ConversionContext
from ditto.trt.network import convert_graph
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip("tensorrt_rtx")
N = Dim("n", min=3, max=64)  # from 3: export specialises sizes 0, 1 (and 2 after x[1:])


class Converted:
    """A network and what it needs alive: its builder and the tensors its constants point into."""

    def __init__(self, network, builder, keep_alive):
        self.network, self.builder, self.keep_alive = network, builder, keep_alive


def convert(module, args, dynamic=None):
    """(Converted, exported graph module) for `module` exported on `args`; in-place ops are
    made out of place and complex values real first, as the pipeline's first passes do."""
    gm = torch.export.export(module, args, dynamic_shapes=(dynamic,) if dynamic else None).module()  # forward(*args)
    for node in [n for n in gm.graph.nodes if n.op == "call_module"]:  # export's guard call
        gm.graph.erase_node(node)
    functionalize_graph(gm.graph)
    complex_to_real_graph(gm.graph)
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    ctx = ConversionContext(trt, network)

    def placeholder(node):
        val = node.meta["val"]
        shape = tuple(d if isinstance(d, int) else -1 for d in val.shape)
        return network.add_input(node.name, ctx.dtype(val.dtype), shape)

    def get_attr(node):
        return ctx.constant(operator.attrgetter(node.target)(gm), "weight")

    values = convert_graph(ctx, gm.graph, placeholder, get_attr)
    for i, tensor in enumerate(values):
        tensor.name = f"out{i}"
        network.mark_output(tensor)
    return Converted(network, builder, ctx.keep_alive), gm


def check(module, args, dynamic=None, others=(), rtol=1e-5, atol=1e-6, build=True):
    """Convert, check I/O against the graph, build an engine, replay `args` and each of `others`."""
    converted, gm = convert(module, args, dynamic)
    network = converted.network
    outputs = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    for i, node in enumerate(outputs):
        val, tensor = node.meta["val"], network.get_output(i)
        assert tensor.dtype == getattr(trt, str(val.dtype).removeprefix("torch.")), node.name
        assert tuple(tensor.shape) == tuple(d if isinstance(d, int) else -1 for d in val.shape), node.name
    if build:
        assert_builds(converted, args, others)
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    for example in (args, *others):
        expected = module(*example)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = replay_network(network, dict(zip(names, example)))
        for i, value in enumerate(expected):
            actual = got[f"out{i}"]
            assert actual.dtype == value.dtype and actual.shape == value.shape
            torch.testing.assert_close(actual, value, rtol=rtol, atol=atol)
    return converted


def assert_builds(converted, args, others):
    """TensorRT's builder accepts the network with a profile spanning the sizes of `args` and `others`."""
    network, builder = converted.network, converted.builder
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        sizes = [tuple(example[i].shape) for example in (args, *others)]
        lo = tuple(min(s[d] for s in sizes) for d in range(len(tensor.shape)))
        hi = tuple(max(s[d] for s in sizes) for d in range(len(tensor.shape)))
        profile.set_shape(tensor.name, lo, sizes[0], hi)
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


class Fn(torch.nn.Module):
    """A module computing `fn(self, *args)`, with `params` as its (frozen) weights."""

    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for name, value in params.items():
            setattr(self, name, torch.nn.Parameter(value, requires_grad=False))

    def forward(self, *args):
        return self.fn(self, *args)


def rows(n, width=8, dtype=torch.float32, seed=0):
    """`n` seeded random rows of `width` values of size ~2, in `dtype`."""
    return (torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) * 2).to(dtype)
