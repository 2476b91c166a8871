"""The replay backend's reuse: a network is built once per model and build options, its
weights are computed (read from the host, uploaded) once and kept, and each constant is
scheduled right before its first consumer instead of all at the start.

Planted bugs these kill: a plan that recomputes constants every run (the upload count
grows), a backend that rebuilds the network per run, a cache that ignores a swapped
converter (a broken network would be served from the cache), constants scheduled first.
"""

import pytest
import torch

import ditto.replay.backend as replay_backend
import ditto.replay.network as network_module
from ditto.replay.registry import REPLAYS, Replay
from ditto.runtime.backend import get_backend
from tests.parity import forced_request, worst_errors

pytestmark = pytest.mark.needs_tensorrt  # every test builds a network with the installed TensorRT


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


def test_shape_arithmetic_is_placed_on_the_host():
    """On a GPU, SHAPE outputs and integer layers fed only by them run on the CPU (no device
    round trip per reshape); forced on here, the replay must still match its device-only run."""
    from ditto.replay.network import ReplayPlan

    request = forced_request("tiny-llama", steps=1, probes=[])
    limits = (len(request.prompts), 16, sum(len(p) for p in request.prompts))
    _program, plan, _ = replay_backend.prepared(request.model, request.dtype, limits, (), "cpu",
                                                replay_backend._converters_fingerprint())
    # placement only (the meta device runs nothing): what would run on the host next to a GPU
    placed = ReplayPlan(plan.network, device="meta")
    hosted = [step for step in placed.steps if step.device.type == "cpu"]
    kinds = {step.kind for step in hosted}
    assert {"SHAPE", "CONCATENATION", "GATHER"} <= kinds, kinds
    assert not [s.kind for s in hosted if any(d.is_floating_point for _, d, _ in s.outs)], "float layer on the host"
    assert any(step.kind == "MATRIX_MULTIPLY" and step.device.type == "meta" for step in placed.steps)
    # forced on while computing on the CPU, the plan's run equals the plain one
    feed = _feed(plan, request)
    plain = plan.run(dict(feed))
    forced = ReplayPlan(plan.network, host_shapes=True).run(dict(feed))
    assert torch.equal(plain["logits"], forced["logits"])


def _feed(plan, request):
    from ditto.runtime.paged_cache import PagedKVCache
    from ditto.trt.attention_native import POOL_INPUT

    program = replay_backend.prepared(request.model, request.dtype, (len(request.prompts), 16,
                                      sum(len(p) for p in request.prompts)), (), "cpu",
                                      replay_backend._converters_fingerprint())[0]
    cache = PagedKVCache(program.attention, 16, len(request.prompts), program.dtype)
    inputs = cache.step_inputs(request.prompts, [0] * len(request.prompts), [len(p) for p in request.prompts], True)
    feed = {k: v for k, v in inputs.items() if k in plan.declared_inputs}
    feed[POOL_INPUT] = cache.pool
    cache.close()
    return feed


def test_layers_of_constants_are_folded_once_and_kept_once(monkeypatch):
    """A layer fed only by constants (a weight's reshape) is computed at the first run and
    not again; what is kept is what the per-run layers read, each storage once (a folded
    reshape keeps a view of its weight, not a second copy)."""
    replay_backend.prepared.cache_clear()
    counted = []
    original = REPLAYS["SHUFFLE"]
    monkeypatch.setitem(REPLAYS, "SHUFFLE", Replay(lambda call: counted.append(call.layer.name) or original.fn(call),
                                                   original.reads))
    request = forced_request("tiny-llama", steps=2, probes=[])
    backend = get_backend("replay")
    first = backend.run(request)
    plan = backend.last_plan
    folded = {s.layer.name for s in plan.steps if s.static and s.kind == "SHUFFLE"}
    assert folded and plan.folded
    runs_before = len(counted)
    second = backend.run(request)
    assert backend.last_plan is plan
    again = set(counted[runs_before:])
    assert not again & folded, "a folded layer was computed again"
    assert max(worst_errors(first, second).values()) == 0.0
    weights = sum(s.layer.weights.nbytes for s in plan.steps if s.kind == "CONSTANT" and s.outs[0][1].is_floating_point)
    assert plan.kept_bytes() <= weights * 1.01, (plan.kept_bytes(), weights)


def test_host_shape_arithmetic_reused_across_steps_matches_a_plain_run(monkeypatch):
    """With shape arithmetic on the host (as next to a GPU), a host layer whose inputs are the
    very tensors of the last run reuses its outputs; over several generation steps (positions
    and lengths change every step) the run must equal the plain CPU run exactly, and most host
    layers must have been reused at the last step."""
    import functools

    from ditto.replay.network import ReplayPlan

    request = forced_request("tiny-llama", steps=3, probes=["layers.1.out"])
    replay_backend.prepared.cache_clear()
    plain = get_backend("replay").run(request)
    replay_backend.prepared.cache_clear()
    monkeypatch.setattr(replay_backend, "ReplayPlan", functools.partial(ReplayPlan, host_shapes=True))
    computed = []
    original = REPLAYS["CONCATENATION"]
    monkeypatch.setitem(REPLAYS, "CONCATENATION", Replay(lambda call: computed.append(call.layer.name) or
                                                         original.fn(call), original.reads))
    backend = get_backend("replay")
    hosted = backend.run(request)
    replay_backend.prepared.cache_clear()
    assert max(worst_errors(plain, hosted).values()) == 0.0
    plan = backend.last_plan
    reused = [s for s in plan.steps if s.reuse]
    assert reused and any(s.kind == "CONCATENATION" for s in reused)
    per_run = len([s for s in plan.run_steps if s.kind == "CONCATENATION"])
    # 4 runs (context + 3 steps): the last two decode steps reuse about half of the host
    # concatenations (the others follow the growing KV length); without reuse: 4 * per_run
    assert len(computed) < 3 * per_run, (len(computed), per_run)


def test_requests_of_other_lengths_share_one_network():
    """The sequence limit is rounded up to a power of two: a context-only request next to a
    longer one reuses the network and its kept weights (two plans would hold them twice)."""
    replay_backend.prepared.cache_clear()
    backend = get_backend("replay")
    backend.run(forced_request("tiny-llama", steps=3, probes=[]))
    plan = backend.last_plan
    backend.run(forced_request("tiny-llama", steps=0, probes=[]))
    assert backend.last_plan is plan


class _ReRunRecorder:
    """A stand-in for CUDA graph recording on the CPU: replaying re-runs the recorded body on the
    buffers it was recorded with (what a graph reads), with the host values it saw then (what a
    graph bakes in). A signature that misses something a recording depends on replays stale."""

    def __init__(self):
        self.recorded, self.replays = 0, 0

    def record(self, body):
        self.recorded += 1

        def replay():
            self.replays += 1
            body()

        return replay


def _stepwise(plan_factory, request):
    from ditto.replay.backend import replay_steps

    program = replay_backend.prepared(request.model, request.dtype, (len(request.prompts), 64,
                                      sum(len(p) for p in request.prompts)), (), "cpu",
                                      replay_backend._converters_fingerprint())[0]
    plan = plan_factory(replay_backend.prepared(request.model, request.dtype, (len(request.prompts), 64,
                                                sum(len(p) for p in request.prompts)), (), "cpu",
                                                replay_backend._converters_fingerprint())[1].network)
    return plan, replay_steps(request, program, 64, set(plan.declared_inputs), plan.run)


def test_recorded_device_work_replays_what_layer_by_layer_computes():
    """Device layers recorded once per input signature (the CUDA graph path) and replayed give the
    layer-by-layer results over a context step and decode steps that cross a KV block; the
    signature changes only where the step's shapes do (S rounds up to whole blocks)."""
    from ditto.replay.network import ReplayPlan
    from ditto.trt.attention_native import POOL_INPUT

    request = forced_request("tiny-llama", steps=30, probes=[])  # the longest prompt, 9 tokens, passes 32
    common = dict(donated={POOL_INPUT}, host_inputs={"sequence_length"}, host_shapes=True)
    _, plain = _stepwise(lambda net: ReplayPlan(net, **common), request)
    recorder = _ReRunRecorder()
    graphed, recorded = _stepwise(lambda net: ReplayPlan(net, graphs=recorder, **common), request)
    assert worst_errors(plain, recorded)["logits"] == 0.0
    # the context step folds the constants; decode steps read keys up to S = 32, then 64 (blocks of
    # 32 tokens): two signatures, each recorded at its first step and replayed at the others
    assert recorder.recorded == graphed.graphs.recorded == 2
    assert recorder.replays == 30 - 2


def test_device_layers_read_no_device_value_on_the_host():
    """What makes the device work recordable as a CUDA graph: run on the meta device (which holds
    no values) with recording's rules, a context and a decode step of a ditto network compute
    without reading any device tensor on the host (the sequence lengths come on the host)."""
    from ditto.replay.network import ReplayPlan

    request = forced_request("tiny-llama", steps=1, probes=[])
    limits = (len(request.prompts), 16, sum(len(p) for p in request.prompts))
    _program, plan, _ = replay_backend.prepared(request.model, request.dtype, limits, (), "cpu",
                                                replay_backend._converters_fingerprint())
    meta = ReplayPlan(plan.network, device="meta", host_inputs={"sequence_length"}, keep_constants=False)
    feed = _feed(plan, request)
    values = {k: (v if k in meta.host else v.to("meta")) for k, v in feed.items()}
    state = dict(values)
    for step in meta.steps:
        meta._execute(step, state, capturing=not step.on_host)
    assert state["logits"].device.type == "meta"


def test_runs_of_one_plan_reuse_one_kv_pool_zeroed():
    """The replay backend keeps its KV pool for the plan's next run (a recorded graph's signature
    holds the pool's address); reused, it starts from zeros: a second run equals the first."""
    replay_backend.prepared.cache_clear()
    request = forced_request("tiny-llama", steps=3, probes=[])
    backend = get_backend("replay")
    first = backend.run(request)
    pool = backend.last_plan.run_state["kv_pool"]
    second = backend.run(request)
    assert backend.last_plan.run_state["kv_pool"] is pool
    assert worst_errors(first, second)["logits"] == 0.0


def test_a_recording_replays_only_for_the_host_values_it_read():
    """A device layer reading a host value as a number (a slice start) bakes it into the recording:
    the same shapes with another value must record again, never replay the old start."""
    import numpy as np

    from ditto.replay.network import ReplayPlan
    from tests.replay._helpers import Net, trt

    net = Net()
    x = net.input("x", np.arange(8, dtype=np.float32))
    start = net.input("host_start", np.array([0], dtype=np.int64))
    layer = net.network.add_slice(x, (0,), (4,), (1,))
    layer.set_input(1, start)
    net.out(net.network.add_unary(layer.get_output(0), trt.UnaryOperation.NEG))
    recorder = _ReRunRecorder()
    plan = ReplayPlan(net.network, host_shapes=True, graphs=recorder)
    for first in (0, 1, 1, 3, 3, 1):
        feed = {"x": torch.arange(8, dtype=torch.float32), "host_start": torch.tensor([first])}
        assert plan.run(feed)["out"].tolist() == [-float(v) for v in range(first, first + 4)], first
    assert (recorder.recorded, recorder.replays) == (2, 3)  # starts 1 and 3 recorded; then 1, 3, 1 replayed
