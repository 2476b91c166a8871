"""What ditto relies on from TensorRT-LLM, as data: one entry per supported release line, each
fact with the source file and the commit of NVIDIA/TensorRT-LLM it was read from.

Read (not copied) with the code-search store's `read_file`, which returns one stored version of a
file and names its commit; the store holds no tagged 1.2.1 tree, so the commits are the stored
versions of the TensorRT engine path of the 1.x line (`tensorrt_llm/version.py` at b35ac1b6 reads
"1.2.0rc2"). Where the store did not report a commit, `commit` says so. ditto's code is checked
against these facts by tests/trtllm/test_contract.py; when a fact changes in a new release, add a
line here (with its source) instead of editing the code's expectations.
"""

from __future__ import annotations

from ditto.errors import DittoError

REPO = "NVIDIA/TensorRT-LLM"

_GPT_ATTENTION_CPP = {"path": "cpp/tensorrt_llm/plugins/gptAttentionPlugin/gptAttentionPlugin.cpp",
                      "commit": "026da036caab5c0332938663c99a90886621cb0f"}

# GPTAttentionPluginCreator::createPlugin: every field read with PluginFieldParser::getScalar<T>(name).value()
# (getSet for cp_group); a field it reads and the collection lacks makes creation fail (returns null).
_CREATE_PLUGIN_READS = [
    ("layer_idx", "int32"), ("num_heads", "int32"), ("vision_start", "int32"), ("vision_length", "int32"),
    ("num_kv_heads", "int32"), ("num_kv_heads_origin", "int32"), ("head_size", "int32"),
    ("unidirectional", "int32"), ("q_scaling", "float32"), ("attn_logit_softcapping_scale", "float32"),
    ("position_embedding_type", "int8"), ("rotary_embedding_dim", "int32"), ("rotary_embedding_base", "float32"),
    ("rotary_embedding_scale_type", "int8"), ("rotary_embedding_scale", "float32"),
    ("rotary_embedding_short_m_scale", "float32"), ("rotary_embedding_long_m_scale", "float32"),
    ("rotary_embedding_max_positions", "int32"), ("rotary_embedding_original_max_positions", "int32"),
    ("tp_size", "int32"), ("tp_rank", "int32"), ("unfuse_qkv_gemm", "int8"), ("use_logn_scaling", "int8"),
    ("context_fmha_type", "int8"), ("kv_cache_quant_mode", "int32"), ("remove_input_padding", "int8"),
    ("mask_type", "int32"), ("block_sparse_block_size", "int32"), ("block_sparse_homo_head_pattern", "int8"),
    ("block_sparse_num_local_blocks", "int32"), ("block_sparse_vertical_stride", "int32"),
    ("paged_kv_cache", "int32"), ("tokens_per_block", "int32"), ("type_id", "int32"),
    ("max_context_length", "int32"), ("qkv_bias_enabled", "int8"), ("do_cross_attention", "int8"),
    ("max_distance", "int32"), ("pos_shift_enabled", "int8"), ("dense_context_fmha", "int8"),
    ("use_paged_context_fmha", "int8"), ("use_fp8_context_fmha", "int8"), ("has_full_attention_mask", "int8"),
    ("use_cache", "int32"), ("is_spec_decoding_enabled", "int8"),
    ("spec_decoding_is_generation_length_variable", "int8"), ("spec_decoding_max_generation_length", "int32"),
    ("is_mla_enabled", "int8"), ("q_lora_rank", "int32"), ("kv_lora_rank", "int32"),
    ("qk_nope_head_dim", "int32"), ("qk_rope_head_dim", "int32"), ("v_head_dim", "int32"),
    ("fuse_fp4_quant", "int8"), ("skip_attn", "int8"), ("cp_size", "int32"), ("cp_rank", "int32"),
    ("cp_group", "int32 set"),
]

# GPTAttentionPluginCreatorCommon(): the fields the creator advertises (getFieldNames), with the
# types it advertises. Differs from what createPlugin reads: layer_idx_in_cache_pool is advertised
# and never read; block_sparse_homo_head_pattern is advertised INT32 and read as int8.
_CREATOR_ADVERTISES = [
    ("layer_idx", "int32"), ("num_heads", "int32"), ("vision_start", "int32"), ("vision_length", "int32"),
    ("num_kv_heads", "int32"), ("num_kv_heads_origin", "int32"), ("layer_idx_in_cache_pool", "int32"),
    ("head_size", "int32"), ("unidirectional", "int32"), ("q_scaling", "float32"),
    ("attn_logit_softcapping_scale", "float32"), ("position_embedding_type", "int8"),
    ("rotary_embedding_dim", "int32"), ("rotary_embedding_base", "float32"),
    ("rotary_embedding_scale_type", "int8"), ("rotary_embedding_scale", "float32"),
    ("rotary_embedding_short_m_scale", "float32"), ("rotary_embedding_long_m_scale", "float32"),
    ("rotary_embedding_max_positions", "int32"), ("rotary_embedding_original_max_positions", "int32"),
    ("tp_size", "int32"), ("tp_rank", "int32"), ("unfuse_qkv_gemm", "int8"), ("use_logn_scaling", "int8"),
    ("context_fmha_type", "int8"), ("kv_cache_quant_mode", "int32"), ("remove_input_padding", "int8"),
    ("mask_type", "int32"), ("block_sparse_block_size", "int32"), ("block_sparse_homo_head_pattern", "int32"),
    ("block_sparse_num_local_blocks", "int32"), ("block_sparse_vertical_stride", "int32"),
    ("paged_kv_cache", "int32"), ("tokens_per_block", "int32"), ("type_id", "int32"),
    ("max_context_length", "int32"), ("qkv_bias_enabled", "int8"), ("do_cross_attention", "int8"),
    ("max_distance", "int32"), ("pos_shift_enabled", "int8"), ("dense_context_fmha", "int8"),
    ("use_paged_context_fmha", "int8"), ("use_fp8_context_fmha", "int8"), ("has_full_attention_mask", "int8"),
    ("use_cache", "int32"), ("is_spec_decoding_enabled", "int8"),
    ("spec_decoding_is_generation_length_variable", "int8"), ("spec_decoding_max_generation_length", "int32"),
    ("is_mla_enabled", "int8"), ("q_lora_rank", "int32"), ("kv_lora_rank", "int32"),
    ("qk_nope_head_dim", "int32"), ("qk_rope_head_dim", "int32"), ("v_head_dim", "int32"),
    ("fuse_fp4_quant", "int8"), ("skip_attn", "int8"), ("cp_size", "int32"), ("cp_rank", "int32"),
    ("cp_group", "int32"),
]

# GPTAttentionPlugin::IdxEntry, in enum order: a used entry's input index is the number of used
# entries before it (initEntryIdx). With a packed qkv, paged KV cache, RoPE, remove_input_padding
# and no masks/quantisation/spec-decoding/MLA/cross attention, the used entries are these.
_PLUGIN_INPUT_ORDER_USED = [
    "QKV_TENSOR", "SEQUENCE_LENGTH", "HOST_PAST_KEY_VALUE_LENGTHS", "HOST_MAX_ATTENTION_WINDOW",
    "HOST_SINK_TOKEN_LENGTH", "CONTEXT_LENGTHS", "CACHE_INDIR", "REQUEST_TYPES", "KV_CACHE_BLOCK_OFFSETS",
    "HOST_KV_CACHE_BLOCK_OFFSETS", "HOST_KV_CACHE_POOL_POINTERS", "HOST_KV_CACHE_POOL_MAPPING",
    "ROTARY_INV_FREQ", "ROTARY_COS_SIN", "HOST_CONTEXT_LENGTH", "HOST_RUNTIME_PERF_KNOBS", "HOST_CONTEXT_PROGRESS",
]

CONTRACT: dict[str, dict] = {
    "1.2": {
        "version_source": {"path": "tensorrt_llm/version.py", "commit": "b35ac1b64368513d215c57d2ed01d62d910df8da",
                           "value": "1.2.0rc2"},
        "facts": {
            "gpt_attention_create_plugin_reads": {**_GPT_ATTENTION_CPP, "value": _CREATE_PLUGIN_READS},
            "gpt_attention_creator_advertises": {
                "path": "cpp/tensorrt_llm/plugins/gptAttentionCommon/gptAttentionCommon.cpp",
                "commit": "not reported by the store for the version read (store id 712015480); the "
                          "version it reports by default (035b99e0) is an older 0.x file without these fields",
                "value": _CREATOR_ADVERTISES,
            },
            "gpt_attention_input_order": {**_GPT_ATTENTION_CPP, "value": _PLUGIN_INPUT_ORDER_USED},
            "gpt_attention_alibi": {
                **_GPT_ATTENTION_CPP,
                "value": {"input": "ALIBI_SLOPES, the IdxEntry after ROTARY_COS_SIN and before HOST_CONTEXT_LENGTH, "
                                   "used when isALiBi() (position_embedding_type alibi or alibi_with_scale)",
                          "slopes": "float32 [num_heads], a buffer of tensorrt_llm/layers/attention.py "
                                    "(generate_alibi_slopes; store id 1178835378, commit not reported)",
                          "kinds": "kALIBI: bmm1_output * scale_bmm1 + alibi; kALIBI_WITH_SCALE: "
                                   "(bmm1_output + alibi) * scale_bmm1 (cpp/tensorrt_llm/kernels/gptKernels.h, "
                                   "store id 6359689695, commit not reported)"},
            },
            "gpt_attention_no_sinks": {
                **_GPT_ATTENTION_CPP,
                "value": {"plugin": "no IdxEntry and no field for attention sinks",
                          "pytorch_backend": "the attention op takes `attention_sinks: Optional[torch.Tensor]` "
                                             "[num_heads_q] float (tensorrt_llm/_torch/attention_backend/trtllm.py, "
                                             "store ids 35970649562 / 46443622189, commit not reported)"},
            },
            "gpt_attention_logn_scaling": {
                "path": "cpp/tensorrt_llm/kernels/unfusedAttentionKernels (applyBiasRopeUpdateKVCache)",
                "commit": "not reported (store id 634291217)",
                "value": {"field": "use_logn_scaling (int8), input LOGN_SCALING",
                          "applied": "q *= logn_scaling[token_idx_in_seq] after RoPE; token_idx_in_seq is the index "
                                     "among the step's new tokens (0 in the generation phase), not the position"},
            },
            "plugin_library": {
                "path": "tensorrt_llm/plugin/plugin.py + tensorrt_llm/_common.py",
                "commit": "035b99e0d09d4f2dfdb949810cf7245112aa4165 (plugin.py), "
                          "0fccc5b97dd7b23c438e740b3bf4dcde607266c4 (_common.py)",
                "value": {"library": "tensorrt_llm/libs/libnvinfer_plugin_tensorrt_llm.so",
                          "init_function": "initTrtLlmPlugins", "namespace": "tensorrt_llm",
                          "loaded_by": "import tensorrt_llm -> _common._init -> plugin._load_plugin_lib",
                          "skipped_when": "TRT_LLM_NO_LIB_INIT is set"},
            },
            "engine_inputs": {
                "path": "tensorrt_llm/models/generation_mixin.py",
                "commit": "03ec464e (as recorded in ditto/trtllm/inputs.py)",
                "value": [
                    ("input_ids", "int32"), ("position_ids", "int32"), ("last_token_ids", "int32"),
                    ("kv_cache_block_offsets", "int32"), ("host_kv_cache_block_offsets", "int32"),
                    ("host_kv_cache_pool_pointers", "int64"), ("host_kv_cache_pool_mapping", "int32"),
                    ("sequence_length", "int32"), ("host_request_types", "int32"),
                    ("host_past_key_value_lengths", "int32"), ("context_lengths", "int32"),
                    ("host_runtime_perf_knobs", "int64"), ("host_context_progress", "int64"),
                    ("host_context_lengths", "int32"), ("host_max_attention_window_sizes", "int32"),
                    ("host_sink_token_length", "int32"), ("cache_indirection", "int32"),
                ],
            },
            "host_past_key_value_lengths": {
                "path": "tensorrt_llm/runtime/generation.py (GenerationSession context / next-step shape buffers)",
                "commit": "not re-read at a reported commit; the issue's reading of 1.x, matching a stored "
                          "copy of the same code (store id 23218260564)",
                "value": {"context": "host_context_lengths", "generation": "max_context_length + step, every sequence"},
            },
            "build_defaults": {
                "path": "tensorrt_llm/builder.py (BuildConfig, _init_max_seq_len)",
                "commit": "008b2b8d23af95e4e19fa6f354f9c5f6349b2bfc",
                "value": {"max_input_len": 1024, "max_seq_len": None, "max_batch_size": 2048, "max_beam_width": 1,
                          "max_num_tokens": 8192, "opt_num_tokens": None,
                          "max_seq_len_when_none": "max_position_embeddings (2048 without) * rotary factor "
                                                   "(rope scaling 'factor' except su/longrope/llama3)",
                          "max_input_len_above_max_seq_len": "clipped to max_seq_len"},
            },
            "plugin_config_defaults": {
                "path": "tensorrt_llm/plugin/plugin.py (PluginConfig)",
                "commit": "not reported for the 1.x version read (store id 196834873, pydantic Fields); the "
                          "version the store serves by default (035b99e0) is a 0.x file with tokens_per_block 128",
                "value": {"tokens_per_block": 32, "use_paged_context_fmha": True, "context_fmha": True},
            },
            "check_max_num_tokens": {
                "path": "tensorrt_llm/_common.py", "commit": "0fccc5b97dd7b23c438e740b3bf4dcde607266c4",
                "value": {"clamp_to": "max_seq_len * max_batch_size",
                          "at_least_with_context_fmha": "tokens_per_block",
                          "at_least_without_context_fmha": "max_input_len",
                          "opt_num_tokens_default": "min(max_batch_size * max_beam_width, max_num_tokens)"},
            },
            "tokens_per_block_power_of_2": {
                "path": "cpp/tensorrt_llm/kernels/kvCacheUtils.h (KVBlockArray)",
                "commit": "deaae40bd795f9cea7238fafcff038b1de1ac83f",
                "value": "tokensPerBlock must be power of 2",
            },
            "trtllm_build_flags": {
                "path": "tensorrt_llm/commands/build.py", "commit": "008b2b8d23af95e4e19fa6f354f9c5f6349b2bfc",
                "value": {"kv_cache_type": "--kv_cache_type paged", "deprecated": ["--paged_kv_cache"],
                          "limits": ["--max_batch_size", "--max_input_len", "--max_seq_len", "--max_num_tokens",
                                     "--opt_num_tokens", "--tokens_per_block"]},
            },
            "config_json_keys": {
                "path": "examples/utils.py (read_model_name)", "commit": "06255cb759835a9797b656aa5d1dc8f7e75fdca6",
                "value": {"examples_run_py": {"any": ["pretrained_config.architecture"],
                                              "architecture containing 'qwen'": ["pretrained_config.qwen_type"],
                                              "architecture containing 'GLM'": ["pretrained_config.chatglm_version"]},
                          "qwen_type_value": "hf_config.model_type (tensorrt_llm/models/qwen/config.py, "
                                             "commit 373970a88b18d893bff89ed1a6be2cb2254afb50)"},
            },
            "sliding_window_runtime": {
                "path": "tensorrt_llm/models/modeling_utils.py (PretrainedConfig.to_dict runtime_defaults) and "
                        "examples/utils.py (--max_attention_window_size)",
                "commit": "not reported for modeling_utils (store id 66645375963); "
                          "06255cb759835a9797b656aa5d1dc8f7e75fdca6 for examples/utils.py",
                "value": {"cpp_executor": "pretrained_config.runtime_defaults.max_attention_window "
                                          "(KvCacheConfig.fill_empty_fields_from_runtime_defaults)",
                          "python_session": "run.py --max_attention_window_size W [W ...]; default: full sequence"},
            },
            "debug_dump": {
                "path": "tensorrt_llm/runtime/generation.py (GenerationSession.dump_debug_buffers)",
                "commit": "not reported (store id 25581914035); ditto.patches replaces this method",
                "value": {"method": "dump_debug_buffers(self, step)",
                          "folder": "tllm_debug/PP_{pp_rank}/TP_{tp_rank}", "file": "{name with '/' -> '.'}.npy",
                          "filter": "debug_tensors_to_save (substring match)"},
            },
        },
    },
    "0.20": {
        "version_source": {"path": "ditto/debug/trtllm.py SUPPORTED_TRTLLM_VERSIONS", "commit": "this repository",
                           "value": "0.20.x"},
        # ditto.patches accepts 0.20.x (upstream Ditto v0.3.0 pinned 0.20.0), but no 0.20 source was read
        # for this file: the store does not let a version be chosen. ditto's plugin lowering targets 1.2
        # only; tests assert that nothing here is claimed for 0.20 beyond the patch signatures.
        "facts": {},
    },
}


def release_line(version: str) -> str:
    """'1.2' for '1.2.1', '0.20' for '0.20.0'; a DittoError for a release without facts here."""
    parts = version.split(".")
    line = ".".join(parts[:2])
    if line not in CONTRACT:
        raise DittoError(f"TensorRT-LLM {version} is not a release ditto has facts for ({', '.join(CONTRACT)}); "
                         "use the docker/ image (1.2.1)")
    return line


def fact(name: str, line: str = "1.2"):
    """The value of fact `name` for release `line` (DittoError when not recorded for that line)."""
    facts = CONTRACT[line]["facts"]
    if name not in facts:
        raise DittoError(f"no TensorRT-LLM {line} fact {name!r} recorded in ditto/trtllm/contract.py")
    return facts[name]["value"]
