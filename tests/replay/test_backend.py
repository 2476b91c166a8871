"""Replay of ditto's own networks: the `replay` backend against `fx` and `hf` on every tiny
model, and deliberately broken converters that replay must catch. Layer-level tests, on
networks built by hand, are in test_replay_layers.py.
"""

import pytest
import torch

from ditto.graph.nodes import SLICE_END
from ditto.models.tiny import TINY_MODELS
from ditto.runtime.backend import get_backend
from tests.parity import FLOAT32_BOUND, forced_request, worst_errors

pytestmark = pytest.mark.needs_tensorrt  # every test runs the replay backend


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_replay_matches_fx_and_hf(model):
    request = forced_request(model)
    replayed = get_backend("replay").run(request)
    for reference in (get_backend("fx").run(request), get_backend("hf").run(request)):
        errors = worst_errors(reference, replayed)
        assert set(errors) >= {"logits", "layers.0.attn", "layers.0.mlp", "layers.1.out", "final_norm"}
        assert max(errors.values()) <= FLOAT32_BOUND, errors


def _wrong_permutation(original):
    """linear whose square weight gets an extra transpose (a shuffle with permutation (1, 0))."""

    def linear(ctx, x, weight, bias=None):
        if len(weight.shape) == 2 and weight.shape[0] == weight.shape[1]:
            weight = ctx.transpose(weight, [1, 0])
        return original(ctx, x, weight, bias)

    return linear


def _wrong_slice(original):
    def slice_tensor(ctx, x, dim=0, start=None, end=None, step=1):
        if start and end not in (None, SLICE_END):
            return original(ctx, x, dim, start - 1, end - 1, step)
        return original(ctx, x, dim, start, end, step)

    return slice_tensor


@pytest.mark.parametrize("target, breaker, model", [
    (torch.ops.aten.linear.default, _wrong_permutation, "tiny-llama"),  # o_proj weight transposed
    (torch.ops.aten.slice.Tensor, _wrong_slice, "tiny-llama"),  # gate/up split off by one
    (torch.ops.aten.rsqrt.default, lambda original: (lambda ctx, x: original(ctx, original(ctx, x))), "tiny-qwen2"),
])
def test_replay_catches_a_broken_converter(monkeypatch, target, breaker, model):
    import ditto.trt.converters as converters

    monkeypatch.setitem(converters.CONVERTERS, target, breaker(converters.CONVERTERS[target]))
    request = forced_request(model, steps=2, probes=[])
    errors = worst_errors(get_backend("fx").run(request), get_backend("replay").run(request))
    assert errors["logits"] > 100 * FLOAT32_BOUND, errors
