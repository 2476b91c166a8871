"""TensorRT-LLM's MoE for the recognised `ditto.moe` layers: config.json's `moe` fields and
`hidden_act`, and the MixtureOfExperts plugin (its creation, thin; it only runs on a GPU with
TensorRT-LLM, so tests check it against the facts below).

Facts (read from NVIDIA/TensorRT-LLM with the code-search store; `FACTS` names path and commit):
- `tensorrt_llm/layers/moe.py`: `MoeConfig` fields num_experts, shared_expert_intermediate_size,
  top_k, normalization_mode, sparse_mixer_epsilon (0.01), tp_mode, device_limited_n_group,
  device_limited_topk_group, device_limited_routed_scaling_factor (1.0);
  `ExpertScaleNormalizationMode` NONE 0, RENORMALIZE 1, SPARSE_MIXER 2, DEVICE_LIMITED 3,
  DEVICE_LIMITED_RENORM 4. Routing is computed in TensorRT layers (`MixtureOfExperts.forward`:
  default_routing / renormalize / group_limited_greedy / sparse_mixer) and the plugin
  receives `token_selected_experts` [T, k] int32 and `token_final_scales` [T, k] float32:
  ditto routes the same way (`ditto.trt.converters.moe.routing`), so every router the op has
  (sigmoid, expert bias, grouped, on logits) runs with the plugin too.
  `_moe_plugin`: creator ("MixtureOfExperts", "1", TRT_LLM_PLUGIN_NAMESPACE), inputs
  [hidden_states, expert_weights_1, expert_weights_2, token_selected_experts,
  token_final_scales (use_final_scales), expert_bias_1, expert_bias_2 (use_bias)] without
  quantisation/LoRA/side stream; `fc` weights [E, fc_out, hidden] with the linear half left
  and the gate half right (w3 then w1), `proj` [E, hidden, inter]; activation ids gelu 0,
  relu 1, silu 2, swiglu 3, geglu 4, swiglu_bias 5, identity 6.
- `cpp/.../mixtureOfExpertsPlugin.cpp` `createPlugin`: every field must be INT32; required and
  optional names in `FACTS["create_plugin_reads"]`.
- `tensorrt_llm/models/llama/config.py` `from_hugging_face`: for mixtral/arctic/granitemoe,
  `hidden_act = "swiglu"` ("HF LLaMA-type models are implicitly using gated activation. With
  our MoE implementation, we must make it explicit"): config.json's hidden_act names the
  experts' gated activation.
"""

from __future__ import annotations

import numpy as np

from ditto.errors import DittoError

_LAYERS_MOE_PY = {"path": "tensorrt_llm/layers/moe.py", "commit": "c388fec7fe09ebd2bd7096804c1cda5b5fc426f5"}
FACTS = {
    "moe_config_fields": {**_LAYERS_MOE_PY, "value": [
        "num_experts", "shared_expert_intermediate_size", "top_k", "normalization_mode", "sparse_mixer_epsilon",
        "tp_mode", "device_limited_n_group", "device_limited_topk_group", "device_limited_routed_scaling_factor"]},
    "normalization_modes": {**_LAYERS_MOE_PY, "value": {
        "NONE": 0, "RENORMALIZE": 1, "SPARSE_MIXER": 2, "DEVICE_LIMITED": 3, "DEVICE_LIMITED_RENORM": 4}},
    "activation_ids": {**_LAYERS_MOE_PY, "value": {
        "gelu": 0, "gelu_new": 0, "relu": 1, "silu": 2, "swiglu": 3, "geglu": 4, "swiglu_bias": 5, "identity": 6}},
    "plugin_creator": {**_LAYERS_MOE_PY, "value": ("MixtureOfExperts", "1", "tensorrt_llm")},
    "plugin_fields_python_sets": {**_LAYERS_MOE_PY, "value": [
        "remove_input_padding", "number_of_experts", "experts_per_token", "expert_hidden_size", "expert_inter_size",
        "groupwise_quant_algo", "group_size", "activation_type", "type_id", "weight_type_id", "output_type_id",
        "quant_mode", "use_bias", "use_final_scales", "tp_size", "tp_rank", "ep_size", "ep_rank", "force_determinism",
        "side_stream_id", "use_lora"]},
    "plugin_inputs": {**_LAYERS_MOE_PY, "value": [
        "hidden_states", "expert_weights_1", "expert_weights_2", "token_selected_experts", "token_final_scales",
        "expert_bias_1", "expert_bias_2"]},
    "create_plugin_reads": {
        "path": "cpp/tensorrt_llm/plugins/mixtureOfExperts/mixtureOfExpertsPlugin.cpp",
        "commit": "085ba03c211513c1cba57188f56bd3fc3dd75061",
        "value": {"type": "INT32 (TLLM_CHECK on every field)",
                  "required": ["remove_input_padding", "number_of_experts", "experts_per_token", "expert_hidden_size",
                               "expert_inter_size", "groupwise_quant_algo", "group_size", "activation_type", "type_id",
                               "weight_type_id", "quant_mode", "tp_size", "tp_rank", "ep_size", "ep_rank", "use_lora",
                               "use_final_scales"],
                  "optional": ["use_bias", "output_type_id", "force_determinism", "side_stream_id", "lora_type_id",
                               "max_low_rank"]},
    },
    "hidden_act_for_moe": {"path": "tensorrt_llm/models/llama/config.py (LLaMAConfig.from_hugging_face)",
                           "commit": "04100fd0a70976e86e0ac117f34942d06c21545d",
                           "value": {"mixtral": "swiglu", "arctic": "swiglu", "granitemoe": "swiglu"}},
}

NO_MOE = {
    "num_experts": 0,
    "shared_expert_intermediate_size": 0,
    "top_k": 0,
    "normalization_mode": 0,
    "sparse_mixer_epsilon": 0.01,
    "tp_mode": 0,
    "device_limited_n_group": 0,
    "device_limited_topk_group": 0,
    "device_limited_routed_scaling_factor": 1.0,
}
PLUGIN_ACTIVATIONS = {name: FACTS["activation_ids"]["value"][name]
                      for name in ("gelu", "relu", "silu", "swiglu", "geglu", "identity")}
PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE = FACTS["plugin_creator"]["value"]
_MODES = FACTS["normalization_modes"]["value"]
TRT_DATA_TYPE_IDS = {"float32": 0, "float16": 1, "bfloat16": 7}  # int(tensorrt.DataType.X), as ditto.trtllm.gpt_attention_plugin
_UNIFORM_KEYS = ("num_experts", "top_k", "normalization_mode", "scoring", "activation", "routed_scaling",
                 "has_expert_bias", "selection", "n_group", "topk_group", "group_top", "sparse_mixer_epsilon",
                 "activation_params")


def moe_config(layers: list[dict], hf_config) -> dict:
    """`pretrained_config.moe` for the recognised MoE layers (NO_MOE when there are none).

    TensorRT-LLM's runtime does not read these (the engine routes); they record the routing in
    its terms: NONE / RENORMALIZE / SPARSE_MIXER, DEVICE_LIMITED(_RENORM) with the group counts
    for a grouped top-k. Sigmoid scores, an expert bias and the sum-of-top-2 group score have
    no MoeConfig field; the engine computes them all the same."""
    if not layers:
        return dict(NO_MOE)
    first = _uniform(layers)
    mode = first["normalization_mode"]
    if first["n_group"] > 1:
        mode = _MODES["DEVICE_LIMITED_RENORM"] if mode == _MODES["RENORMALIZE"] else _MODES["DEVICE_LIMITED"]
    shared = getattr(hf_config, "shared_expert_intermediate_size", None)
    if shared is None and getattr(hf_config, "n_shared_experts", None):
        shared = hf_config.n_shared_experts * getattr(hf_config, "moe_intermediate_size", 0)
    config = dict(
        NO_MOE,
        num_experts=first["num_experts"],
        top_k=first["top_k"],
        normalization_mode=mode,
        shared_expert_intermediate_size=int(shared or 0),
        device_limited_routed_scaling_factor=float(first["routed_scaling"]),
    )
    if first["normalization_mode"] == _MODES["SPARSE_MIXER"]:
        config["sparse_mixer_epsilon"] = float(first["sparse_mixer_epsilon"])
    if first["n_group"] > 1:
        config.update(device_limited_n_group=first["n_group"], device_limited_topk_group=first["topk_group"])
    return config


def moe_hidden_act(layers: list[dict], default: str) -> str:
    """config.json's `hidden_act`: the experts' activation in TensorRT-LLM's names when the model
    has MoE layers (TensorRT-LLM writes "swiglu" for Mixtral's gated SiLU experts), else `default`."""
    if not layers:
        return default
    name = _uniform(layers)["activation"]
    return "swiglu_bias" if name == "swiglu_clamped" else name


def _uniform(layers: list[dict]) -> dict:
    first = {k: layers[0].get(k) for k in _UNIFORM_KEYS}
    for layer in layers[1:]:
        other = {k: layer.get(k) for k in _UNIFORM_KEYS}
        if other != first:
            raise DittoError(f"MoE layers differ ({first} vs {other}); TensorRT-LLM's config has one MoE configuration "
                             "per model")
    return first


def plugin_unsupported(layer: dict) -> str | None:
    """Why TensorRT-LLM's MoE plugin cannot compute `layer`'s experts, or None. Routing is not a
    reason: it runs in TensorRT layers before the plugin, as in TensorRT-LLM 1.x."""
    if layer["activation"] not in PLUGIN_ACTIVATIONS:
        return (f"activation {layer['activation']!r} (the plugin's swiglu_bias takes no alpha/beta/limit fields)"
                if layer["activation"] == "swiglu_clamped" else f"activation {layer['activation']!r}")
    if bool(layer.get("has_bias")) != bool(layer.get("has_fc2_bias", layer.get("has_bias"))):
        return "a bias on one expert projection only (the plugin takes both or neither)"
    return None


def moe_plugin_fields(num_experts: int, top_k: int, hidden_size: int, inter_size: int, activation: str, dtype: str,
                      use_bias: bool) -> list[tuple[str, np.ndarray]]:
    """The MixtureOfExperts plugin fields, as TensorRT-LLM's `_moe_plugin` sets them for an
    unquantised one-GPU layer with routing outside the plugin (all INT32)."""
    if dtype not in TRT_DATA_TYPE_IDS:
        raise DittoError(f"the MixtureOfExperts plugin has no dtype {dtype!r}; use one of {sorted(TRT_DATA_TYPE_IDS)}")
    if activation not in PLUGIN_ACTIVATIONS:
        raise DittoError(f"the MixtureOfExperts plugin has no activation {activation!r}")
    type_id = TRT_DATA_TYPE_IDS[dtype]
    values = dict(
        remove_input_padding=1, number_of_experts=num_experts, experts_per_token=top_k, expert_hidden_size=hidden_size,
        expert_inter_size=inter_size, groupwise_quant_algo=0, group_size=-1,
        activation_type=PLUGIN_ACTIVATIONS[activation], type_id=type_id, weight_type_id=type_id, output_type_id=type_id,
        quant_mode=0, use_bias=int(use_bias), use_final_scales=1, tp_size=1, tp_rank=0, ep_size=1, ep_rank=0,
        force_determinism=0, side_stream_id=0, use_lora=0,
    )
    return [(name, np.array([value], dtype=np.int32)) for name, value in values.items()]


def create_moe_plugin(trt, fields: list[tuple[str, np.ndarray]]):
    """The MixtureOfExperts plugin object from `trt`'s registry (TensorRT-LLM's creator)."""
    lookup = getattr(trt.get_plugin_registry(), "get_plugin_creator", None)
    creator = lookup(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) if lookup is not None else None
    if creator is None:
        raise DittoError("TensorRT-LLM's MixtureOfExperts plugin is not registered (`import tensorrt_llm` loads it); "
                         "the native MoE lowering needs no plugin")
    collection = trt.PluginFieldCollection([trt.PluginField(name, value, trt.PluginFieldType.INT32)
                                            for name, value in fields])
    plugin = creator.create_plugin("mixture_of_experts", collection)
    if plugin is None:
        raise DittoError("TensorRT-LLM rejected the MixtureOfExperts plugin fields (see its log above); ditto "
                         "targets TensorRT-LLM 1.2")
    return plugin


def plugin_inputs(hidden, fc1, fc2, selected, scales, fc1_bias=None, fc2_bias=None) -> list:
    """The plugin's inputs in its order (FACTS["plugin_inputs"])."""
    inputs = [hidden, fc1, fc2, selected, scales]
    if (fc1_bias is None) != (fc2_bias is None):
        raise DittoError("the MixtureOfExperts plugin takes both expert biases or neither")
    if fc1_bias is not None:
        inputs += [fc1_bias, fc2_bias]
    return inputs
