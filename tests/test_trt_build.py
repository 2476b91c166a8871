"""`ditto build` with TensorRT-RTX on this CPU machine: real networks, real serialized engines.

The engine cannot be deserialized without a GPU here, so the checks read the network that was
built: its I/O against the FX graph's signature, its profile against the build limits.
"""

import json

import pytest
import torch

from ditto.build import build
from ditto.errors import DittoError
from ditto.models.tiny import TINY_MODELS
from ditto.pipeline import load_program
from ditto.trt.network import NetworkLimits, build_network
from ditto.trt.provider import trt_module
from ditto.trtllm.schema import validate_config

trt = trt_module("tensorrt_rtx")
LIMITS = NetworkLimits(max_batch_size=4, max_seq_len=256, max_num_tokens=512)


def _io(network):
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    return inputs, outputs


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_network_io_matches_the_graph_and_engine_builds(model):
    program = load_program(model, tokens_per_block=32)
    extra = "gpt_attention_1"
    built = build_network(program, trt, LIMITS, add_outputs=(extra,))
    inputs, outputs = _io(built.network)
    placeholders = [n for n in program.graph_module.graph.nodes if n.op == "placeholder"]
    expected = {n.name for n in placeholders} - {"host_kv_cache_pool_pointers"} | {"kv_cache_pool"}
    assert set(inputs) == expected
    for node in placeholders:
        if node.name == "host_kv_cache_pool_pointers":
            continue
        tensor = inputs[node.name]
        dims = program.input_dims[node.name]
        assert tuple(tensor.shape) == tuple(d if isinstance(d, int) else -1 for d in dims), node.name
        assert tensor.dtype == getattr(trt, str(node.meta["val"].dtype).removeprefix("torch."))
    # profile: TensorRT-LLM's ranges for the limits
    assert built.profile["input_ids"] == ((1,), (4,), (512,))
    assert built.profile["last_token_ids"] == ((1,), (2,), (4,))
    assert built.profile["kv_cache_block_offsets"][2] == (1, 4, 2, 8)  # 256 tokens / 32 per block
    # outputs: logits, the extra output under its node name, the updated pool
    assert list(outputs) == ["logits", extra, "present_kv_cache_pool"]
    assert outputs["logits"].dtype == trt.float32 and len(outputs["logits"].shape) == 2
    width = program.attention[1].num_heads * program.attention[1].head_size
    assert tuple(outputs[extra].shape) == (-1, width)
    # a real engine comes out of TensorRT's builder
    config = built.builder.create_builder_config()
    profile = built.builder.create_optimization_profile()
    for name, (lo, opt, hi) in built.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    engine = built.builder.build_serialized_network(built.network, config)
    assert engine is not None and engine.nbytes > 100_000


def test_layers_are_named_after_fx_nodes():
    program = load_program("tiny-qwen2", tokens_per_block=32)
    built = build_network(program, trt, LIMITS)
    names = [built.network.get_layer(i).name for i in range(built.network.num_layers)]
    nodes = {n.name for n in program.graph_module.graph.nodes}
    assert all(name.split("/")[0] in nodes or name.startswith("ditto") for name in names)
    assert any(name.startswith("gpt_attention_1/") for name in names)


def test_build_writes_engine_dir_and_artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUG_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    path = build("tiny-gpt2", tmp_path / "engine", add_output=("gpt_attention",), probes=("layers.0.mlp",))
    config = json.loads((path / "config.json").read_text())
    assert validate_config(config) == []
    assert (path / "rank0.engine").stat().st_size > 100_000
    report = json.loads((tmp_path / "artifacts" / "build_report.json").read_text())
    assert [o["name"] for o in report["outputs"]] == ["logits", "gpt_attention", "layers.0.mlp", "present_kv_cache_pool"]
    assert set(report["stage_seconds"]) == {"load, export, passes", "network", "build", "write"}
    text = (tmp_path / "artifacts" / "trt_network_def.py").read_text()
    assert "# gpt_attention/" in text


def test_existing_dir_needs_force(tmp_path):
    (tmp_path / "engine").mkdir()
    with pytest.raises(DittoError, match="already exists; pass --force"):
        build("tiny-llama", tmp_path / "engine")


def test_unknown_add_output_lists_closest_names(tmp_path):
    with pytest.raises(DittoError, match=r"'gpt_attenton' is not a node of the graph; closest: gpt_attention"):
        build("tiny-llama", tmp_path / "engine", add_output=("gpt_attenton",))
    assert not (tmp_path / "engine").exists()


def test_op_without_converter_names_node_target_and_source(monkeypatch, tmp_path):
    import ditto.trt.converters as converters

    monkeypatch.delitem(converters.CONVERTERS, torch.ops.aten.rsqrt.default)
    with pytest.raises(DittoError, match=r"no converter for node rsqrt \(target aten.rsqrt.default\) from File .*modeling_llama.py"):
        build("tiny-llama", tmp_path / "engine")
    assert not (tmp_path / "engine").exists()


def test_interrupted_build_leaves_no_engine_dir(monkeypatch, tmp_path):
    import ditto.build as build_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "engine_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build("tiny-llama", tmp_path / "engine")
    assert list(tmp_path.iterdir()) == []
