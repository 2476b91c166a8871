"""TensorRT-LLM's MoE: config.json's fields and hidden_act, and the MixtureOfExperts plugin
creation checked against the facts read from TensorRT-LLM's source (ditto/trtllm/moe.py FACTS;
the plugin itself only runs on a GPU with TensorRT-LLM)."""

from __future__ import annotations

import numpy as np
import pytest

from ditto.errors import DittoError
from ditto.trtllm import moe as trtllm_moe
from ditto.trtllm.moe import FACTS, NO_MOE, moe_config, moe_hidden_act, moe_plugin_fields, plugin_inputs

MIXTRAL = dict(num_experts=8, top_k=2, normalization_mode=1, scoring="softmax", activation="swiglu", routed_scaling=1.0,
               has_expert_bias=False, selection="scores", n_group=1, topk_group=1, group_top=1,
               sparse_mixer_epsilon=0.0, activation_params=(1.0, 0.0, 0.0), has_bias=False, has_fc2_bias=False)


class _Config:
    pass


def test_config_fields_are_tensorrt_llms():
    assert list(NO_MOE) == FACTS["moe_config_fields"]["value"]  # the nine MoeConfig fields, in its order
    assert moe_config([MIXTRAL], _Config())["normalization_mode"] == 1


def test_grouped_and_sparse_mixer_modes():
    grouped = moe_config([dict(MIXTRAL, n_group=4, topk_group=2, group_top=2)], _Config())
    assert (grouped["normalization_mode"], grouped["device_limited_n_group"], grouped["device_limited_topk_group"]) == (
        FACTS["normalization_modes"]["value"]["DEVICE_LIMITED_RENORM"], 4, 2)
    plain = moe_config([dict(MIXTRAL, normalization_mode=0, n_group=2)], _Config())
    assert plain["normalization_mode"] == FACTS["normalization_modes"]["value"]["DEVICE_LIMITED"]
    mixer = moe_config([dict(MIXTRAL, normalization_mode=2, sparse_mixer_epsilon=0.2)], _Config())
    assert (mixer["normalization_mode"], mixer["sparse_mixer_epsilon"]) == (2, 0.2)
    with pytest.raises(DittoError, match="MoE layers differ"):
        moe_config([MIXTRAL, dict(MIXTRAL, n_group=2)], _Config())


def test_hidden_act_names_the_gated_experts_as_tensorrt_llm_does():
    """TensorRT-LLM writes hidden_act "swiglu" for Mixtral (models/llama/config.py), not HF's "silu"."""
    assert moe_hidden_act([MIXTRAL], "silu") == FACTS["hidden_act_for_moe"]["value"]["mixtral"] == "swiglu"
    assert moe_hidden_act([], "silu") == "silu"


def test_plugin_fields_are_what_create_plugin_reads():
    reads = FACTS["create_plugin_reads"]["value"]
    fields = moe_plugin_fields(8, 2, 4096, 14336, "swiglu", "bfloat16", use_bias=False)
    names = [name for name, _ in fields]
    assert len(names) == len(set(names))  # "Parameter %s was set twice" otherwise
    assert set(reads["required"]) <= set(names)  # "Parameter %s is required but not set" otherwise
    assert set(names) <= set(reads["required"]) | set(reads["optional"])
    assert set(names) == set(FACTS["plugin_fields_python_sets"]["value"])  # as TensorRT-LLM's own _moe_plugin
    assert all(value.dtype == np.int32 and value.shape == (1,) for _, value in fields)  # TLLM_CHECK kINT32
    values = {name: int(value[0]) for name, value in fields}
    assert values["activation_type"] == FACTS["activation_ids"]["value"]["swiglu"] == 3
    assert (values["number_of_experts"], values["experts_per_token"]) == (8, 2)
    assert (values["expert_hidden_size"], values["expert_inter_size"]) == (4096, 14336)
    assert values["type_id"] == values["weight_type_id"] == values["output_type_id"] == 7  # trt.bfloat16
    assert values["use_final_scales"] == 1 and values["use_bias"] == 0
    assert FACTS["activation_ids"]["value"]["identity"] == trtllm_moe.PLUGIN_ACTIVATIONS["identity"] == 6


def test_plugin_inputs_in_its_order():
    assert plugin_inputs("x", "w1", "w2", "ids", "scales") == ["x", "w1", "w2", "ids", "scales"]
    order = plugin_inputs("hidden_states", "expert_weights_1", "expert_weights_2", "token_selected_experts",
                          "token_final_scales", "expert_bias_1", "expert_bias_2")
    assert order == FACTS["plugin_inputs"]["value"]
    with pytest.raises(DittoError, match="both expert biases"):
        plugin_inputs("x", "w1", "w2", "ids", "scales", "b1", None)


def test_clamped_swiglu_is_refused_by_the_plugin_path():
    assert trtllm_moe.plugin_unsupported(MIXTRAL) is None
    assert "swiglu_clamped" in trtllm_moe.plugin_unsupported(dict(MIXTRAL, activation="swiglu_clamped"))


def test_plugin_is_created_through_the_registry_with_those_fields():
    created = {}

    class Field:
        def __init__(self, name, data, kind):
            self.name, self.data, self.kind = name, data, kind

    class Creator:
        def create_plugin(self, name, collection):
            created.update(name=name, fields=collection)
            return "plugin"

    class Registry:
        def get_plugin_creator(self, name, version, namespace):
            created["key"] = (name, version, namespace)
            return Creator()

    class FakeTrt:
        PluginField = Field
        PluginFieldCollection = list

        class PluginFieldType:
            INT32 = "INT32"

        @staticmethod
        def get_plugin_registry():
            return Registry()

    fields = moe_plugin_fields(4, 2, 16, 8, "swiglu", "float16", use_bias=True)
    assert trtllm_moe.create_moe_plugin(FakeTrt, fields) == "plugin"
    assert created["key"] == FACTS["plugin_creator"]["value"]
    assert {f.name for f in created["fields"]} == {name for name, _ in fields}
    assert {f.kind for f in created["fields"]} == {"INT32"}


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_build_chooses_native_layers_without_tensorrt_llm():
    import importlib.util

    from ditto.trt.converters.moe import resolve_moe
    from ditto.trt.provider import trt_module

    lowering, why = resolve_moe(trt_module("tensorrt_rtx"))
    if importlib.util.find_spec("tensorrt_llm") is None:
        assert lowering == "native" and why


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_plugin_lowering_routes_in_layers_and_feeds_the_plugin(monkeypatch):
    """`plugin_lowering` on a TensorRT-RTX network whose add_plugin_v2 is recorded (RTX has no
    plugins): the plugin gets [x, fc1, fc2, ids, weights] in TensorRT-LLM's order, and the
    routing layers, replayed, pick the op's experts with the op's weights (a grouped router with
    an expert bias, the hardest case). Kills: ids/weights swapped, routing arguments dropped."""
    import torch

    from ditto.ops import moe as moe_op
    from ditto.replay import replay_network
    from ditto.trt.context import ConversionContext
    from ditto.trt.converters.moe import plugin_lowering
    from ditto.trt.provider import trt_module

    trt = trt_module("tensorrt_rtx")
    network = trt.Builder(trt.Logger(trt.Logger.ERROR)).create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    recorded = {}

    class Layer:
        name = ""

        def __init__(self, output):
            self.output = output

        def get_output(self, index):
            return self.output

    class Recording:
        def __getattr__(self, name):
            return getattr(network, name)

        def add_plugin_v2(self, inputs, plugin):
            recorded.update(inputs=inputs, plugin=plugin)
            return Layer(inputs[0])

    monkeypatch.setattr(trtllm_moe, "create_moe_plugin", lambda trt_, fields: ("plugin", dict(
        (name, int(value[0])) for name, value in fields)))
    experts, hidden, inter, top_k = 8, 4, 3, 2
    g = torch.Generator().manual_seed(0)
    fc1, fc2 = torch.randn(experts, 2 * inter, hidden, generator=g), torch.randn(experts, hidden, inter, generator=g)
    bias = torch.randn(experts, generator=g) * 0.3
    graph = torch.fx.Graph()
    x, logits, w1, w2, b = (graph.placeholder(n) for n in ("x", "logits", "fc1", "fc2", "bias"))
    node = graph.call_function(torch.ops.ditto.moe.default, (
        x, logits, w1, w2, None, None, b, experts, top_k, 1, "sigmoid", "swiglu", 2.5, "scores", 4, 2, 2, 0.0,
        1.0, 0.0, 0.0))
    ctx = ConversionContext(trt, Recording())
    ctx.values.update({x: network.add_input("x", trt.float32, (-1, hidden)),
                       logits: network.add_input("logits", trt.float32, (-1, experts)),
                       w1: ctx.constant(fc1), w2: ctx.constant(fc2), b: ctx.constant(bias)})
    ctx.node = node
    plugin_lowering(ctx, node)
    inputs = recorded["inputs"]
    assert inputs[:3] == [ctx.values[x], ctx.values[w1], ctx.values[w2]] and len(inputs) == 5
    assert recorded["plugin"][1]["experts_per_token"] == top_k and recorded["plugin"][1]["activation_type"] == 3
    ids, weights = inputs[3], inputs[4]
    assert (ids.dtype, weights.dtype) == (trt.int32, trt.float32)
    ids.name, weights.name = "ids", "weights"
    network.mark_output(ids)
    network.mark_output(weights)
    probe = torch.randn(6, experts, generator=g)
    got = replay_network(network, {"x": torch.randn(6, hidden, generator=g), "logits": probe})
    want_w, want_ids = moe_op.route(probe, bias, top_k, 1, "sigmoid", 2.5, "scores", 4, 2, 2, 0.0)
    for t in range(6):
        assert set(got["ids"][t].tolist()) == set(want_ids[t].tolist())
        order = {e: i for i, e in enumerate(want_ids[t].tolist())}
        expected = torch.stack([want_w[t, order[e]] for e in got["ids"][t].tolist()])
        torch.testing.assert_close(got["weights"][t], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_build_says_which_moe_lowering_it_used(tmp_path, capsys):
    """`ditto build` of an MoE model prints the MoE lowering and records it in config.json;
    here (no TensorRT-LLM) TensorRT layers. Kills: the plugin chosen without its creator."""
    import importlib.util
    import json

    from ditto.builder import build
    from tests.build_checks import LIMITS

    if importlib.util.find_spec("tensorrt_llm") is not None:
        pytest.skip("TensorRT-LLM installed: the plugin may be chosen")
    path = build("tiny-mixtral", tmp_path / "engine", **LIMITS)
    assert "moe: 2 layer(s) lowered to TensorRT layers (tensorrt_rtx has no IPluginV2 layers)" in capsys.readouterr().out
    config = json.loads((path / "config.json").read_text())
    assert config["build_config"]["ditto"]["moe"] == "native"
    assert config["pretrained_config"]["hidden_act"] == "swiglu"
