"""The engine runner (`ditto.runtime.engine`, backends `ditto` and `trtllm`) on a TEST DOUBLE of
TensorRT's runtime that executes the network by replay (tests/trt_runtime_double.py).

What runs for real: `ditto build`'s whole path except TensorRT's builder (load, export,
passes, network, config.json, the atomic engine-dir writer), and every line of the runner:
reading config.json, the I/O table, profile checks, input shapes, raw addresses, host/device
placement, output allocation, the paged KV cache across steps (tokens_per_block 4, prompts and
steps that span 4 blocks), the native pool round trip, probes from extra outputs, token
forcing. What does not: TensorRT's deserialization and execution (no engine can run on these
machines; `ditto build` builds real engines in test_trt_build.py). Nothing here shows that the
runner works on TensorRT.
"""

from __future__ import annotations

import json
import types

import pytest
import torch

import ditto.builder as build_module
import ditto.runtime.engine as engine_module
from ditto.errors import DittoError
from ditto.models.tiny import TINY_MODELS
from ditto.runtime.backend import BACKENDS, StepwiseRequest, available_backends, get_backend
from ditto.runtime.engine import EngineRunner
from ditto.trt.provider import trt_module
from tests.parity import FLOAT32_BOUND, worst_errors
from tests.trt_runtime_double import ReplayRuntimeDouble

# ragged prompts of 9, 3 and 6 tokens + 5 steps: up to 14 tokens = 4 KV blocks of 4 tokens
PROMPTS = [[5, 9, 23, 7, 100, 3, 8, 41, 2], [3, 4, 6], [17, 18, 19, 20, 21, 22]]
FORCED = [[11, 12, 13], [14, 15, 16], [1, 2, 3], [40, 41, 42], [7, 8, 9]]  # not the greedy choice
PROBES = ["layers.0.attn", "layers.1.out", "final_norm"]
LIMITS = dict(max_batch_size=3, max_input_len=16, max_seq_len=32, max_num_tokens=64, tokens_per_block=4)


@pytest.fixture(scope="module")
def double():
    return ReplayRuntimeDouble(trt_module("tensorrt_rtx"))


def build_for_double(double, model: str, folder, probes=PROBES, **limits):
    """`ditto build` with TensorRT's builder replaced by registering the network with the double."""

    def register_network(built, trt, plan_path):
        plan = f"replay-double-plan {plan_path}".encode()
        plan_path.write_bytes(plan)
        built.weights.close = built.weights.release_pages = lambda: None  # the double replays it later
        double.register(plan, built)
        return len(plan)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build_module, "build_engine", register_network)
        return build_module.build(model, folder, probes=tuple(probes), attention="native", **{**LIMITS, **limits})


def request_for(model: str, engine_dir=None, probes=PROBES, steps=len(FORCED)) -> StepwiseRequest:  # noqa: B008 (a constant)
    return StepwiseRequest(model=model, prompts=PROMPTS, steps=steps, forced_tokens=FORCED[:steps], probes=list(probes),
                           engine_dir=None if engine_dir is None else str(engine_dir))


def run_on_double(double, request):
    backend = get_backend("ditto")
    backend.trt, backend.device = double.module, "cpu"
    return backend.run(request)


@pytest.mark.needs_tensorrt("tensorrt_rtx")
@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_ditto_backend_on_the_double_matches_fx(model, double, tmp_path):
    engine_dir = build_for_double(double, model, tmp_path / "engine")
    request = request_for(model, engine_dir)
    executions = double.executions
    got = run_on_double(double, request)
    want = get_backend("fx").run(request_for(model))
    assert double.executions - executions == len(FORCED) + 1  # one execute per step
    errors = worst_errors(want, got)
    assert set(errors) >= {"logits", *PROBES}
    # float32 on both sides, same kernels' arithmetic up to summation order: 1e-4 (tests/parity.py)
    assert max(errors.values()) <= FLOAT32_BOUND, errors
    for step, (g, w) in enumerate(zip(got, want)):
        for name in ("input_ids", "position_ids", "sequence_length", "host_request_types",  # fx: 64 tokens per block
                     "host_past_key_value_lengths", "host_context_lengths"):
            assert torch.equal(g[name], w[name]), (step, name)
    assert [d["input_ids"].tolist() for d in got[1:]] == FORCED  # token forcing reached the engine
    assert got[0]["kv_cache_block_offsets"].shape[-1] == 4  # the sequences span 4 blocks


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_the_double_sees_the_pool_written_by_earlier_steps(double, tmp_path, monkeypatch):
    """Planted bug: the pool the engine returns is not kept (as if the runner forgot to copy
    `present_kv_cache_pool` back); generation steps then attend to an empty cache."""
    engine_dir = build_for_double(double, "tiny-llama", tmp_path / "engine", probes=())
    request = request_for("tiny-llama", engine_dir, probes=())
    good = run_on_double(double, request)
    real_execute = engine_module.EngineSession.execute

    def pool_not_kept(self, feed):
        outputs = real_execute(self, feed)
        outputs[engine_module.POOL_OUTPUT] = feed[engine_module.POOL_INPUT].clone()  # this step's K/V lost
        return outputs

    monkeypatch.setattr(engine_module.EngineSession, "execute", pool_not_kept)
    broken = run_on_double(double, request)
    monkeypatch.undo()
    assert worst_errors(good[:1], broken[:1])["logits"] == 0  # the context step needs no past
    assert worst_errors(good, broken)["logits"] > 100 * FLOAT32_BOUND


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_runner_refuses_requests_outside_the_engine_limits(double, tmp_path):
    engine_dir = build_for_double(double, "tiny-llama", tmp_path / "engine", probes=(), max_seq_len=12, max_input_len=10)
    with pytest.raises(DittoError, match=r"does not fit the engine: 9 \+ 5 steps > max_seq_len 12; rebuild"):
        run_on_double(double, request_for("tiny-llama", engine_dir, probes=()))
    runner = EngineRunner(engine_dir, double.module, "cpu")
    feed = {"input_ids": torch.zeros(70, dtype=torch.int32)}
    with pytest.raises(DittoError, match=r"input 'input_ids' has shape \(70,\), outside the engine's profile"):
        runner.session._check_profile("input_ids", tuple(feed["input_ids"].shape))


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_runner_names_missing_probes_and_bad_directories(double, tmp_path):
    engine_dir = build_for_double(double, "tiny-gpt2", tmp_path / "engine", probes=("final_norm",))
    with pytest.raises(DittoError, match=r"no output for probe\(s\) \['layers.0.mlp'\] \(it has \['final_norm'\]\)"):
        run_on_double(double, request_for("tiny-gpt2", engine_dir, probes=["layers.0.mlp"]))
    config = json.loads((engine_dir / "config.json").read_text())
    layers = config["pretrained_config"]["num_hidden_layers"]
    config["pretrained_config"]["runtime_defaults"] = {"max_attention_window": [4] + [64] * (layers - 1)}
    (engine_dir / "config.json").write_text(json.dumps(config))
    dumps = run_on_double(double, request_for("tiny-gpt2", engine_dir, probes=["final_norm"], steps=1))
    # the windows config.json asks for reach the engine, capped at the cache's length (9 + 1 + 1)
    assert dumps[0]["host_max_attention_window_sizes"].tolist() == [4] + [11] * (layers - 1)
    with pytest.raises(DittoError, match="is not an engine directory"):
        EngineRunner(tmp_path, double.module, "cpu")
    with pytest.raises(DittoError, match="set the request's engine_dir"):
        run_on_double(double, request_for("tiny-gpt2"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"pretrained_config": {}}))
    (tmp_path / "bad" / "rank0.engine").write_bytes(b"")
    with pytest.raises(DittoError, match="is not a TensorRT-LLM engine config"):
        EngineRunner(tmp_path / "bad", double.module, "cpu")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text((engine_dir / "config.json").read_text())
    (tmp_path / "other" / "rank0.engine").write_bytes(b"not a plan the double knows")
    with pytest.raises(DittoError, match="could not deserialize the engine"):
        EngineRunner(tmp_path / "other", double.module, "cpu")


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_plugin_engines_need_tensorrt_with_tensorrt_llm(double, tmp_path, monkeypatch):
    engine_dir = build_for_double(double, "tiny-llama", tmp_path / "engine", probes=())
    config = json.loads((engine_dir / "config.json").read_text())
    config["build_config"]["plugin_config"]["gpt_attention_plugin"] = "float32"
    config["build_config"].pop("ditto")  # as trtllm-build writes it
    (engine_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(DittoError, match="plugin layers, which replay double of tensorrt_rtx cannot run"):
        EngineRunner(engine_dir, double.module, "cpu")
    tensorrt = types.SimpleNamespace(__name__="tensorrt")
    monkeypatch.setattr(engine_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DittoError, match="tensorrt_llm is not installed"):
        engine_module.load_trtllm_plugins(tensorrt)


def _pretend(monkeypatch, installed=(), cuda=False, capability=(8, 9)):
    monkeypatch.setattr(engine_module, "_installed", lambda name: name in installed)
    monkeypatch.setattr(engine_module.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(engine_module.torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(engine_module.torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")


@pytest.mark.parametrize("installed, cuda, capability, ditto_reason, trtllm_reason", [
    ((), True, (9, 0), "no TensorRT runtime module: tensorrt or tensorrt_rtx is not installed",
     "tensorrt and tensorrt_llm not installed"),
    (("tensorrt_rtx",), False, None, "no CUDA device", "tensorrt and tensorrt_llm not installed"),
    (("tensorrt_rtx",), True, (9, 0), "TensorRT-RTX refuses to run engines on this GPU (NVIDIA H200, sm_90",
     "tensorrt and tensorrt_llm not installed"),
    (("tensorrt_rtx",), True, (8, 9), None, "tensorrt and tensorrt_llm not installed"),
    (("tensorrt",), True, (9, 0), None, "tensorrt_llm not installed"),
    (("tensorrt", "tensorrt_llm"), False, None, "no CUDA device", "no CUDA device"),
    (("tensorrt", "tensorrt_llm"), True, (9, 0), None, None),
])
def test_unavailable_reasons_name_what_is_missing(monkeypatch, installed, cuda, capability, ditto_reason, trtllm_reason):
    monkeypatch.delenv("DITTO_TRT_PROVIDER", raising=False)
    _pretend(monkeypatch, installed, cuda, capability)
    for backend, expected in (("ditto", ditto_reason), ("trtllm", trtllm_reason)):
        reason = get_backend(backend).unavailable_reason()
        assert (reason is None) == (expected is None), (backend, reason)
        assert expected is None or reason.startswith(expected), (backend, reason)


def test_engine_backends_are_registered_and_say_why_they_skip_here():
    from harness.pytest_plugin import _check_backends

    reasons = available_backends()
    assert {"ditto", "trtllm"} <= set(BACKENDS)
    _check_backends(["ditto", "trtllm"])  # pytest --ditto-backends=ditto: registered, not "unknown"
    if not torch.cuda.is_available():  # the first thing missing here is named: a TensorRT package, else the GPU
        installed = any(engine_module._installed(name) for name in ("tensorrt", "tensorrt_rtx"))
        assert reasons["ditto"].startswith("no CUDA device" if installed else "no TensorRT runtime module"), reasons


def test_a_missing_backend_module_is_an_error_not_a_silent_gap(monkeypatch):
    """Planted bug (today's code): `ditto.runtime.trtllm` in the module list was swallowed."""
    import ditto.runtime.backend as backend

    monkeypatch.setattr(backend, "BACKEND_PACKAGES", (*backend.BACKEND_PACKAGES, "ditto.runtime.trtllm"))
    with pytest.raises(ModuleNotFoundError, match="ditto.runtime.trtllm"):
        backend.available_backends()
