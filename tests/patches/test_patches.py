"""ditto.patches and its logic: TRTLLM_ADD_OUTPUT, trt_network_def.py, plugin.txt, step dumps,
version checks, the scripts. TensorRT-LLM is not installable on CPU machines, so the logic is
tested on real TensorRT-RTX networks and the patch wiring against a stand-in module; what
needs the real TensorRT-LLM is skipped here and runs on a GPU node."""

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto.debug.network_def import network_definition_text, write_network_definition
from ditto.debug.trtllm import (
    ADDED_OUTPUT_LAYER_PREFIX,
    PluginFields,
    add_outputs,
    check_trtllm_version,
    find_run_py,
    format_plugin_fields,
    parse_add_output,
    plugin_fields,
    prepare_build_argv,
    step_dump,
)
from ditto.dumps import load_step, save_step
from ditto.errors import DittoError
from tests.needs_tensorrt import tensorrt_or_skip

trt = tensorrt_or_skip("tensorrt_rtx")

REPO = Path(__file__).resolve().parents[2]
HAS_TRTLLM = importlib.util.find_spec("tensorrt_llm") is not None
NO_TRTLLM = "TensorRT-LLM is not installed on this machine"


def _network():
    """A small TRT-LLM-shaped network: named layers, a multi-output layer, big and small constants."""
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("hidden_states", trt.float16, (-1, 8))
    ids = network.add_input("input_ids", trt.int32, (-1,))

    def named(layer, name):
        layer.name = name
        for k in range(layer.num_outputs):
            layer.get_output(k).name = f"{name}_output_{k}"
        return layer

    table = named(network.add_constant((32, 8), trt.Weights(np.ones((32, 8), np.float16))),
                  "model/embedding/CONSTANT_0")
    emb = named(network.add_gather(table.get_output(0), ids, 0), "model/embedding/GATHER_0")
    for i in range(2):
        w = named(network.add_constant((8, 8), trt.Weights(np.full((8, 8), i, np.float16))),
                  f"model/layers/{i}/fc/CONSTANT_0")
        mm = network.add_matrix_multiply(x, trt.MatrixOperation.NONE, w.get_output(0), trt.MatrixOperation.TRANSPOSE)
        named(mm, f"model/layers/{i}/fc/MATRIX_MULTIPLY_0")
        add = network.add_elementwise(mm.get_output(0), emb.get_output(0), trt.ElementWiseOperation.SUM)
        x = named(add, f"model/layers/{i}/ELEMENTWISE_SUM_0").get_output(0)
    eps = named(network.add_constant((1, 1), trt.Weights(np.array([[1e-6]], np.float32))), "model/norm/CONSTANT_0")
    cast = named(network.add_cast(x, trt.float32), "model/norm/CAST_0")
    norm = named(network.add_elementwise(cast.get_output(0), eps.get_output(0), trt.ElementWiseOperation.SUM),
                 "model/norm/ELEMENTWISE_SUM_0")
    topk = named(network.add_topk(norm.get_output(0), trt.TopKOperation.MAX, 2, 2), "model/TOPK_0")
    shuffle = named(network.add_shuffle(topk.get_output(0)), "model/SHUFFLE_0")
    shuffle.reshape_dims = (-1,)
    reduce = named(network.add_reduce(norm.get_output(0), trt.ReduceOperation.MAX, 2, False), "model/REDUCE_MAX_0")
    unary = named(network.add_unary(reduce.get_output(0), trt.UnaryOperation.EXP), "model/UNARY_EXP_0")
    softmax = named(network.add_softmax(norm.get_output(0)), "model/SOFTMAX_0")
    softmax.axes = 2
    concat = named(network.add_concatenation([softmax.get_output(0), norm.get_output(0)]), "model/CONCATENATION_0")
    sliced = named(network.add_slice(concat.get_output(0), (0, 0), (1, 8), (1, 1)), "model/SLICE_0")
    shape = named(network.add_shape(x), "model/SHAPE_0")
    logits = named(network.add_identity(sliced.get_output(0)), "model/lm_head/IDENTITY_0")
    for layer, name in [(logits, "logits"), (unary, "lse"), (shuffle, "top2"), (shape, "shape")]:
        layer.get_output(0).name = name
        network.mark_output(layer.get_output(0))
    return builder, network


# ---------------------------------------------------------------- TRTLLM_ADD_OUTPUT parsing


def test_add_output_parses_object_in_order():
    assert parse_add_output('{"b/MATMUL_0": "mm_default", "a/PLUGIN_V2_GPTAttention_0": "attn"}') == {
        "b/MATMUL_0": "mm_default", "a/PLUGIN_V2_GPTAttention_0": "attn"}
    assert list(parse_add_output('{"z": "1", "a": "2"}')) == ["z", "a"]
    assert parse_add_output(None) == {} and parse_add_output("  ") == {}


@pytest.mark.parametrize("text, message", [
    ('{"a": "x"', r"not valid JSON \(Expecting ',' delimiter at line 1 column 10\).*expected an object like"),
    ("{'a': 'x'}", r"not valid JSON \(Expecting property name enclosed in double quotes at line 1 column 2\)"),
    ('["a", "x"]', r"must be a JSON object .* got a JSON array"),
    ('"a"', r"got a JSON string"),
    ("3", r"got a JSON number"),
    ("null", r"got a JSON null"),
    ('{"a": 1}', r"layer 'a' maps to 1; layer names and aliases must be non-empty strings"),
    ('{"a": ["x"]}', r"layer 'a' maps to \[\"x\"\]"),
    ('{"a": {"b": "c"}}', r"layer 'a' maps to \{\"b\": \"c\"\}"),
    ('{"a": ""}', r"layer 'a' maps to \"\""),
    ('{"": "x"}', r"layer '' maps to \"x\""),
    ('{"a": "x", "a": "y"}', r"names layer 'a' twice"),
    ('{"a": "x", "b": "x", "c": "y", "d": "y"}',
     r"same alias to several layers \('x' for 'a', 'b'; 'y' for 'c', 'd'\)"),
])
def test_add_output_rejects_bad_json_with_the_fix(text, message):
    with pytest.raises(DittoError, match=r"TRTLLM_ADD_OUTPUT[\s\S]*" + message):
        parse_add_output(text)


# ---------------------------------------------------------------- TRTLLM_ADD_OUTPUT on a network


def test_add_outputs_marks_identities_under_aliases_and_builds():
    builder, network = _network()
    before = [network.get_output(i).name for i in range(network.num_outputs)]
    spec = {"model/layers/0/fc/MATRIX_MULTIPLY_0": "mm_default", "model/TOPK_0": "topk_values"}
    assert add_outputs(network, spec) == ["mm_default", "topk_values"]

    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    assert list(outputs) == before + ["mm_default", "topk_values"]
    layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    for layer_name, alias in spec.items():
        source = layers[layer_name].get_output(0)
        assert source.name == f"{layer_name}_output_0"  # the original tensor keeps its name
        identity = layers[ADDED_OUTPUT_LAYER_PREFIX + alias]
        assert identity.get_input(0).name == source.name
        assert outputs[alias].dtype == source.dtype and tuple(outputs[alias].shape) == tuple(source.shape)

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("hidden_states", (1, 8), (2, 8), (4, 8))
    profile.set_shape("input_ids", (1,), (2,), (4,))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


def test_add_outputs_unknown_layer_names_closest_and_changes_nothing():
    _, network = _network()
    counts = (network.num_layers, network.num_outputs)
    typo = "model/layers/0/fc/MATRIX_MULTIPLY_1"
    with pytest.raises(DittoError) as e:
        add_outputs(network, {typo: "mm", "model/layers/0/fc/CONSTANT_0": "w", "nothing/like/this": "z"})
    message = str(e.value)
    assert "names 2 layer(s) the network does not have" in message
    line = next(x for x in message.splitlines() if typo in x)
    assert line.index("'model/layers/0/fc/MATRIX_MULTIPLY_0'") < line.index("'model/layers/1/fc/MATRIX_MULTIPLY_0'")
    assert "'nothing/like/this'; no similar layer name" in message
    assert "trt_network_def.py" in message
    assert (network.num_layers, network.num_outputs) == counts


@pytest.mark.parametrize("alias", ["logits", "input_ids", "model/SOFTMAX_0_output_0"])
def test_add_outputs_alias_must_not_reuse_a_tensor_name(alias):
    _, network = _network()
    with pytest.raises(DittoError, match=rf"alias '{re.escape(alias)}' .* already a tensor name"):
        add_outputs(network, {"model/UNARY_EXP_0": alias})
    assert network.num_outputs == 4


# ---------------------------------------------------------------- trt_network_def.py


def test_network_definition_names_each_tensors_layer_right_above_it(tmp_path):
    _, network = _network()
    add_outputs(network, {"model/layers/1/fc/MATRIX_MULTIPLY_0": "mm_1"})
    path = write_network_definition(network, tmp_path / "artifacts" / "trt_network_def.py")
    text = path.read_text()
    assert text == network_definition_text(network)
    ast.parse(text)  # valid Python syntax
    lines = text.splitlines()

    assigned_at = {}  # t['name'] -> index of the statement line assigning it
    for j, line in enumerate(lines):
        if line.startswith("t[") and " = " in line:
            for target in line.split(" = ")[0].split(", "):
                assert target not in assigned_at, target
                assigned_at[target] = j
    checked = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for k in range(layer.num_outputs):
            row = assigned_at[f"t[{layer.get_output(k).name!r}]"]
            assert lines[row - 1] == f"# {layer.name}", (layer.name, lines[row - 1])
            checked += 1
    assert checked == sum(network.get_layer(i).num_outputs for i in range(network.num_layers)) == 22

    assert "t['hidden_states'] = INPUT(dtype='float16', shape=(-1, 8))" in lines
    assert "t['input_ids'] = INPUT(dtype='int32', shape=(-1,))" in lines
    # type-specific attributes are read from the concrete layer classes
    assert ("t['model/layers/0/fc/MATRIX_MULTIPLY_0_output_0'] = MATRIX_MULTIPLY(t['hidden_states'], "
            "t['model/layers/0/fc/CONSTANT_0_output_0'], op0=MatrixOperation.NONE, op1=MatrixOperation.TRANSPOSE)"
            "  # float16[-1, 8]") in lines
    assert "t['model/TOPK_0_output_0'], t['model/TOPK_0_output_1'] = TOPK(" in text
    assert "# float32[-1, 2], int32[-1, 2]" in text
    # small constants are written out, big ones summarised
    assert "weights=array([1e-06], dtype='float32')" in text
    assert "CONSTANT(shape=(32, 8), weights=Weights(dtype='float16', shape=(32, 8)))" in text
    outputs = lines[lines.index("OUTPUTS = [") + 1: -1]
    assert [o.split(",")[0].strip() for o in outputs] == [
        "t['logits']", "t['lse']", "t['top2']", "t['shape']", "t['mm_1']"]


def test_network_definition_quotes_any_name():
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("it's \"odd\"", trt.float32, (2,))
    layer = network.add_unary(x, trt.UnaryOperation.ABS)
    layer.name = "layer with 'quotes' and \\ backslash"
    network.mark_output(layer.get_output(0))
    text = network_definition_text(network)
    tree = ast.parse(text)
    assert f"# {layer.name}" in text.splitlines()
    subscripts = {node.slice.value for node in ast.walk(tree)
                  if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)}
    assert {"it's \"odd\"", layer.get_output(0).name} <= subscripts


# ---------------------------------------------------------------- plugin.txt


def _gpt_attention_collection():
    """GPTAttention-like fields; the arrays are returned too, as a PluginField only points at them."""
    arrays = []

    def field(name, value, dtype, kind):
        arrays.append(np.array(value, dtype=dtype))
        return trt.PluginField(name, arrays[-1], kind)

    t = trt.PluginFieldType
    return arrays, trt.PluginFieldCollection([
        field("layer_idx", 3, np.int32, t.INT32),
        field("num_heads", 32, np.int32, t.INT32),
        field("q_scaling", 1.0, np.float32, t.FLOAT32),
        field("rotary_embedding_base", 10000.0, np.float32, t.FLOAT32),
        field("rotary_embedding_scale", 1 / 11.3137, np.float32, t.FLOAT32),
        field("position_embedding_type", 2, np.int8, t.INT8),
        field("type_id", [1], np.int32, t.INT32),
        field("cp_group", [0, 1], np.int32, t.INT32),
    ])


def test_plugin_txt_one_line_per_field():
    _arrays, collection = _gpt_attention_collection()
    fields = plugin_fields(collection)
    text = format_plugin_fields([
        PluginFields("model/layers/3/attention/PLUGIN_V2_GPTAttention_0", "GPTAttention", "1", fields),
        PluginFields("model/layers/4/attention/PLUGIN_V2_GPTAttention_0", "GPTAttention", "1",
                     {"layer_idx": np.array(4, np.int32)}),
    ])
    assert text == (
        "# Plugin creation fields, one block per plugin layer in network order. Written by ditto.\n"
        "\n"
        "[model/layers/3/attention/PLUGIN_V2_GPTAttention_0]\n"
        "# GPTAttention version 1, 8 fields\n"
        "layer_idx: int32 = 3\n"
        "num_heads: int32 = 32\n"
        "q_scaling: float32 = 1.0\n"
        "rotary_embedding_base: float32 = 10000.0\n"
        "rotary_embedding_scale: float32 = 0.08838841\n"
        "position_embedding_type: int8 = 2\n"
        "type_id: int32 = 1\n"
        "cp_group: int32[2] = [0, 1]\n"
        "\n"
        "[model/layers/4/attention/PLUGIN_V2_GPTAttention_0]\n"
        "# GPTAttention version 1, 1 fields\n"
        "layer_idx: int32 = 4\n"
    )
    # float32 values print at float32 precision and read back exactly
    assert np.float32("0.08838841") == fields["rotary_embedding_scale"][0]


def test_plugin_fields_are_copies():
    values = np.array([5], np.int32)
    collection = trt.PluginFieldCollection([trt.PluginField("layer_idx", values, trt.PluginFieldType.INT32)])
    fields = plugin_fields(collection)
    values[0] = 7
    assert fields["layer_idx"].tolist() == [5]


# ---------------------------------------------------------------- step dumps


def test_step_dump_views_buffers_at_engine_shapes(tmp_path):
    logits = torch.arange(4 * 10, dtype=torch.float32).reshape(4, 10)  # max-size buffer, batch 2 used
    new_tokens = torch.tensor([[7], [9]], dtype=torch.int32)  # [batch, beam] bound as input_ids [batch*beam]
    extra = torch.randn(3, 8, dtype=torch.bfloat16)
    buffers = {"input_ids": new_tokens, "logits": logits, "mm_default": extra, "host_thing": torch.ones(2)}
    shapes = {"input_ids": (2,), "logits": (2, 10), "mm_default": (3, 8), "host_thing": (-1,)}
    dump = step_dump(buffers, shapes)

    assert dump["input_ids"].tolist() == [7, 9]
    assert torch.equal(dump["logits"], logits[:2])
    assert torch.equal(dump["mm_default"], extra) and dump["mm_default"].dtype == torch.bfloat16
    assert dump["host_thing"].shape == (2,)  # unknown shape: dumped as bound
    logits.zero_()
    assert dump["logits"][1, 9].item() == 19.0  # a copy, not a view of the live buffer

    path = save_step(tmp_path / "step0.pt", dump)
    loaded = load_step(path)
    assert list(loaded) == list(dump) and all(torch.equal(loaded[k], dump[k]) for k in dump)


# ---------------------------------------------------------------- versions and scripts


@pytest.mark.parametrize("version, line", [("1.2.0", "1.2.x"), ("1.2.0rc2", "1.2.x"), ("1.2.1", "1.2.x"),
                                           ("0.20.0", "0.20.x"), ("0.20.0rc3", "0.20.x")])
def test_supported_versions(version, line):
    assert check_trtllm_version(version) == line


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0rc4", "0.19.0", "0.2.0", "2.0.0", "1.20.0", "garbage", ""])
def test_unknown_version_fails_naming_it_and_the_supported_ones(version):
    with pytest.raises(DittoError, match=rf"does not know TensorRT-LLM {re.escape(version)}:[\s\S]*1\.2\.x, 0\.20\.x"):
        check_trtllm_version(version)


def test_build_argv_gives_bare_visualize_network_the_artifacts_dir():
    argv = ["--checkpoint_dir", "ckpt", "--visualize_network", "--profiling_verbosity", "detailed"]
    assert prepare_build_argv(argv, "/a") == [
        "--checkpoint_dir", "ckpt", "--visualize_network", "/a", "--profiling_verbosity", "detailed"]
    assert prepare_build_argv(["--visualize_network"], "/a") == ["--visualize_network", "/a"]
    assert prepare_build_argv(["--visualize_network", "onnx_dir"], "/a") == ["--visualize_network", "onnx_dir"]
    assert prepare_build_argv(["--workers", "1", "--output_dir", "e"], None) == ["--workers", "1", "--output_dir", "e"]
    with pytest.raises(DittoError, match="--visualize_network needs a directory.*DEBUG_ARTIFACTS_DIR"):
        prepare_build_argv(["--visualize_network", "--dry_run"], None)
    for argv in (["--workers", "2"], ["--workers=4"]):
        with pytest.raises(DittoError, match="do not reach the worker processes"):
            prepare_build_argv(argv, None)


def test_find_run_py(tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "run.py").write_text("")
    assert find_run_py({"TRTLLM_EXAMPLES_DIR": str(examples)}) == examples / "run.py"
    assert find_run_py({}, defaults=(tmp_path / "nope.py", examples / "run.py")) == examples / "run.py"
    with pytest.raises(DittoError, match=r"TRTLLM_EXAMPLES_DIR=.*empty has no run\.py"):
        find_run_py({"TRTLLM_EXAMPLES_DIR": str(tmp_path / "empty")}, defaults=(examples / "run.py",))
    with pytest.raises(DittoError, match=r"cannot find .*run\.py \(tried .*nope\.py\); set TRTLLM_EXAMPLES_DIR"):
        find_run_py({}, defaults=(tmp_path / "nope.py",))


@pytest.mark.skipif(HAS_TRTLLM, reason="TensorRT-LLM is installed on this machine")
def test_import_without_tensorrt_llm_says_what_to_do():
    with pytest.raises(DittoError, match="ditto.patches patches TensorRT-LLM, which cannot be imported here"):
        importlib.import_module("ditto.patches")
    assert "ditto.patches" not in sys.modules


@pytest.mark.skipif(HAS_TRTLLM, reason="TensorRT-LLM is installed on this machine")
@pytest.mark.parametrize("script", ["trtllm-build", "run.py"])
def test_scripts_without_tensorrt_llm_fail_cleanly(script):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "error: ditto.patches patches TensorRT-LLM, which cannot be imported here" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not HAS_TRTLLM, reason=NO_TRTLLM)
def test_patches_apply_to_installed_tensorrt_llm():
    from tensorrt_llm.builder import Builder
    from tensorrt_llm.runtime.generation import GenerationSession

    import ditto.patches

    assert ditto.patches.TRTLLM_LINE in ("1.2.x", "0.20.x")
    assert hasattr(Builder.build_engine, "__ditto_original__")
    assert hasattr(GenerationSession.dump_debug_buffers, "__ditto_original__")


# ---------------------------------------------------------------- the patch wiring, on a stand-in


@pytest.fixture
def stand_in_trtllm(monkeypatch):
    """A stand-in `tensorrt_llm` with the patched functions' signatures as read in its 1.2.0rc2
    sources. It exercises ditto's wrappers only; it proves nothing about TensorRT-LLM itself."""
    calls = []
    plugin_infos = {}

    class Builder:
        def build_engine(self, network, builder_config, managed_weights=None):
            calls.append(("build_engine", network.trt_network.num_outputs, managed_weights))
            return b"engine"

    class GenerationSession:
        def dump_debug_buffers(self, step: int) -> None:
            calls.append(("dump_debug_buffers", step))

    modules = {
        "tensorrt_llm": types.SimpleNamespace(__version__="1.2.0rc2"),
        "tensorrt_llm.builder": types.SimpleNamespace(Builder=Builder),
        "tensorrt_llm.network": types.SimpleNamespace(get_plugin_info=lambda net, name: plugin_infos.get(name)),
        "tensorrt_llm.runtime": types.SimpleNamespace(),
        "tensorrt_llm.runtime.generation": types.SimpleNamespace(GenerationSession=GenerationSession),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    _forget_patches()
    yield types.SimpleNamespace(modules=modules, calls=calls, plugin_infos=plugin_infos, Builder=Builder,
                                GenerationSession=GenerationSession)
    _forget_patches()


def _forget_patches():
    import ditto

    sys.modules.pop("ditto.patches", None)
    if hasattr(ditto, "patches"):
        del ditto.patches


def test_wiring_build_engine_adds_outputs_and_writes_artifacts(stand_in_trtllm, monkeypatch, tmp_path):
    _, network = _network()
    stand_in_trtllm.plugin_infos["model/UNARY_EXP_0"] = types.SimpleNamespace(
        plugin_creator=types.SimpleNamespace(name="GPTAttention", plugin_version="1"),
        pfc_as_ndarray=plugin_fields(_gpt_attention_collection()[1]))
    stand_in_trtllm.plugin_infos["model/SOFTMAX_0"] = types.SimpleNamespace(  # another plugin: not recorded
        plugin_creator=types.SimpleNamespace(name="Gemm", plugin_version="1"), pfc_as_ndarray={})
    monkeypatch.setenv("TRTLLM_ADD_OUTPUT", '{"model/layers/1/fc/MATRIX_MULTIPLY_0": "mm_default"}')
    monkeypatch.setenv("DEBUG_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    import ditto.patches

    assert ditto.patches.TRTLLM_LINE == "1.2.x"
    importlib.import_module("ditto.patches")  # importing again patches nothing twice
    builder = stand_in_trtllm.Builder()
    assert builder.build_engine(types.SimpleNamespace(trt_network=network), "config", {}) == b"engine"
    assert stand_in_trtllm.calls == [("build_engine", 5, {})]  # the original saw the added output

    network_def = (tmp_path / "artifacts" / "trt_network_def.py").read_text()
    assert "    t['mm_default'],  # float16[-1, 8]" in network_def
    plugin_txt = (tmp_path / "artifacts" / "plugin.txt").read_text()
    assert "[model/UNARY_EXP_0]\n# GPTAttention version 1, 8 fields\nlayer_idx: int32 = 3\n" in plugin_txt
    assert "SOFTMAX" not in plugin_txt


def test_wiring_unknown_layer_still_writes_the_names_to_choose_from(stand_in_trtllm, monkeypatch, tmp_path):
    _, network = _network()
    monkeypatch.setenv("TRTLLM_ADD_OUTPUT", '{"model/layers/1/fc/MATRIX_MULTIPLY": "mm"}')
    monkeypatch.setenv("DEBUG_ARTIFACTS_DIR", str(tmp_path))
    import ditto.patches  # noqa: F401

    with pytest.raises(DittoError, match="closest: 'model/layers/1/fc/MATRIX_MULTIPLY_0'"):
        stand_in_trtllm.Builder().build_engine(types.SimpleNamespace(trt_network=network), "config")
    assert stand_in_trtllm.calls == []
    assert "# model/layers/1/fc/MATRIX_MULTIPLY_0\n" in (tmp_path / "trt_network_def.py").read_text()


def test_wiring_dump_debug_buffers_writes_step_files(stand_in_trtllm, monkeypatch, tmp_path):
    class Context:
        def __init__(self, tokens):
            self.shapes = {"input_ids": (tokens,), "logits": (1, 4), "mm_default": (tokens, 2)}

        def get_tensor_shape(self, name):
            return self.shapes[name]

    runtime = types.SimpleNamespace(ctx_context=Context(3), context_0=Context(1), context_1=Context(1))
    session = stand_in_trtllm.GenerationSession()
    session.runtime = runtime
    session.mapping = types.SimpleNamespace(world_size=1, rank=0)
    import ditto.patches  # noqa: F401

    session.debug_buffer = {"input_ids": torch.tensor([5, 6, 7], dtype=torch.int32)}
    session.dump_debug_buffers(0)  # no DEBUG_ARTIFACTS_DIR: TensorRT-LLM's own dump runs
    assert stand_in_trtllm.calls == [("dump_debug_buffers", 0)]

    monkeypatch.setenv("DEBUG_ARTIFACTS_DIR", str(tmp_path))
    steps = [{"input_ids": torch.tensor([5, 6, 7], dtype=torch.int32), "logits": torch.arange(8.0).reshape(2, 4),
              "mm_default": torch.ones(3, 2), "unbound": torch.zeros(2)},
             {"input_ids": torch.tensor([[8]], dtype=torch.int32), "logits": torch.arange(8.0).reshape(2, 4) + 1,
              "mm_default": torch.full((4, 2), 2.0)}]
    for step, buffers in enumerate(steps):
        session.debug_buffer = buffers
        session.dump_debug_buffers(step)
    assert stand_in_trtllm.calls == [("dump_debug_buffers", 0)]

    step0, step1 = load_step(tmp_path / "step0.pt"), load_step(tmp_path / "step1.pt")
    assert step0["input_ids"].tolist() == [5, 6, 7] and step0["logits"].tolist() == [[0.0, 1.0, 2.0, 3.0]]
    assert step0["mm_default"].shape == (3, 2) and step0["unbound"].shape == (2,)
    assert step1["input_ids"].tolist() == [8] and step1["logits"].tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert step1["mm_default"].tolist() == [[2.0, 2.0]]

    session.mapping = types.SimpleNamespace(world_size=2, rank=1)  # ranks share DEBUG_ARTIFACTS_DIR
    session.dump_debug_buffers(1)
    assert torch.equal(load_step(tmp_path / "rank1" / "step1.pt")["logits"], step1["logits"])


def test_wiring_refuses_unknown_versions_and_signatures(stand_in_trtllm, monkeypatch):
    monkeypatch.setattr(stand_in_trtllm.modules["tensorrt_llm"], "__version__", "1.1.0")
    with pytest.raises(DittoError, match="does not know TensorRT-LLM 1.1.0"):
        importlib.import_module("ditto.patches")
    monkeypatch.setattr(stand_in_trtllm.modules["tensorrt_llm"], "__version__", "1.2.0")
    monkeypatch.setattr(stand_in_trtllm.GenerationSession, "dump_debug_buffers", lambda self: None)
    with pytest.raises(DittoError, match=r"dump_debug_buffers takes \(self, \.\.\.\), not \(self, step, \.\.\.\)"):
        importlib.import_module("ditto.patches")
    assert not hasattr(stand_in_trtllm.Builder.build_engine, "__ditto_original__")  # all checked before any patch
