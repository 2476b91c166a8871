"""What TensorRT-LLM 1.2's runtimes read from an engine directory's `config.json`.

Field names and types only, copied as data from the readers, so a test can check ditto's
config against them and fail on a renamed or missing field. Two readers load a TensorRT engine
directory, and a config must satisfy both:

- C++ (`ModelRunnerCpp`, the executor, Triton): `cpp/tensorrt_llm/runtime/gptJsonConfig.cpp`
  (1.x version read from a stored fork at commit 9a037a69; NVIDIA's own stored copies of that
  file are 0.x): `json.at(...)` fields are required (a missing one throws), `parseJsonFieldOr`
  fields fall back to a default. Engine file name: `rank{N}.engine` when "version" is present.
- Python (`ModelRunner`, `GenerationSession`, the `--use_py_session --debug_mode` path):
  `tensorrt_llm/builder.py` `EngineConfig.from_json_str` (newest stored version) ->
  `PretrainedConfig.from_dict` (`tensorrt_llm/models/modeling_utils.py`, commit 01ea6d79:
  looks the architecture up in `tensorrt_llm/models/__init__.py` MODEL_MAP, keyword-only
  required arguments architecture, dtype, hidden_size, num_hidden_layers, num_attention_heads),
  `BuildConfig.from_dict` (pops known keys, defaults the rest), and
  `tensorrt_llm/runtime/model_runner.py` `_engine_config_to_model_config` (plugin_config
  gpt_attention_plugin/remove_input_padding/tokens_per_block, lora_config, kv_cache_type).

"Required" below means: one of the readers fails without it, or falls back to a default that
breaks a ditto engine (max_batch_size 0, max_seq_len 0, continuous KV cache, no max_num_tokens
with packed input: gptJsonConfig.cpp checks "Padding removal requires max_num_tokens").
"""

from __future__ import annotations

from typing import Any

NoneType = type(None)

# Types as JSON sees them; int excludes bool (checked separately), float accepts int.
REQUIRED_TOP_LEVEL: dict[str, tuple[type, ...]] = {
    "version": (str,),  # C++: absent -> legacy "builder_config" layout
    "pretrained_config": (dict,),
    "build_config": (dict,),
}

REQUIRED_PRETRAINED_CONFIG: dict[str, tuple[type, ...]] = {
    "architecture": (str,),  # C++ at(); Python MODEL_MAP key
    "dtype": (str,),  # C++ at(): float32 | float16 | bfloat16
    "hidden_size": (int,),  # C++ at()
    "num_hidden_layers": (int,),  # C++ at()
    "num_attention_heads": (int,),  # C++ at()
    "vocab_size": (int,),  # C++ at()
    "mapping": (dict,),  # C++ at("mapping").at("tp_size")
    "quantization": (dict,),  # C++ at("quantization")
    "num_key_value_heads": (int,),  # C++ default num_attention_heads: wrong for GQA
    "head_size": (int,),  # C++ default hidden_size / heads: wrong when head_dim differs
    "logits_dtype": (str,),  # C++ default float32; float32 | float16
    "max_position_embeddings": (int,),  # C++ parseJsonFieldOr
    "rotary_embedding_dim": (int,),  # C++ parseJsonFieldOr
    "position_embedding_type": (str,),  # Python PositionEmbeddingType.from_string
}

OPTIONAL_PRETRAINED_CONFIG: dict[str, tuple[type, ...]] = {
    "intermediate_size": (int,),
    "hidden_act": (str,),
    "norm_epsilon": (float,),
    "layer_types": (list,),
    "num_kv_heads_per_layer": (list,),
    "runtime_defaults": (dict, NoneType),
    "rotary_base": (float,),
    "rotary_scaling": (dict, NoneType),
    "use_parallel_embedding": (bool,),
    "embedding_sharding_dim": (int,),
    "qwen_type": (str,),  # examples/utils.py read_model_name, Qwen architectures (checked below)
}

REQUIRED_MAPPING: dict[str, tuple[type, ...]] = {
    "tp_size": (int,),  # C++ at()
    "pp_size": (int,),  # C++ default 1
    "cp_size": (int,),  # C++ default 1
    "world_size": (int,),  # Python Mapping(**mapping)
}

OPTIONAL_QUANTIZATION: dict[str, tuple[type, ...]] = {
    "quant_algo": (str, NoneType),  # C++ QuantMode::fromQuantAlgo
    "kv_cache_quant_algo": (str, NoneType),
}

REQUIRED_BUILD_CONFIG: dict[str, tuple[type, ...]] = {
    "plugin_config": (dict,),  # C++ at()
    "lora_config": (dict,),  # C++ parseLora: at("build_config").at("lora_config")
    "max_batch_size": (int,),  # C++ default 0
    "max_beam_width": (int,),  # C++ default 0
    "max_input_len": (int,),  # C++ default 0
    "max_seq_len": (int,),  # C++ default 0
    "max_num_tokens": (int,),  # C++ optional, required with remove_input_padding
    "kv_cache_type": (str,),  # C++ default "continuous" (logs an error)
}

OPTIONAL_BUILD_CONFIG: dict[str, tuple[type, ...]] = {
    "opt_num_tokens": (int, NoneType),
    "max_prompt_embedding_table_size": (int,),
    "gather_context_logits": (bool,),
    "gather_generation_logits": (bool,),
    "speculative_decoding_mode": (int,),  # C++ SpeculativeDecodingMode::UnderlyingType
    "max_draft_len": (int,),
    "use_mrope": (bool,),
    "strongly_typed": (bool,),
    "max_encoder_input_len": (int,),
}

REQUIRED_PLUGIN_CONFIG: dict[str, tuple[type, ...]] = {
    "gpt_attention_plugin": (str, NoneType),  # C++ at(): non-null = plugin in use
    "remove_input_padding": (bool,),  # C++ at()
    "paged_kv_cache": (bool,),  # C++ at()
    "tokens_per_block": (int,),  # C++ at()
    "context_fmha": (bool,),  # C++ at()
    "use_paged_context_fmha": (bool,),  # C++ at()
    "lora_plugin": (str, NoneType),  # C++ parseLora at()
}

OPTIONAL_PLUGIN_CONFIG: dict[str, tuple[type, ...]] = {
    "gemm_plugin": (str, NoneType),
    "gemm_allreduce_plugin": (str, NoneType),
    "mamba_conv1d_plugin": (str, NoneType),
    "paged_state": (bool,),
    "manage_weights": (bool,),
    "pp_reduce_scatter": (bool,),
    "use_fp8_context_fmha": (bool,),
    "streamingllm": (bool,),
    "dtype": (str,),
}

OPTIONAL_RUNTIME_DEFAULTS: dict[str, tuple[type, ...]] = {  # jsonSerialization.h RuntimeDefaults
    "max_attention_window": (list,),
    "sink_token_length": (int,),
}

OPTIONAL_LORA_CONFIG: dict[str, tuple[type, ...]] = {
    "max_lora_rank": (int,),
    "lora_target_modules": (list,),
}

# Values the readers accept.
DTYPES = ("float32", "float16", "bfloat16")  # gptJsonConfig.cpp
LOGITS_DTYPES = ("float32", "float16")  # gptJsonConfig.cpp "Unsupported logits data type"
KV_CACHE_TYPES = ("CONTINUOUS", "PAGED", "DISABLED")  # BuildConfig.to_dict writes KVCacheType.name
POSITION_EMBEDDING_TYPES = (  # tensorrt_llm.functional.PositionEmbeddingType names
    "learned_absolute", "rope_gptj", "rope_gpt_neox", "long_rope", "alibi", "alibi_with_scale",
    "relative", "chatglm", "yarn", "mrope", "deferred",
)

# (path in the config, required fields, optional fields)
SECTIONS: list[tuple[tuple[str, ...], dict, dict]] = [
    ((), REQUIRED_TOP_LEVEL, {}),
    (("pretrained_config",), REQUIRED_PRETRAINED_CONFIG, OPTIONAL_PRETRAINED_CONFIG),
    (("pretrained_config", "mapping"), REQUIRED_MAPPING, {}),
    (("pretrained_config", "quantization"), {}, OPTIONAL_QUANTIZATION),
    (("pretrained_config", "runtime_defaults"), {}, OPTIONAL_RUNTIME_DEFAULTS),
    (("build_config",), REQUIRED_BUILD_CONFIG, OPTIONAL_BUILD_CONFIG),
    (("build_config", "plugin_config"), REQUIRED_PLUGIN_CONFIG, OPTIONAL_PLUGIN_CONFIG),
    (("build_config", "lora_config"), {}, OPTIONAL_LORA_CONFIG),
]

# (path, allowed values)
ENUMS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("pretrained_config", "dtype"), DTYPES),
    (("pretrained_config", "logits_dtype"), LOGITS_DTYPES),
    (("pretrained_config", "position_embedding_type"), POSITION_EMBEDDING_TYPES),
    (("build_config", "kv_cache_type"), KV_CACHE_TYPES),
]


def required_paths() -> list[tuple[str, ...]]:
    """Every required field as a path from the top of config.json."""
    return [path + (name,) for path, required, _ in SECTIONS for name in required]


def validate_config(config: dict) -> list[str]:
    """Problems that would stop TensorRT-LLM 1.2 from loading `config` (empty when none)."""
    problems: list[str] = []
    for path, required, optional in SECTIONS:
        section = _lookup(config, path)
        if not isinstance(section, dict):
            continue  # reported as the parent's missing/mistyped field
        for name, types in required.items():
            if name not in section:
                problems.append(f"missing {_dotted(path + (name,))}")
            else:
                problems += _type_problem(path + (name,), section[name], types)
        for name, types in optional.items():
            if name in section:
                problems += _type_problem(path + (name,), section[name], types)
    for path, allowed in ENUMS:
        value = _lookup(config, path)
        if isinstance(value, str) and value not in allowed:
            problems.append(f"{_dotted(path)} is {value!r}; TensorRT-LLM accepts {', '.join(allowed)}")
    pretrained = config.get("pretrained_config")
    if isinstance(pretrained, dict) and "qwen" in str(pretrained.get("architecture", "")).lower() \
            and "qwen_type" not in pretrained:
        problems.append("missing pretrained_config.qwen_type (examples/utils.py read_model_name reads it for "
                        "every Qwen architecture)")
    build = config.get("build_config")
    if isinstance(build, dict):
        plugin = build.get("plugin_config")
        if isinstance(plugin, dict) and plugin.get("remove_input_padding") and build.get("max_num_tokens") is None:
            problems.append("build_config.max_num_tokens must be set when remove_input_padding is on")
    return problems


def _lookup(config: dict, path: tuple[str, ...]) -> Any:
    node: Any = config
    for name in path:
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
    return node


def _type_problem(path: tuple[str, ...], value: Any, types: tuple[type, ...]) -> list[str]:
    if isinstance(value, bool):
        ok = bool in types
    elif isinstance(value, int):
        ok = int in types or float in types
    else:
        ok = isinstance(value, types)
    if ok:
        return []
    names = " or ".join("null" if t is NoneType else t.__name__ for t in types)
    return [f"{_dotted(path)} must be {names}, got {type(value).__name__} {value!r}"]


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)
