"""`ditto build` with TensorRT-RTX on this CPU machine: real networks, real serialized engines.

The engine cannot be deserialized without a GPU here, so the checks read the network that was
built (through build_report.json, written from the INetworkDefinition the builder compiled):
its I/O against the FX graph's signature, its profile against the build limits, and each
--add-output. One build per tiny model, shared by the tests of this module.
"""

import json
import os

import pytest
import torch

import ditto.builder as build_module
from ditto.builder import build
from ditto.errors import DittoError
from ditto.models.tiny import TINY_MODELS
from ditto.pipeline import load_program
from ditto.trt.network import NetworkLimits, build_network, resolve_attention
from ditto.trtllm.inputs import dim_ranges
from ditto.trtllm.schema import validate_config
from tests.build_checks import build_keeping_program, check_build
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip("tensorrt_rtx")
LIMITS = dict(max_batch_size=4, max_input_len=64, max_seq_len=256, max_num_tokens=512, tokens_per_block=32)
EXTRA = ("gpt_attention", "embedding")  # the first attention layer's output, the token embedding
REPORT_DTYPES = {torch.int32: "INT32", torch.int64: "INT64", torch.float32: "FLOAT", torch.float16: "HALF", torch.bfloat16: "BF16"}


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def built(request, tmp_path_factory):
    """(program, engine dir, build report) of one `ditto build` of a tiny model."""
    return build_keeping_program(request.param, tmp_path_factory.mktemp(request.param), add_output=EXTRA, **LIMITS)


def _dims(dims):
    return [d if isinstance(d, int) else -1 for d in dims]


def test_engine_inputs_are_the_fx_placeholders_plus_the_pool(built):
    program, _, report = built
    placeholders = [n for n in program.graph_module.graph.nodes if n.op == "placeholder"]
    expected = [n.name for n in placeholders if n.name != "host_kv_cache_pool_pointers"] + ["kv_cache_pool"]
    inputs = {i["name"]: i for i in report["inputs"]}
    assert [i["name"] for i in report["inputs"]] == expected
    for node in placeholders:
        if node.name == "host_kv_cache_pool_pointers":
            continue
        assert inputs[node.name]["shape"] == _dims(program.input_dims[node.name]), node.name
        assert inputs[node.name]["dtype"] == REPORT_DTYPES[node.meta["val"].dtype], node.name
    p = program.attention[0]
    assert inputs["kv_cache_pool"] == {
        "name": "kv_cache_pool",
        "shape": [-1, len(program.attention), 2, p.num_kv_heads, p.tokens_per_block, p.head_size],
        "dtype": REPORT_DTYPES[program.dtype],
    }


def test_profile_is_trtllm_single_profile_for_the_limits(built):
    program, _, report = built
    ranges = dim_ranges(max_batch_size=4, max_seq_len=256, max_num_tokens=512, tokens_per_block=32)
    assert ranges["max_blocks_per_seq"] == (1, 4, 8)
    for name, dims in program.input_dims.items():
        if name == "host_kv_cache_pool_pointers":
            continue
        expected = [[d if isinstance(d, int) else ranges[d][i] for d in dims] for i in range(3)]
        assert report["profile"][name] == expected, name
    assert report["profile"]["input_ids"] == [[1], [4], [512]]
    assert report["profile"]["kv_cache_pool"][2][0] == 4 * 8  # every sequence at max_seq_len


def test_engine_outputs_logits_added_outputs_and_pool(built):
    program, _, report = built
    outputs = {o["name"]: o for o in report["outputs"]}
    assert [o["name"] for o in report["outputs"]] == ["logits", *EXTRA, "present_kv_cache_pool"]
    nodes = {n.name: n for n in program.graph_module.graph.nodes}
    vocab = program.hf_config.vocab_size
    assert outputs["logits"]["shape"] == [-1, vocab] and outputs["logits"]["dtype"] == "FLOAT"
    for name in EXTRA:
        val = nodes[name].meta["val"]
        assert outputs[name]["shape"] == _dims(val.shape) and outputs[name]["dtype"] == REPORT_DTYPES[val.dtype]
    assert outputs["gpt_attention"]["shape"] == [-1, program.attention[0].num_heads * program.attention[0].head_size]
    pool = {i["name"]: i for i in report["inputs"]}["kv_cache_pool"]
    assert {**outputs["present_kv_cache_pool"], "name": "kv_cache_pool"} == pool


def test_engine_dir_is_complete(built):
    program, path, report = built
    assert sorted(os.listdir(path)) == ["config.json", "rank0.engine"]
    config = json.loads((path / "config.json").read_text())
    assert validate_config(config) == []
    assert config["build_config"]["max_batch_size"] == 4 and config["build_config"]["max_input_len"] == 64
    assert config["build_config"]["ditto"]["outputs"] == [o["name"] for o in report["outputs"]]
    assert config["build_config"]["ditto"]["attention"] == "native"
    # the plan carries every weight
    assert (path / "rank0.engine").stat().st_size > program.weights.nbytes()
    assert not [f for f in os.listdir(path.parent) if f.startswith(".")], "temporary files left behind"
    assert set(report["stage_seconds"]) == {"load, export, passes", "network", "build", "write"}
    assert report["layers"] == sum(report["layers_by_type"].values()) > 0


def test_network_definition_artifact_names_layers_after_nodes(built):
    _, path, _ = built
    text = (path.parent / "artifacts" / "trt_network_def.py").read_text()
    assert "# gpt_attention/" in text and "# embedding" in text


# ---- the network, without the engine --------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen2():
    return load_program("tiny-qwen2", tokens_per_block=32)


def test_layers_are_named_after_fx_nodes(qwen2):
    network = build_network(qwen2, trt, NetworkLimits()).network
    names = [network.get_layer(i).name for i in range(network.num_layers)]
    nodes = {n.name for n in qwen2.graph_module.graph.nodes}
    assert [n for n in names if n.split("/")[0] not in nodes and not n.startswith("ditto/")] == []
    assert any(name.startswith("gpt_attention_1/") for name in names)


class _PluginNetwork:
    """Test double for a TensorRT network with IPluginV2 layers (TensorRT-RTX has none): records
    each plugin's inputs and stands in for its output with a real layer of the same shape."""

    def __init__(self, network, width):
        self._network, self.width, self.plugins = network, width, []

    def __getattr__(self, name):
        return getattr(self._network, name)

    def add_plugin_v2(self, inputs, plugin):
        self.plugins.append((list(inputs), plugin))
        qkv = inputs[0]
        layer = self._network.add_slice(qkv, (0, 0), (1, self.width), (1, 1))
        shape = self._network.add_concatenation([
            self._network.add_slice(self._network.add_shape(qkv).get_output(0), (0,), (1,), (1,)).get_output(0),
            self._network.add_constant((1,), trt.Weights(torch.tensor([self.width]).numpy())).get_output(0),
        ]).get_output(0)
        layer.set_input(2, shape)
        return layer


def test_plugin_lowering_inputs_in_plugin_order_with_trtllm_io(qwen2, monkeypatch):
    from ditto.trtllm import gpt_attention_plugin as plugin_module

    params = qwen2.attention[0]
    created = []
    monkeypatch.setattr(plugin_module, "create_gpt_attention_plugin", lambda trt_, p, o: created.append((p, o)) or object())
    networks = []

    class Builder(trt.Builder):
        def create_network(self, flags):
            networks.append(_PluginNetwork(super().create_network(flags), params.num_heads * params.head_size))
            return networks[-1]

    class Trt:  # the TensorRT module with the builder above
        def __getattr__(self, name):
            return Builder if name == "Builder" else getattr(trt, name)

    built = build_network(qwen2, Trt(), NetworkLimits(max_input_len=64), attention="plugin")
    network = networks[0]
    assert len(network.plugins) == len(qwen2.attention) == len(created)
    assert [p.layer_idx for p, _ in created] == list(range(len(qwen2.attention)))
    assert created[0][1].max_context_length == 64 and created[0][1].dtype == "float32"
    inputs, _ = network.plugins[0]
    names = plugin_module.gpt_attention_input_names(params, created[0][1])
    assert names[0] == "qkv" and len(inputs) == len(names)
    for name, tensor in zip(names, inputs):
        if name in qwen2.input_dims:  # engine inputs go to the plugin as they are
            assert tensor.name == name
    table = inputs[names.index("rotary_cos_sin")]
    assert table.dtype == trt.float32 and tuple(table.shape) == (1, params.rotary_embedding_max_positions * params.rotary_embedding_dim)
    assert network.plugins[1][0][names.index("rotary_cos_sin")] is table or network.plugins[1][0][names.index("rotary_cos_sin")].name == table.name
    # trtllm-build's I/O: every placeholder, pool pointers included; logits only
    engine_inputs = [built.network.get_input(i).name for i in range(built.network.num_inputs)]
    assert engine_inputs == [n.name for n in qwen2.graph_module.graph.nodes if n.op == "placeholder"]
    assert built.outputs == ["logits"]


def test_attention_lowering_is_chosen_by_what_is_installed():
    assert resolve_attention(trt, "auto") == "native"
    assert resolve_attention(trt, "native") == "native"
    with pytest.raises(DittoError, match="--attention plugin needs TensorRT-LLM's GPTAttention plugin, but tensorrt_rtx has no IPluginV2"):
        resolve_attention(trt, "plugin")


# ---- bad input ------------------------------------------------------------------------------------------
def test_existing_dir_needs_force(tmp_path):
    (tmp_path / "engine").mkdir()
    with pytest.raises(DittoError, match="already exists; pass --force"):
        build("tiny-llama", tmp_path / "engine")


def test_unknown_add_output_lists_closest_names(tmp_path):
    with pytest.raises(DittoError, match=r"'gpt_attenton' is not a node of the graph; closest: gpt_attention"):
        build("tiny-llama", tmp_path / "engine", add_output=("gpt_attenton",))
    assert os.listdir(tmp_path) == []


def test_add_output_of_a_non_tensor_names_its_users(qwen2):
    split = next(n for n in qwen2.graph_module.graph.nodes if n.op == "call_function" and not isinstance(n.meta.get("val"), torch.Tensor))
    with pytest.raises(DittoError, match=rf"--add-output '{split.name}' is not one tensor .* pick a node that uses it"):
        build_network(qwen2, trt, NetworkLimits(), add_outputs=(split.name,))


def test_bad_limits_are_refused_before_loading(tmp_path):
    with pytest.raises(DittoError, match="--max-input-len 512 exceeds --max-seq-len 256"):
        build("tiny-llama", tmp_path / "engine", max_input_len=512, max_seq_len=256)
    with pytest.raises(DittoError, match="--max-batch-size must be a positive integer, got 0"):
        build("tiny-llama", tmp_path / "engine", max_batch_size=0)


def test_op_without_converter_names_node_target_and_source(monkeypatch, tmp_path):
    import ditto.trt.converters as converters

    monkeypatch.delitem(converters.CONVERTERS, torch.ops.aten.rsqrt.default)
    with pytest.raises(DittoError, match=r"no converter for node rsqrt \(target aten.rsqrt.default\) from File .*modeling_llama.py"):
        build("tiny-llama", tmp_path / "engine")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stage", ["build", "write"])
def test_interrupted_build_leaves_no_engine_dir(monkeypatch, tmp_path, stage):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "build_engine" if stage == "build" else "write_engine_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build("tiny-llama", tmp_path / "engine")
    assert os.listdir(tmp_path) == []  # no engine dir, no plan or staged weights left


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from ditto.cli.main import main

    (tmp_path / "engine").mkdir()
    assert main(["build", "tiny-llama", str(tmp_path / "engine")]) == 2
    assert capsys.readouterr().err.strip().startswith("ditto build: error:")


def test_config_and_attention_carry_the_hf_config(built, request):
    """Every model-derived field of the float32 build, against the HF config (see test_model_derived.py)."""
    program, path, report = built
    config = json.loads((path / "config.json").read_text())
    check_build(request.node.callspec.params["built"], program, config, report, torch.float32, LIMITS)
