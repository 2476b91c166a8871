"""`verify_build` (ditto build --verify): every output of the built network, each FX node added
as an extra output included, matches the FX graph it was built from; a broken converter shows."""

import logging

import pytest
import torch

from ditto.errors import DittoError
from ditto.graph.nodes import SLICE_END
from ditto.models.tiny import TINY_MODELS
from ditto.pipeline import load_program
from ditto.replay.verify import verify_build
from ditto.trt.attention_native import POOL_OUTPUT
from ditto.trt.network import NetworkLimits, build_network
from tests.needs_tensorrt import tensorrt_or_skip
from tests.parity import bound

trt = tensorrt_or_skip("tensorrt_rtx")
LIMITS = NetworkLimits(max_batch_size=4, max_seq_len=64, max_num_tokens=64)


def _program(model, dtype=torch.float32):
    logging.getLogger("torch").setLevel(logging.WARNING)
    return load_program(model, dtype, tokens_per_block=32)


def _tensor_nodes(program) -> dict[str, str]:
    """Every call_function node with one floating-point tensor value, as an extra output
    (except those named like an engine output: `logits` is one already)."""
    return {
        n.name: n.name
        for n in program.graph_module.graph.nodes
        if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor) and n.meta["val"].is_floating_point()
        and n.name not in program.output_names
    }


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_every_added_output_matches_its_fx_node(model):
    program = _program(model)
    extra = _tensor_nodes(program)
    built = build_network(program, trt, LIMITS, extra)
    report = verify_build(program, built.network, trt, extra, LIMITS.max_seq_len, steps=2, relative=True)
    assert set(report) == {"logits", POOL_OUTPUT, *extra}
    worst = max(report, key=report.get)
    assert report[worst] <= bound(torch.float32), (worst, report[worst])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_networks(dtype):
    # both sides round every op to `dtype` (bfloat16 constants are read through the raw buffer)
    program = _program("tiny-llama", dtype)
    built = build_network(program, trt, LIMITS, {"mul_13": "mul_13"})
    report = verify_build(program, built.network, trt, {"mul_13": "mul_13"}, LIMITS.max_seq_len, steps=2, relative=True)
    assert max(report.values()) <= bound(dtype), report


def test_verify_shows_a_wrong_slice(monkeypatch):
    import ditto.trt.converters as converters

    original = converters.CONVERTERS[torch.ops.aten.slice.Tensor]

    def off_by_one(ctx, x, dim=0, start=None, end=None, step=1):
        shifted = start and end not in (None, SLICE_END)
        return original(ctx, x, dim, start - 1, end - 1, step) if shifted else original(ctx, x, dim, start, end, step)

    monkeypatch.setitem(converters.CONVERTERS, torch.ops.aten.slice.Tensor, off_by_one)
    program = _program("tiny-llama")
    built = build_network(program, trt, LIMITS)
    report = verify_build(program, built.network, trt, {}, LIMITS.max_seq_len)
    assert report["logits"] > 1e-2, report


def test_outputs_without_an_fx_counterpart_are_an_error():
    program = _program("tiny-gpt2")
    node = next(iter(_tensor_nodes(program)))
    built = build_network(program, trt, LIMITS, {"renamed": node})
    with pytest.raises(DittoError, match="'renamed'.*no FX counterpart"):
        verify_build(program, built.network, trt, {}, LIMITS.max_seq_len)
