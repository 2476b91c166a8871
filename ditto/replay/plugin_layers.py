"""Plugin layers: a registry from plugin name to a torch reference of what the plugin computes.

A plugin layer is replayed by the entry registered for its plugin's (namespace, name,
version), given the layer's inputs and the plugin's creation fields. IPluginV3 plugins
return their fields (`get_fields_to_serialize`); IPluginV2 plugins do not expose them, so
whoever created the network passes them: `replay_network(..., plugin_fields={layer name:
{field: value}})`. A plugin without an entry, or a field value the entry does not know,
is refused. Adding a plugin is one `@plugin_replay("namespace", "Name", "version")`.

`GPTAttention` (TensorRT-LLM) maps to `torch.ops.ditto.gpt_attention`, ditto's reference of
the plugin in its paged-KV, packed-input mode; the field values and input layout it reads
are TensorRT-LLM's (`tensorrt_llm/functional.py`, `gpt_attention()`, read independently of
ditto's plugin lowering).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ditto.replay.registry import LayerCall, replays

# (namespace, name, version) -> fn(call, fields) -> output tensor(s)
PLUGINS: dict[tuple[str, str, str], Callable] = {}


def plugin_replay(namespace: str, name: str, version: str):
    def wrap(fn):
        PLUGINS[(namespace, name, version)] = fn
        return fn

    return wrap


@replays("PLUGIN_V2", reads=("plugin",))
def plugin_v2(call: LayerCall):
    plugin = call.attr("plugin")
    key = (plugin.plugin_namespace, plugin.plugin_type, plugin.plugin_version)
    if call.plugin_fields is None:
        raise call.error(
            f"plugin {'::'.join(key)} (IPluginV2) does not expose its fields; pass them as "
            "replay_network(..., plugin_fields={layer name: {field: value}})"
        )
    return _run_plugin(call, key, call.plugin_fields)


@replays("PLUGIN_V3", reads=("plugin",))
def plugin_v3(call: LayerCall):
    trt = call.trt
    plugin = call.attr("plugin")
    core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    key = (core.plugin_namespace, core.plugin_name, core.plugin_version)
    fields = call.plugin_fields
    if fields is None:
        runtime = plugin.get_capability_interface(trt.PluginCapabilityType.RUNTIME)
        fields = {f.name: np.asarray(f.data) for f in runtime.get_fields_to_serialize()}
    return _run_plugin(call, key, fields)


def _run_plugin(call: LayerCall, key: tuple, fields: dict):
    fn = PLUGINS.get(key)
    if fn is None:
        known = ", ".join("::".join(k) for k in sorted(PLUGINS)) or "none"
        raise call.error(f"plugin {'::'.join(key)} has no replay (known: {known}); add one with @plugin_replay")
    return fn(call, {name: np.asarray(value) for name, value in fields.items()})


# ---- TensorRT-LLM GPTAttention -------------------------------------------------------------

# tensorrt_llm.functional.PositionEmbeddingType / RotaryScalingType values the reference computes
_POSITION_EMBEDDING = {0: "learned_absolute", 1: "rope_gptj", 2: "rope_gpt_neox", 4: "alibi"}
_ROTARY_SCALING = {0: "none"}
# fields that must hold this value for the plugin to compute what the reference op computes
_REQUIRED = {
    "unidirectional": 1, "mask_type": 1, "paged_kv_cache": 1, "remove_input_padding": 1, "use_cache": 1,
    "qkv_bias_enabled": 0, "do_cross_attention": 0, "tp_size": 1, "cp_size": 1, "unfuse_qkv_gemm": 0,
    "kv_cache_quant_mode": 0, "is_spec_decoding_enabled": 0, "is_mla_enabled": 0, "pos_shift_enabled": 0,
    "has_full_attention_mask": 0, "use_fp8_context_fmha": 0, "fuse_fp4_quant": 0, "skip_attn": 0,
    "use_logn_scaling": 0, "max_distance": 0, "vision_start": -1, "vision_length": -1,
}
# fields that choose kernels, partitions or features switched off above: no effect on values
_NO_EFFECT = frozenset({
    "tp_rank", "cp_rank", "cp_group", "context_fmha_type", "use_paged_context_fmha", "dense_context_fmha",
    "max_context_length", "type_id", "block_sparse_block_size", "block_sparse_homo_head_pattern",
    "block_sparse_num_local_blocks", "block_sparse_vertical_stride", "spec_decoding_is_generation_length_variable",
    "spec_decoding_max_generation_length", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
    "v_head_dim", "rotary_embedding_short_m_scale", "rotary_embedding_long_m_scale", "num_kv_heads_origin",
})
_MAPPED = ("layer_idx", "num_heads", "num_kv_heads", "head_size", "q_scaling", "attn_logit_softcapping_scale",
           "position_embedding_type", "rotary_embedding_dim", "rotary_embedding_base", "rotary_embedding_scale_type",
           "rotary_embedding_scale", "rotary_embedding_max_positions", "rotary_embedding_original_max_positions",
           "tokens_per_block")
_INTS = {"layer_idx", "num_heads", "num_kv_heads", "head_size", "rotary_embedding_dim",
         "rotary_embedding_max_positions", "rotary_embedding_original_max_positions", "tokens_per_block"}


@plugin_replay("tensorrt_llm", "GPTAttention", "1")
def gpt_attention(call: LayerCall, fields: dict) -> torch.Tensor:
    from ditto.ops.gpt_attention import TENSOR_INPUTS

    unknown = set(fields) - set(_REQUIRED) - _NO_EFFECT - set(_MAPPED)
    if unknown:
        raise call.error(f"GPTAttention field(s) {', '.join(sorted(unknown))} that replay does not interpret")
    for name, expected in _REQUIRED.items():
        if name in fields and _scalar(fields[name]) != expected:
            raise call.refuse(f"plugin field {name}", _scalar(fields[name]), f"the reference computes {name} = {expected}")
    missing = [name for name in _MAPPED if name not in fields]
    if missing:
        raise call.error(f"GPTAttention fields {missing} are missing")
    kwargs = {name: (int if name in _INTS else float)(_scalar(fields[name])) for name in _MAPPED}
    for name, table in (("position_embedding_type", _POSITION_EMBEDDING), ("rotary_embedding_scale_type", _ROTARY_SCALING)):
        code = int(_scalar(fields[name]))
        if code not in table:
            raise call.refuse(f"plugin field {name}", code, f"the reference computes {sorted(table.values())}")
        kwargs[name] = table[code]
    if kwargs["num_kv_heads"] != int(_scalar(fields.get("num_kv_heads_origin", kwargs["num_kv_heads"]))):
        raise call.refuse("plugin field num_kv_heads_origin", _scalar(fields["num_kv_heads_origin"]), "tensor parallel heads")
    rope = kwargs["position_embedding_type"].startswith("rope")
    names = [n for n in TENSOR_INPUTS if rope or n not in ("rotary_inv_freq", "rotary_cos_sin")]
    if kwargs["position_embedding_type"] == "alibi":  # IdxEntry ALIBI_SLOPES comes before HOST_CONTEXT_LENGTH
        names.insert(names.index("host_context_lengths"), "alibi_slopes")
    if len(call.inputs) != len(names):
        raise call.error(f"GPTAttention with {len(call.inputs)} inputs; TensorRT-LLM passes {len(names)}: {names}")
    tensors = dict(zip(names, call.inputs))
    tensors.setdefault("rotary_inv_freq", None)
    tensors.setdefault("rotary_cos_sin", None)
    if rope:
        tensors["rotary_cos_sin"] = _reference_cos_sin(tensors["rotary_cos_sin"], kwargs["rotary_embedding_dim"])
    # the plugin's attention window is a runtime input; the reference takes it as sliding_window
    kwargs["sliding_window"] = int(tensors["host_max_attention_window_sizes"][kwargs["layer_idx"]])
    return torch.ops.ditto.gpt_attention(**tensors, **kwargs)


def _reference_cos_sin(table: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """The plugin's [1, max_positions * rotary_dim] float32 table, a (cos, sin) pair per frequency
    (TensorRT-LLM's `create_sinusoidal_positions_for_attention_plugin`), as the reference's
    [max_positions, rotary_dim] with all cos first, then all sin."""
    pairs = table.reshape(-1, rotary_dim // 2, 2)
    return torch.cat((pairs[..., 0], pairs[..., 1]), dim=-1)


def _scalar(value):
    array = np.asarray(value).reshape(-1)
    if array.size != 1:
        raise ValueError(f"expected one value, got {array.tolist()}")
    return array[0].item()
