"""The replay backend's reuse: a network is built once per model and build options, its
weights are computed (read from the host, uploaded) once and kept, and each constant is
scheduled right before its first consumer instead of all at the start.

Planted bugs these kill: a plan that recomputes constants every run (the upload count
grows), a backend that rebuilds the network per run, a cache that ignores a swapped
converter (a broken network would be served from the cache), constants scheduled first.
"""

import torch

import ditto.replay.backend as replay_backend
import ditto.replay.network as network_module
from ditto.replay.registry import REPLAYS, Replay
from ditto.runtime.backend import get_backend
from tests.parity import forced_request, worst_errors


def _count_constant_replays(monkeypatch):
    calls = []
    original = REPLAYS["CONSTANT"]

    def counted(call):
        calls.append(call.layer.name)
        return original.fn(call)

    monkeypatch.setitem(REPLAYS, "CONSTANT", Replay(counted, original.reads))
    return calls


def test_network_built_once_and_weights_uploaded_once(monkeypatch):
    replay_backend.prepared.cache_clear()
    built = []
    import ditto.trt.network as trt_network

    original_build = trt_network.build_network
    monkeypatch.setattr(trt_network, "build_network", lambda *a, **k: built.append(1) or original_build(*a, **k))
    calls = _count_constant_replays(monkeypatch)
    request = forced_request("tiny-llama", steps=3, probes=["layers.0.mlp"])
    first = get_backend("replay").run(request)
    uploads = len(calls)
    assert uploads > 0 and len(built) == 1
    second = get_backend("replay").run(request)
    assert len(built) == 1, "the network was rebuilt for the same model and options"
    assert len(calls) == uploads, "constants were computed again on the second run"
    assert max(worst_errors(first, second).values()) == 0.0
    plan = replay_backend.prepared.cache_info()
    assert plan.hits >= 1


def test_swapped_converter_is_not_served_from_the_cache(monkeypatch):
    import ditto.trt.converters as converters

    request = forced_request("tiny-llama", steps=1, probes=[])
    good = get_backend("replay").run(request)
    target = torch.ops.aten.rsqrt.default
    original = converters.CONVERTERS[target]
    monkeypatch.setitem(converters.CONVERTERS, target, lambda ctx, x: original(ctx, original(ctx, x)))
    broken = get_backend("replay").run(request)
    assert worst_errors(good, broken)["logits"] > 1e-2


def test_constants_are_scheduled_right_before_their_first_consumer():
    request = forced_request("tiny-llama", steps=1, probes=[])
    limits = (len(request.prompts), 16, sum(len(p) for p in request.prompts))
    _program, plan, _ = replay_backend.prepared(request.model, request.dtype, limits, (), "cpu",
                                                replay_backend._converters_fingerprint())
    kinds = [step.kind for step in plan.steps]
    assert "CONSTANT" in kinds
    for i, step in enumerate(plan.steps):
        if step.kind != "CONSTANT":
            continue
        # the constant's first consumer follows after nothing but other constants
        name = step.outs[0][0]
        first = next(j for j, later in enumerate(plan.steps) if name in later.ins)
        assert all(s.kind == "CONSTANT" for s in plan.steps[i:first]), (step.layer.name, i, first)
    # not all weights first: some compute layer runs before the last constant
    first_compute = kinds.index(next(k for k in kinds if k != "CONSTANT"))
    assert len(kinds) - 1 - kinds[::-1].index("CONSTANT") > first_compute
    assert isinstance(plan, network_module.ReplayPlan)
