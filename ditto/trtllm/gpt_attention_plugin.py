"""TensorRT-LLM's `GPTAttention` plugin: its fields, its inputs, and creating it.

`gpt_attention_fields()` lists the plugin fields exactly as TensorRT-LLM 1.2's
`tensorrt_llm.functional.gpt_attention()` creates them for a decoder built by `trtllm-build`
(every field, in its order, with its numpy dtype and shape), so a ditto engine's attention layers
are configured like the reference engine's. `create_gpt_attention_plugin()` is the thin part
that needs TensorRT-LLM's plugin library (a GPU node); everything before it runs anywhere.

Facts read (not copied) from NVIDIA/TensorRT-LLM, the TensorRT engine path of the 1.x line
(the store holds no tagged 1.2.1 tree; these are the newest stored versions, and their
`version.py` neighbour reads "1.2.0rc2" at commit b35ac1b6):
- `tensorrt_llm/functional.py` (commit 0071496d), `gpt_attention()`: the PluginField names,
  numpy dtypes (np.int32 / np.float32 / np.int8), 0-d vs 1-element arrays, the order of
  `PluginFieldCollection([...])`, `create_plugin("causal_attn", pfc)`, and `plug_inputs` order;
  enums `PositionEmbeddingType`, `RotaryScalingType`, `AttentionMaskType`;
  `RopeEmbeddingUtils.create_sinusoidal_positions_for_attention_plugin` (rotary constants).
- `cpp/tensorrt_llm/plugins/gptAttentionPlugin/gptAttentionPlugin.cpp` (commit 026da036):
  `GPTAttentionPluginCreator::createPlugin` reads every field by name with `.value()` (a
  missing field makes creation fail) and `IdxEntry` fixes the input order; matches the Python.
- `tensorrt_llm/layers/attention.py` (1.x, `Attention.forward`): what a Llama-like model passes:
  `layer_idx=local_layer_idx`, `num_kv_heads_origin=num_kv_heads`, q_scaling, rotary_* from
  the config, `attn_logit_softcapping_scale=max_attn_value` (0.0), no `qkv_bias` (the bias is
  added by the QKV GEMM, so `qkv_bias_enabled` is 0), `SpecDecodingParams()` defaults
  (`spec_decoding_max_generation_length=1`), `mask_type=causal` (sliding windows are a runtime
  input, `host_max_attention_window_sizes`, not a mask type), `rotary_inv_freq` and
  `rotary_cos_sin` (`embed_positions_for_gpt_attention`) as float32 constants.
- `tensorrt_llm/plugin/plugin.py` (`ContextFMHAType`: disabled 0, enabled 1) and
  `tensorrt_llm/builder.py` `build()`: `use_fp8_context_fmha` is forced off without FP8
  quantization; `use_paged_context_fmha` defaults to True.

Multi-head latent attention: createPlugin (gptAttentionPlugin.cpp, commit above) also reads
`is_mla_enabled`, `q_lora_rank`, `kv_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim` and
`v_head_dim` (contract.py, `gpt_attention_create_plugin_reads`), TensorRT-LLM's own MLA mode with a
compressed latent KV cache. Ditto does not use it: it emits MLA as a plain GPTAttention
(`is_mla_enabled` 0, those fields 0) whose `head_size` is the query/key head, the value zero-padded
to it and the output sliced back outside the plugin (`GPTAttentionParams.value_head_size`), and
RoPE moved to the leading features (see ditto/passes/replace_attention.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ditto.errors import DittoError
from ditto.ops.gpt_attention import TENSOR_INPUTS
from ditto.ops.params import GPTAttentionParams

PLUGIN_NAME = "GPTAttention"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "tensorrt_llm"
# the layer name TensorRT-LLM gives the plugin object
PLUGIN_INSTANCE_NAME = "causal_attn"

# tensorrt_llm.functional.PositionEmbeddingType
POSITION_EMBEDDING_TYPES = {
    "learned_absolute": 0, "rope_gptj": 1, "rope_gpt_neox": 2, "long_rope": 3, "alibi": 4,
    "alibi_with_scale": 5, "relative": 6, "chatglm": 7, "yarn": 8, "mrope": 9, "deferred": 10,
}
# tensorrt_llm.functional.RotaryScalingType
ROTARY_SCALING_TYPES = {"none": 0, "linear": 1, "dynamic": 2, "longrope": 3, "llama3": 4, "yarn": 5, "mrope": 6}
# tensorrt_llm.functional.AttentionMaskType.causal
MASK_TYPE_CAUSAL = 1
# tensorrt_llm.plugin.ContextFMHAType
CONTEXT_FMHA_DISABLED, CONTEXT_FMHA_ENABLED = 0, 1
# int(tensorrt.DataType.X): the plugin's `type_id` is the TensorRT data type of the plugin dtype
TRT_DATA_TYPE_IDS = {"float32": 0, "float16": 1, "bfloat16": 7}


@dataclass(frozen=True)
class PluginOptions:
    """The build options (TensorRT-LLM's plugin_config and build limits) the fields depend on."""

    dtype: str  # "float16" | "bfloat16" | "float32": gpt_attention_plugin's dtype
    tokens_per_block: int
    max_context_length: int  # build_config.max_input_len
    paged_kv_cache: bool = True
    remove_input_padding: bool = True
    context_fmha: bool = True
    use_paged_context_fmha: bool = True
    use_fp8_context_fmha: bool = False
    streamingllm: bool = False
    use_cache: bool = True


def gpt_attention_fields(params: GPTAttentionParams, options: PluginOptions) -> list[tuple[str, np.ndarray]]:
    """Every (field name, value) of the GPTAttention plugin, in TensorRT-LLM 1.2's order and dtypes."""
    if options.dtype not in TRT_DATA_TYPE_IDS:
        raise DittoError(f"the GPTAttention plugin has no dtype {options.dtype!r}; use one of {sorted(TRT_DATA_TYPE_IDS)}")
    if params.position_embedding_type not in POSITION_EMBEDDING_TYPES:
        raise DittoError(f"unknown position embedding type {params.position_embedding_type!r}")
    if params.rotary_embedding_scale_type not in ROTARY_SCALING_TYPES:
        raise DittoError(f"unknown rotary scaling type {params.rotary_embedding_scale_type!r}")
    if params.tokens_per_block != options.tokens_per_block:
        raise DittoError(
            f"layer {params.layer_idx} was prepared for {params.tokens_per_block} tokens per KV block but the "
            f"build uses {options.tokens_per_block}; run the passes with the same --tokens-per-block"
        )
    i32, f32, i8 = np.int32, np.float32, np.int8
    context_fmha_type = CONTEXT_FMHA_ENABLED if options.context_fmha else CONTEXT_FMHA_DISABLED
    return [
        ("layer_idx", np.array(params.layer_idx, dtype=i32)),
        ("num_heads", np.array(params.num_heads, dtype=i32)),
        ("vision_start", np.array(-1, dtype=i32)),
        ("vision_length", np.array(-1, dtype=i32)),
        ("num_kv_heads", np.array(params.num_kv_heads, dtype=i32)),
        ("num_kv_heads_origin", np.array(params.num_kv_heads, dtype=i32)),  # tp_size 1
        ("head_size", np.array(params.head_size, dtype=i32)),
        ("unidirectional", np.array(1, dtype=i32)),
        ("q_scaling", np.array(params.q_scaling, dtype=f32)),
        ("attn_logit_softcapping_scale", np.array(params.attn_logit_softcapping_scale, dtype=f32)),
        ("position_embedding_type", np.array(POSITION_EMBEDDING_TYPES[params.position_embedding_type], dtype=i8)),
        ("rotary_embedding_dim", np.array(params.rotary_embedding_dim, dtype=i32)),
        ("rotary_embedding_base", np.array(params.rotary_embedding_base, dtype=f32)),
        ("rotary_embedding_scale_type", np.array(ROTARY_SCALING_TYPES[params.rotary_embedding_scale_type], dtype=i8)),
        ("rotary_embedding_scale", np.array(params.rotary_embedding_scale, dtype=f32)),
        ("rotary_embedding_short_m_scale", np.array(1.0, dtype=f32)),  # long-RoPE only
        ("rotary_embedding_long_m_scale", np.array(1.0, dtype=f32)),
        ("rotary_embedding_max_positions", np.array(params.rotary_embedding_max_positions, dtype=i32)),
        (
            "rotary_embedding_original_max_positions",
            np.array(params.rotary_embedding_original_max_positions, dtype=i32),
        ),
        ("tp_size", np.array(1, dtype=i32)),
        ("tp_rank", np.array(0, dtype=i32)),
        ("unfuse_qkv_gemm", np.array(np.int8(0), dtype=i8)),  # one packed qkv input
        ("context_fmha_type", np.array(np.int8(context_fmha_type), dtype=i8)),
        ("kv_cache_quant_mode", np.array(0, dtype=i32)),
        ("remove_input_padding", np.array(np.int8(options.remove_input_padding), dtype=i8)),
        ("mask_type", np.array([MASK_TYPE_CAUSAL], dtype=i32)),
        ("block_sparse_block_size", np.array([64], dtype=i32)),
        ("block_sparse_homo_head_pattern", np.array(np.int8(False), dtype=i8)),
        ("block_sparse_num_local_blocks", np.array([16], dtype=i32)),
        ("block_sparse_vertical_stride", np.array([8], dtype=i32)),
        ("paged_kv_cache", np.array(options.paged_kv_cache, dtype=i32)),
        ("tokens_per_block", np.array(options.tokens_per_block, dtype=i32)),
        ("type_id", np.array([TRT_DATA_TYPE_IDS[options.dtype]], dtype=i32)),
        ("max_context_length", np.array(options.max_context_length, dtype=i32)),
        ("qkv_bias_enabled", np.array(0, dtype=i8)),
        ("do_cross_attention", np.array(np.int8(False), dtype=i8)),
        ("max_distance", np.array(0, dtype=i32)),
        ("pos_shift_enabled", np.array(np.int8(options.streamingllm), dtype=i8)),
        ("dense_context_fmha", np.array(np.int8(options.streamingllm), dtype=i8)),
        ("use_paged_context_fmha", np.array(np.int8(options.use_paged_context_fmha), dtype=i8)),
        ("use_fp8_context_fmha", np.array(np.int8(options.use_fp8_context_fmha), dtype=i8)),
        ("has_full_attention_mask", np.array(np.int8(False), dtype=i8)),
        ("use_cache", np.array([options.use_cache], dtype=i32)),
        ("is_spec_decoding_enabled", np.array(np.int8(False), dtype=i8)),
        ("spec_decoding_is_generation_length_variable", np.array(np.int8(False), dtype=i8)),
        ("spec_decoding_max_generation_length", np.array(1, dtype=i32)),
        ("is_mla_enabled", np.array(False, dtype=i8)),
        ("q_lora_rank", np.array(0, dtype=i32)),
        ("kv_lora_rank", np.array(0, dtype=i32)),
        ("qk_nope_head_dim", np.array(0, dtype=i32)),
        ("qk_rope_head_dim", np.array(0, dtype=i32)),
        ("v_head_dim", np.array(0, dtype=i32)),
        ("fuse_fp4_quant", np.array(np.int8(False), dtype=i8)),
        ("skip_attn", np.array([False], dtype=i8)),
        ("cp_size", np.array(1, dtype=i32)),
        ("cp_rank", np.array(0, dtype=i32)),
        ("cp_group", np.array([0], dtype=i32)),
        ("use_logn_scaling", np.array(np.int8(False), dtype=i8)),
    ]


def gpt_attention_input_names(params: GPTAttentionParams, options: PluginOptions) -> list[str]:
    """The plugin's inputs, in the order TensorRT-LLM 1.2 passes them (paged KV cache, packed input).

    The names are the engine inputs they are bound to (`ditto.trtllm.inputs`), except `qkv`
    (the layer's packed projection) and the RoPE constants `rotary_inv_freq` [rotary_dim / 2]
    and `rotary_cos_sin` [1, max_positions * rotary_dim], both float32, and, for ALiBi,
    `alibi_slopes` [num_heads] (TensorRT-LLM's `Attention` registers its slopes as a float32 buffer
    and passes them as the plugin's ALIBI_SLOPES input; gptAttentionPlugin.cpp at 026da036:
    `case IdxEntry::ALIBI_SLOPES: return isALiBi();`).
    """
    if not (options.use_cache and options.paged_kv_cache and options.remove_input_padding):
        raise DittoError("ditto builds GPTAttention only with a paged KV cache and packed (padding-free) input")
    # the op's inputs are the plugin's, in the plugin's order; RoPE tables only when rotating
    rotary = ("rotary_inv_freq", "rotary_cos_sin")
    names = [n for n in TENSOR_INPUTS if params.has_rope or n not in rotary]
    if params.has_alibi:  # ALIBI_SLOPES: the IdxEntry after ROTARY_COS_SIN, before HOST_CONTEXT_LENGTH
        names.insert(names.index("host_context_lengths"), "alibi_slopes")
    return names


# the op's inputs the GPTAttention plugin has no entry (IdxEntry) and no field for
NOT_PLUGIN_INPUTS = {
    "attention_sinks": "attention sinks (a learned per-head logit in the softmax's denominator, as gpt-oss): "
                       "TensorRT-LLM 1.2's GPTAttention plugin has no input or field for them (gptAttentionPlugin.cpp "
                       "IdxEntry at 026da036; only its PyTorch backend's attention op takes `attention_sinks`)",
    "query_position_scale": "a per-position query scale (scalable softmax / attention temperature): the plugin's "
                            "nearest field, use_logn_scaling with input LOGN_SCALING, indexes its table by the token's "
                            "index in the step's new tokens (`logn_scaling[token_idx_in_seq]`, 0 in generation, in "
                            "cpp/tensorrt_llm/kernels/unfusedAttentionKernels; store id 634291217, commit not "
                            "reported), not by its position, so ditto does not map it",
    "query_norm_after_rope": "an RMSNorm of the query AFTER RoPE (HunYuan's QK-norm): the GPTAttention plugin "
                             "applies RoPE inside the op and has no field or input for a norm after it (no field of "
                             "functional.gpt_attention() at 0071496d, listed in gpt_attention_fields, is one)",
    "key_norm_after_rope": "an RMSNorm of the key AFTER RoPE (HunYuan's QK-norm): the GPTAttention plugin applies "
                           "RoPE inside the op and has no field or input for a norm after it (no field of "
                           "functional.gpt_attention() at 0071496d, listed in gpt_attention_fields, is one)",
}


def refuse_unmapped_inputs(layer_idx: int, present: set[str]) -> None:
    """A DittoError when a gpt_attention carries an input the plugin cannot take (build with the native lowering)."""
    for name, why in NOT_PLUGIN_INPUTS.items():
        if name in present:
            raise DittoError(f"attention layer {layer_idx} uses {why}; ditto refuses to build a plugin engine that "
                             "computes something else: use the native attention lowering (--attention native)")


def plugin_rotary_cos_sin(cos_sin: np.ndarray) -> np.ndarray:
    """ditto's [max_positions, rotary_dim] table (cos in the first half, sin in the second) in the
    plugin's layout: float32 [1, max_positions * rotary_dim], a (cos, sin) pair per frequency.

    TensorRT-LLM builds it as concat((cos, sin), -1) of [positions, rotary_dim / 2, 1] arrays,
    flattened (`create_sinusoidal_positions_for_attention_plugin`).
    """
    table = np.asarray(cos_sin, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] % 2:
        raise DittoError(f"expected a [max_positions, rotary_dim] cos/sin table, got shape {table.shape}")
    half = table.shape[1] // 2
    # The generation kernel (decoderMaskedMultiheadAttentionTemplate.h, NVIDIA/TensorRT-LLM commit
    # 2a9abd95) recomputes RoPE from rotary_inv_freq and multiplies it by
    # rotary_embedding_short/long_m_scale (1.0 here); a table whose (cos, sin) pairs are not unit
    # vectors (YaRN's attention factor) would be rotated right in context and wrong in generation.
    magnitude = np.sqrt(table[:, :half] ** 2 + table[:, half:] ** 2)
    if magnitude.size and np.abs(magnitude - 1.0).max() > 1e-5:
        raise DittoError(
            f"the RoPE table scales cos/sin by {float(magnitude.mean()):.6g} (an attention factor, as YaRN's); "
            "the GPTAttention plugin's generation kernel would drop it (ditto passes m_scale 1.0), so ditto "
            "refuses to build a plugin engine that computes something else; use --attention native"
        )
    pairs = np.stack([table[:, :half], table[:, half:]], axis=-1)
    return np.ascontiguousarray(pairs.reshape(1, -1))


def advertised_but_unread(line: str = "1.2") -> set[str]:
    """Fields the GPTAttention creator advertises that `createPlugin` never reads (contract.py): the
    creator's list is not the contract (e.g. `layer_idx_in_cache_pool` in 1.2); its advertised
    types are not either (ditto sends each field in the type createPlugin reads)."""
    from ditto.trtllm.contract import fact

    read = {name for name, _ in fact("gpt_attention_create_plugin_reads", line)}
    return {name for name, _ in fact("gpt_attention_creator_advertises", line)} - read


def create_gpt_attention_plugin(trt, params: GPTAttentionParams, options: PluginOptions):
    """Create the GPTAttention plugin object from `trt`'s plugin registry (TensorRT-LLM's creator)."""
    registry = trt.get_plugin_registry()
    lookup = getattr(registry, "get_plugin_creator", None)
    creator = lookup(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) if lookup is not None else None
    if creator is None:
        raise DittoError(
            "TensorRT-LLM's plugin library is not loaded; the 'plugin' attention lowering needs TensorRT "
            "(not TensorRT-RTX) with TensorRT-LLM installed (`import tensorrt_llm` loads it); without it, "
            "use the native attention lowering"
        )
    fields = gpt_attention_fields(params, options)
    advertised = {field.name for field in (getattr(creator, "field_names", None) or [])}
    unknown = sorted(advertised - {name for name, _ in fields} - advertised_but_unread())
    if unknown:
        raise DittoError(
            f"the installed TensorRT-LLM's GPTAttention plugin advertises fields ditto neither sets nor knows to be "
            f"unread: {unknown}; ditto targets TensorRT-LLM 1.2 (use the docker/ image, or the native attention lowering)"
        )
    field_types = {
        np.dtype(np.int32): trt.PluginFieldType.INT32,
        np.dtype(np.float32): trt.PluginFieldType.FLOAT32,
        np.dtype(np.int8): trt.PluginFieldType.INT8,
    }
    collection = trt.PluginFieldCollection(
        [trt.PluginField(name, value, field_types[value.dtype]) for name, value in fields]
    )
    plugin = creator.create_plugin(PLUGIN_INSTANCE_NAME, collection)
    if plugin is None:
        raise DittoError(
            f"TensorRT-LLM rejected the GPTAttention fields of layer {params.layer_idx} (see its log above); "
            "ditto targets TensorRT-LLM 1.2"
        )
    return plugin
