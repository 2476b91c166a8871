"""Mixture of experts end to end, and loading through transformers' own checkpoint conversion.

- Loading: every parameter of the tiny MoE models (whose checkpoints hold per-expert tensors
  that transformers 5 stacks into 3-D parameters) reads back exactly what `from_pretrained`
  loads.
- Export reads the forward's signature.
- `ditto.moe`'s reference kernel against an independent per-token computation; the pass's
  recognised parameters; fx against HF on the tiny MoE models; the TensorRT lowering built
  and replayed against the op; config.json's `moe` fields.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from ditto.errors import DittoError
from ditto.exporter.export import forward_arguments
from ditto.models.loader import load_model
from ditto.models.tiny import tiny_model_dir
from ditto.models.weights import Converted, read_source
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import run_program
from tests.parity import forced_request, materialized, worst_errors
from tests.tiny_models import require_model_type

# ---- loading through transformers' conversion -------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-mixtral", "tiny-qwen3-moe"])
def test_every_parameter_reads_what_from_pretrained_loads(name):
    from transformers import AutoModelForCausalLM

    loaded = load_model(name)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir(name)).state_dict()
    converted = [k for k, s in loaded.sources.items() if isinstance(s, Converted)]
    assert any(k.endswith("experts.gate_up_proj") for k in converted)  # the merge path is reached
    for key, value in reference.items():
        names = [key, *loaded.aliases.get(key, [])]
        source = next(loaded.sources[n] for n in names if n in loaded.sources)
        # exact: the conversion stacks and concatenates, it computes nothing (kills: experts
        # stacked in lexical order 0, 1, 10, 2..., gate/up swapped, a missed converter)
        assert torch.equal(read_source(source), value), key


def test_experts_stack_in_numeric_order(tmp_path):
    """Twelve experts: a lexical sort would stack expert 10 after expert 1."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("mixtral", vocab_size=64, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, num_local_experts=12, num_experts_per_tok=2)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    expected = AutoModelForCausalLM.from_pretrained(tmp_path).model.layers[0].mlp.experts.down_proj
    assert torch.equal(read_source(loaded.sources["model.layers.0.mlp.experts.down_proj"]), expected)


# ---- export from the forward signature -------------------------------------------------------------

def test_forward_arguments_follow_the_signature():
    tensors = {"input_ids": ("ids", {1: "n"}), "position_ids": ("pos", {1: "n"})}

    def named(input_ids=None, position_ids=None, use_cache=None): ...

    def var_keyword(input_ids=None, **kwargs): ...  # OpenAI-GPT / GraniteMoE take use_cache this way

    def nothing_else(input_ids): ...

    def no_ids(inputs, **kwargs): ...

    assert forward_arguments(named, tensors, {"use_cache": False}) == (
        {"input_ids": "ids", "position_ids": "pos"}, {"input_ids": {1: "n"}, "position_ids": {1: "n"}}, {"use_cache": False}
    )
    assert forward_arguments(var_keyword, tensors, {"use_cache": False}) == (
        {"input_ids": "ids"}, {"input_ids": {1: "n"}}, {"use_cache": False}
    )
    assert forward_arguments(nothing_else, tensors, {"use_cache": False})[2] == {}
    with pytest.raises(DittoError, match="takes no `input_ids`"):
        forward_arguments(no_ids, tensors, {})


def test_a_model_taking_use_cache_through_kwargs_exports(tmp_path):
    """OpenAI-GPT's forward has no `use_cache` parameter (it failed with a dynamic-shape key error)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("openai-gpt", vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert "use_cache" not in inspect.signature(loaded.model.forward).parameters
    from ditto.exporter.export import export_model

    exported = export_model(loaded)
    assert [s.arg.name for s in exported.graph_signature.input_specs if s.kind.name == "USER_INPUT"][:1] == ["input_ids"]


# ---- the op's reference kernel --------------------------------------------------------------------

def _per_token(x, logits, fc1, fc2, bias, top_k, mode, scoring, activation, scale):
    """Independent of the kernel: token by token, expert by expert, in float64."""
    out = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        scores = torch.softmax(logits[t].double(), -1) if scoring == "softmax" else torch.sigmoid(logits[t].double())
        choice = scores + bias.double() if bias is not None else scores
        chosen = sorted(range(len(scores)), key=lambda e: -float(choice[e]))[:top_k]
        weights = torch.stack([scores[e] for e in chosen])
        if mode == 1:
            weights = weights / weights.sum()
        for w, e in zip(weights * scale, chosen):
            h = fc1[e].double() @ x[t].double()
            if activation == "swiglu":
                inter = h.shape[0] // 2
                h = h[:inter] * torch.nn.functional.silu(h[inter:])
            else:
                h = torch.relu(h)
            out[t] += w * (fc2[e].double() @ h)
    return out


CASES = {
    "mixtral": dict(mode=1, scoring="softmax", activation="swiglu", bias=False, scale=1.0),
    "qwen-no-renorm": dict(mode=0, scoring="softmax", activation="swiglu", bias=False, scale=1.0),
    "sigmoid-bias-scale": dict(mode=1, scoring="sigmoid", activation="relu", bias=True, scale=2.5),
}


def _case(case, tokens=9, hidden=8, inter=6, experts=5, top_k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = 2 * inter if case["activation"] == "swiglu" else inter
    return dict(
        x=torch.randn(tokens, hidden, generator=g),
        logits=torch.randn(tokens, experts, generator=g),
        fc1=torch.randn(experts, width, hidden, generator=g) / hidden**0.5,
        fc2=torch.randn(experts, hidden, inter, generator=g) / inter**0.5,
        bias=torch.randn(experts, generator=g) if case["bias"] else None,
        experts=experts,
        top_k=top_k,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_reference_kernel_matches_a_per_token_computation(name):
    case, v = CASES[name], _case(CASES[name])
    got = torch.ops.ditto.moe(v["x"], v["logits"], v["fc1"], v["fc2"], None, None, v["bias"], v["experts"], v["top_k"],
                              case["mode"], case["scoring"], case["activation"], case["scale"])
    expected = _per_token(v["x"], v["logits"], v["fc1"], v["fc2"], v["bias"], v["top_k"], case["mode"], case["scoring"],
                          case["activation"], case["scale"])
    # float32 kernel vs float64 reference on O(1) values: 1e-5 covers float32 rounding of ~20 terms
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


# ---- recognition and parity ------------------------------------------------------------------------

def test_pass_recognises_the_tiny_moe_models():
    mixtral = load_program("tiny-mixtral")
    assert dict(mixtral.pass_log)["replace_moe"] == 2
    assert {(m["normalization_mode"], m["scoring"], m["activation"], m["top_k"], m["num_experts"]) for m in mixtral.moe} == {
        (1, "softmax", "swiglu", 2, 4)
    }
    qwen = load_program("tiny-qwen3-moe")
    assert dict(qwen.pass_log)["replace_moe"] == 1  # layer 1 is a dense MLP (mlp_only_layers)
    assert qwen.moe[0]["normalization_mode"] == 0
    for program in (mixtral, qwen):
        assert not [n for n in program.graph_module.graph.nodes if n.target == torch.ops.aten.topk.default]


@pytest.mark.parametrize("name", ["tiny-mixtral", "tiny-qwen3-moe"])
def test_fx_matches_hf_on_moe_models(name):
    program = materialized(load_program(name))
    probes = ["layers.0.mlp", "layers.0.router", "layers.0.experts"]
    assert set(probes) <= set(program.probe_modules)
    request = forced_request(name, steps=2, probes=probes)
    errors = worst_errors(get_backend("hf").run(request), run_program(program, request))
    # the project's float32 bound (tests/parity.py); a wrong routing mode or a swapped gate/up
    # half moves the MoE output by O(1)
    assert max(errors[p] for p in ["logits", *probes]) <= 1e-4, errors


def test_unknown_routing_is_refused_with_the_source_line(monkeypatch):
    """A planted router the recogniser does not know (scores squared before top-k)."""
    from transformers.models.mixtral import modeling_mixtral

    def squared(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        logits = torch.nn.functional.linear(hidden_states, self.weight)
        probs = torch.softmax(logits.float(), dim=-1) ** 2
        top, ids = torch.topk(probs, self.top_k, dim=-1)
        return logits, top, ids

    monkeypatch.setattr(modeling_mixtral.MixtralTopKRouter, "forward", squared)
    with pytest.raises(DittoError, match=r"mixture-of-experts at .*File \".*\.py\", line \d+.*none of the known routers"):
        load_program("tiny-mixtral")


# ---- TensorRT lowering and replay ---------------------------------------------------------------------

@pytest.mark.needs_tensorrt("tensorrt_rtx")
@pytest.mark.parametrize("name", list(CASES))
def test_native_lowering_replays_the_op(name):
    from tests.converter_check import Fn, N, check

    case, v = CASES[name], _case(CASES[name])
    params = dict(fc1=v["fc1"], fc2=v["fc2"]) | (dict(bias=v["bias"]) if v["bias"] is not None else {})

    def fn(m, x, logits):
        return torch.ops.ditto.moe(x, logits, m.fc1, m.fc2, None, None, getattr(m, "bias", None), v["experts"],
                                   v["top_k"], case["mode"], case["scoring"], case["activation"], case["scale"])

    other = _case(case, tokens=5, seed=1)
    # dense TensorRT computation vs the sparse reference: same products, other summation order
    check(Fn(fn, **params), (v["x"], v["logits"]), ({0: N}, {0: N}), others=[(other["x"], other["logits"])], rtol=1e-5, atol=1e-5)


@pytest.mark.needs_tensorrt("tensorrt_rtx")
def test_topk_replay_refuses_ties():
    from ditto.replay import ReplayError, replay_network
    from ditto.trt.provider import trt_module

    trt = trt_module("tensorrt_rtx")
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("x", trt.float32, (2, 4))
    layer = network.add_topk(x, trt.TopKOperation.MAX, 2, 1 << 1)
    network.mark_output(layer.get_output(0))
    values = replay_network(network, {"x": torch.tensor([[1.0, 4.0, 3.0, 2.0], [0.0, -1.0, 5.0, 1.0]])})
    assert values[network.get_output(0).name].tolist() == [[4.0, 3.0], [5.0, 1.0]]
    with pytest.raises(ReplayError, match="equal"):
        replay_network(network, {"x": torch.tensor([[1.0, 4.0, 4.0, 2.0], [0.0, -1.0, 5.0, 1.0]])})


# ---- engine config -------------------------------------------------------------------------------------

def test_engine_config_carries_tensorrt_llm_moe_fields():
    from ditto.trtllm.config import engine_config
    from ditto.trtllm.moe import NO_MOE, plugin_unsupported
    from tests.build_checks import BUILD_OPTIONS

    program = load_program("tiny-mixtral")
    config = engine_config(program.hf_config, program.attention, BUILD_OPTIONS, moe=program.moe)
    moe = config["pretrained_config"]["moe"]
    assert set(moe) == set(NO_MOE)  # the nine keys TensorRT-LLM writes
    assert (moe["num_experts"], moe["top_k"], moe["normalization_mode"]) == (4, 2, 1)
    assert config["pretrained_config"]["hidden_act"] == "swiglu"  # TensorRT-LLM's name for Mixtral's experts
    assert plugin_unsupported(program.moe[0]) is None
    # routing runs in TensorRT layers before the plugin (TensorRT-LLM 1.x): sigmoid scores are no reason to refuse
    assert plugin_unsupported(dict(program.moe[0], scoring="sigmoid")) is None
    dense = load_program("tiny-llama")
    assert engine_config(dense.hf_config, dense.attention, BUILD_OPTIONS)["pretrained_config"]["moe"] == NO_MOE


def test_experts_in_another_implementation_are_refused(monkeypatch):
    """transformers' default `grouped_mm` experts sort tokens by expert: no pattern for them, so
    the leftover top-k is an error naming its source line (not a silently wrong MLP)."""
    from ditto.models import loader

    monkeypatch.setattr(loader, "_export_friendly_experts", lambda model: None)
    with pytest.raises(DittoError, match=r"no pattern matched the top-k .*modeling_mixtral.py"):
        load_program("tiny-mixtral")


def test_only_dense_routing_top_k_passes_the_leftover_check():
    """A top-k whose indices only scatter its values back (Llama 4's router: every expert is
    computed densely) converts op by op; indices used any other way are expert dispatch no
    pattern matched. Kills: `_dense_routing` accepting any top-k (the second graph would pass)."""
    from ditto.passes.check_supported import _dense_routing

    def dense(x):
        values, ids = torch.topk(x, 2, dim=1)
        return torch.full_like(x, float("-inf")).scatter(1, ids, values).sigmoid()

    def dispatch(x, w):
        values, ids = torch.topk(x, 2, dim=1)
        return (w[ids] * values[..., None]).sum(1)

    class Fn(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, *args):
            return self.fn(*args)

    x, w = torch.randn(3, 4), torch.randn(4, 5)
    found = []
    for fn, args in ((dense, (x,)), (dispatch, (x, w))):
        graph = torch.export.export(Fn(fn), args).graph
        (topk,) = [n for n in graph.nodes if n.target is torch.ops.aten.topk.default]
        found.append(_dense_routing(topk))
    assert found == [True, False]


def test_routing_region_is_found_below_a_deep_graph():
    """The routing region of a later layer sits below hundreds of nodes (granitemoe_swa's second
    layer): the region between the router logits and the routing outputs is found however deep
    the graph above it, and what it reads besides the logits gets a probe value. Kills: a
    bounded backward search from the outputs (it wanders up the deep side input, gives up,
    and leaves the region empty, so probing reaches the model's inputs)."""
    from ditto.passes.replace_moe import _side_inputs

    class Deep(torch.nn.Module):
        def forward(self, x):
            deep = x
            for _ in range(300):
                deep = deep + 1
            logits = x * 2
            return logits.softmax(-1) * deep

    graph = torch.export.export(Deep(), (torch.randn(3, 4),)).graph
    (output,) = [n for n in graph.nodes if n.op == "output"]
    target = output.args[0][0]
    (logits,) = [n for n in graph.nodes if n.target is torch.ops.aten.mul.Tensor and n.args[1] == 2]
    side = _side_inputs([target], logits, torch.Generator().manual_seed(0))
    assert [n.name for n in side] == [target.args[1].name]  # the deep input, nothing from above the logits


def test_routing_probe_evaluates_a_bias_computed_from_parameters():
    """ERNIE-4.5 keeps its expert bias [1, E] and squeezes it in forward: the squeeze reads a
    parameter only, so probing evaluates it (the bias is then recognised) rather than feeding it
    a random value that picks other experts than the bias would. Kills: side values for every
    non-parameter node (ERNIE-4.5-MoE refused: "the routing computes none of the known routers")."""
    from ditto.passes.replace_moe import _side_inputs

    class Biased(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.randn(1, 4), requires_grad=False)

        def forward(self, x, h):
            logits = x * 2
            return (logits.softmax(-1) + self.bias.squeeze()) * h.sum()

    graph = torch.export.export(Biased(), (torch.randn(3, 4), torch.randn(3))).module().graph
    (output,) = [n for n in graph.nodes if n.op == "output"]
    target = output.args[0][0] if isinstance(output.args[0], (list, tuple)) else output.args[0]
    (logits,) = [n for n in graph.nodes if n.target is torch.ops.aten.mul.Tensor and n.args[1] == 2]
    side = _side_inputs([target], logits, torch.Generator().manual_seed(0))
    assert [n.target for n in side] == [torch.ops.aten.sum.default]  # the input-dependent h.sum(), not the bias


def test_a_split_conversion_sized_by_the_model_loads(tmp_path):
    """SarvamMoE's checkpoint fuses [q|k|v] rows; transformers splits them with `Split`, which
    sizes each chunk by the model's q/k/v parameters (GQA: unequal). Kills: calling the
    conversion without a model ("'NoneType' object has no attribute 'get_parameter'"), or
    shapes taken from the wrong target."""
    from transformers import AutoConfig, AutoModelForCausalLM

    require_model_type("sarvam_moe")  # added to transformers after 5.17 (the GPU node's)
    config = AutoConfig.for_model("sarvam_moe", vocab_size=64, hidden_size=32, intermediate_size=16, moe_intermediate_size=8,
                                  num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                  num_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    attention = AutoModelForCausalLM.from_pretrained(tmp_path).model.layers[0].self_attn
    for name in ("q_proj", "k_proj", "v_proj"):
        source = loaded.sources[f"model.layers.0.self_attn.{name}.weight"]
        assert isinstance(source, Converted)  # the split path is reached
        assert torch.equal(read_source(source), getattr(attention, name).weight), name
