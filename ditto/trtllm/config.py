"""The engine directory TensorRT-LLM's runtime loads: `config.json` + `rank0.engine`.

`engine_config()` builds `config.json` in the layout `trtllm-build` writes (TensorRT-LLM 1.2
`Engine.save`: `{"version", "pretrained_config", "build_config"}`) from the Hugging Face
config, the attention parameters ditto recognised (one `GPTAttentionParams` per layer) and the
build options. `write_engine_dir()` writes the directory atomically.

Facts read (not copied) from NVIDIA/TensorRT-LLM (newest stored versions of the 1.x line):
- `tensorrt_llm/builder.py`: `Engine.save` (config.json written with indent 4, then
  `rank{rank}.engine`), `EngineConfig.to_dict` (drops build_config.dry_run and
  visualize_network), `BuildConfig` fields/defaults and `to_dict` (kv_cache_type as the enum
  name, plugin_config and lora_config as dicts), `build()` (plugin_config.dtype = model dtype,
  nccl_plugin None for one GPU, use_fp8_context_fmha off without FP8 quantization, paged_state
  off for attention models).
- `tensorrt_llm/models/modeling_utils.py` (commit 01ea6d79): `PretrainedConfig.__init__` /
  `to_dict` (position_embedding_type as its name, mapping without "rank", quantization as
  `QuantConfig` fields), logits_dtype default "float32".
- `tensorrt_llm/mapping.py` `to_dict`, `tensorrt_llm/plugin/plugin.py` `PluginConfig` fields
  and defaults (tokens_per_block 32, use_paged_context_fmha True), `tensorrt_llm/lora_manager`
  `LoraConfig` fields, `tensorrt_llm/models/__init__.py` MODEL_MAP (architecture names).
- `cpp/tensorrt_llm/runtime/jsonSerialization.h`: pretrained_config.runtime_defaults is
  `{"max_attention_window": [per-layer ints], "sink_token_length": int}`.
- What the runtimes need from it: see `ditto.trtllm.schema`.

Architecture name: the runtimes only need generic decoder fields; the C++ runtime special-
cases just GLM, Mamba and RecurrentGemma names. The HF name is written as is, since TensorRT-
LLM's MODEL_MAP uses the HF names (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
GemmaForCausalLM, Phi3ForCausalLM, GPT2LMHeadModel, ...). For a name outside MODEL_MAP the C++
runtime still works, but the Python `ModelRunner` (`PretrainedConfig.from_dict`) raises
KeyError; `is_trtllm_architecture()` says which case a model is in.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ditto import fsutil
from ditto.errors import DittoError
from ditto.ops.params import GPTAttentionParams
from ditto.trtllm.gpt_attention_plugin import PluginOptions
from ditto.trtllm.schema import validate_config

if TYPE_CHECKING:
    from ditto.program import SequenceLimit

TARGET_TRTLLM_VERSION = "1.2.1"
CONFIG_FILE = "config.json"
ENGINE_FILE = "rank0.engine"

# tensorrt_llm/models/__init__.py MODEL_MAP keys for decoder-only language models
TRTLLM_ARCHITECTURES = frozenset({
    "GPT2LMHeadModel", "GPT2LMHeadCustomModel", "GPTBigCodeForCausalLM", "Starcoder2ForCausalLM",
    "JAISLMHeadModel", "GPTForCausalLM", "NemotronForCausalLM", "OPTForCausalLM", "BloomForCausalLM",
    "RWForCausalLM", "FalconForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM", "Phi3SmallForCausalLM",
    "PhiMoEForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM", "MptForCausalLM", "MPTForCausalLM",
    "LlamaForCausalLM", "ExaoneForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "ArcticForCausalLM",
    "InternLMForCausalLM", "InternLM2ForCausalLM", "GraniteForCausalLM", "GraniteMoeForCausalLM",
    "BaichuanForCausalLM", "SkyworkForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "QWenLMHeadModel", "QWenForCausalLM", "Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3ForCausalLM",
    "DbrxForCausalLM", "DeepseekForCausalLM", "DeciLMForCausalLM", "CohereForCausalLM",
})

_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


@dataclass(frozen=True)
class BuildOptions:
    """What `trtllm-build` takes on its command line, for the configurations ditto builds."""

    dtype: str | torch.dtype  # float16 | bfloat16 | float32
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    max_beam_width: int = 1
    tokens_per_block: int = 32  # TensorRT-LLM 1.x PluginConfig default
    opt_num_tokens: int | None = None
    gpt_attention_plugin: bool = True
    gemm_plugin: bool = False
    context_fmha: bool = True
    use_paged_context_fmha: bool = True
    enable_debug_output: bool = False

    def __post_init__(self):
        dtype = _DTYPE_NAMES.get(self.dtype, self.dtype)
        if dtype not in _DTYPE_NAMES.values():
            raise DittoError(f"TensorRT-LLM engines are float16, bfloat16 or float32, not {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        for name in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "tokens_per_block"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise DittoError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_beam_width != 1:
            raise DittoError(f"ditto builds engines for beam width 1 only, got max_beam_width={self.max_beam_width}")
        if self.max_input_len > self.max_seq_len:
            raise DittoError(
                f"--max-input-len ({self.max_input_len}) is larger than --max-seq-len ({self.max_seq_len}); "
                "max-seq-len counts the prompt and the generated tokens"
            )

    @property
    def resolved_opt_num_tokens(self) -> int:
        # tensorrt_llm.builder check_max_num_tokens: min(max_batch_size * max_beam_width, max_num_tokens)
        if self.opt_num_tokens is not None:
            return self.opt_num_tokens
        return min(self.max_batch_size * self.max_beam_width, self.max_num_tokens)

    def plugin_options(self) -> PluginOptions:
        """The GPTAttention plugin options these build options imply (kept in step with plugin_config)."""
        return PluginOptions(
            dtype=self.dtype,
            tokens_per_block=self.tokens_per_block,
            max_context_length=self.max_input_len,
            context_fmha=self.context_fmha,
            use_paged_context_fmha=self.use_paged_context_fmha and self.context_fmha,
        )


# trtllm-build 1.2's defaults for what ditto build takes (tensorrt_llm/builder.py BuildConfig, and
# PluginConfig.tokens_per_block; recorded with their sources in contract.py: build_defaults, plugin_config_defaults)
TRTLLM_BUILD_DEFAULTS = {"max_batch_size": 2048, "max_input_len": 1024, "max_num_tokens": 8192, "tokens_per_block": 32}
MAX_SEQ_LEN_WITHOUT_POSITIONS = 2048  # builder._init_max_seq_len when the model has no max_position_embeddings


@dataclass(frozen=True)
class BuildLimits:
    """The engine's limits after trtllm-build's defaults and clamps (`resolve_limits`)."""

    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    opt_num_tokens: int
    tokens_per_block: int


def check_limit_values(**given: int | None) -> None:
    """Explicitly given limits (None: not given) that no model can make right; checked before loading."""
    for name, value in given.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DittoError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    block = given.get("tokens_per_block")
    if block is not None and block & (block - 1):
        raise DittoError(f"--tokens-per-block {block} is not a power of 2; TensorRT-LLM's paged KV cache needs one "
                         "(kvCacheUtils.h KVBlockArray: 'tokensPerBlock must be power of 2'), e.g. 32 or 64")
    inputs, seq, tokens = given.get("max_input_len"), given.get("max_seq_len"), given.get("max_num_tokens")
    if inputs is not None and seq is not None and inputs > seq:
        raise DittoError(f"--max-input-len {inputs} exceeds --max-seq-len {seq}; a prompt must fit in the sequence")
    if inputs is not None and tokens is not None and tokens < inputs:
        raise DittoError(f"--max-num-tokens {tokens} is below --max-input-len {inputs}: a full prompt would not fit in "
                         "one context step (ditto's runners do not chunk contexts); raise --max-num-tokens")


def resolve_limits(hf_config, *, max_batch_size: int | None = None, max_input_len: int | None = None,
                   max_seq_len: int | None = None, max_num_tokens: int | None = None,
                   tokens_per_block: int | None = None, context_fmha: bool = True,
                   sequence_limit: SequenceLimit | None = None) -> BuildLimits:
    """The limits trtllm-build 1.2 would give this model for the same flags (None: not given).

    max_seq_len: max_position_embeddings (2048 without), times the RoPE scaling factor except for
    longrope/su/llama3 (`builder._init_max_seq_len`); max_input_len clipped to it when defaulted;
    max_num_tokens and opt_num_tokens through `check_max_num_tokens` (_common.py): at most
    max_seq_len * max_batch_size, at least tokens_per_block with context FMHA, opt =
    min(max_batch_size * beam, max_num_tokens).

    `sequence_limit` (the program's, ditto.program.SequenceLimit: e.g. sparse attention that is exact
    only up to its top-k): a given max_seq_len above it is refused; the default is capped at it (ditto's
    deviation from trtllm-build, which knows no such limit), so the engine never runs past it.
    """
    given = dict(max_batch_size=max_batch_size, max_input_len=max_input_len, max_seq_len=max_seq_len,
                 max_num_tokens=max_num_tokens, tokens_per_block=tokens_per_block)
    check_limit_values(**given)
    batch = max_batch_size or TRTLLM_BUILD_DEFAULTS["max_batch_size"]
    block = tokens_per_block or TRTLLM_BUILD_DEFAULTS["tokens_per_block"]
    if max_seq_len is None:
        positions = getattr(hf_config, "max_position_embeddings", None) or MAX_SEQ_LEN_WITHOUT_POSITIONS
        max_seq_len = int(math.ceil(positions * _rotary_factor(hf_config)))
        if sequence_limit is not None:
            max_seq_len = min(max_seq_len, sequence_limit.tokens)
    elif sequence_limit is not None:
        sequence_limit.check(max_seq_len, "--max-seq-len", f"pass --max-seq-len {sequence_limit.tokens} or less")
    if max_input_len is None:
        max_input_len = min(TRTLLM_BUILD_DEFAULTS["max_input_len"], max_seq_len)
    elif max_input_len > max_seq_len:
        source = "its sequence limit" if sequence_limit is not None and max_seq_len == sequence_limit.tokens else \
            "its max_position_embeddings"
        raise DittoError(f"--max-input-len {max_input_len} exceeds the model's max_seq_len {max_seq_len} (from {source}"
                         "); lower it or pass --max-seq-len")
    tokens = max_num_tokens or TRTLLM_BUILD_DEFAULTS["max_num_tokens"]
    tokens = min(tokens, max_seq_len * batch)
    if context_fmha and tokens < block:
        tokens = block
    if tokens < max_input_len:
        if max_num_tokens is not None:
            check_limit_values(max_input_len=max_input_len, max_num_tokens=tokens)
        tokens = max_input_len  # ditto's deviation: its runners do not chunk contexts, so a prompt must fit
    return BuildLimits(max_batch_size=batch, max_input_len=max_input_len, max_seq_len=max_seq_len,
                       max_num_tokens=tokens, opt_num_tokens=min(batch, tokens), tokens_per_block=block)


def _rotary_factor(hf_config) -> float:
    scaling = _rotary_scaling(hf_config)
    if scaling is None or scaling.get("rope_type", scaling.get("type")) in ("su", "longrope", "llama3"):
        return 1.0
    return float(scaling.get("factor", 1.0))


def is_trtllm_architecture(name: str) -> bool:
    """Whether TensorRT-LLM's Python runtime knows `name` (its MODEL_MAP); the C++ runtime takes any."""
    return name in TRTLLM_ARCHITECTURES


def hf_architecture(hf_config) -> str:
    """The model's HF class name: `architectures[0]`, else the causal-LM class of its model_type."""
    architectures = getattr(hf_config, "architectures", None)
    if architectures:
        return architectures[0]
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(hf_config, "model_type", None))
    if name is None:
        raise DittoError(
            f"cannot tell the architecture of model_type {getattr(hf_config, 'model_type', None)!r}: "
            "its config.json has no 'architectures'; add the HF class name there"
        )
    return name


def trtllm_version() -> str:
    """The installed TensorRT-LLM's version (what trtllm-build writes), else the targeted one."""
    try:
        return metadata.version("tensorrt_llm")
    except metadata.PackageNotFoundError:
        return TARGET_TRTLLM_VERSION


def engine_config(hf_config, attention: Sequence[GPTAttentionParams], options: BuildOptions, moe=()) -> dict:
    """config.json for an engine built from `hf_config`, as `trtllm-build` would write it;
    `moe`: the program's recognised MoE layers (`pretrained_config.moe`, ditto.trtllm.moe)."""
    from ditto.trtllm.moe import moe_config, moe_hidden_act

    first = _uniform_attention(attention)
    num_layers = getattr(hf_config, "num_hidden_layers", None)
    if num_layers is not None and num_layers != len(attention):
        raise DittoError(
            f"the model has {num_layers} layers but {len(attention)} attention layers were recognised; "
            "TensorRT-LLM's KV cache needs one attention per layer"
        )
    hidden_size = hf_config.hidden_size
    pretrained = {
        "architecture": hf_architecture(hf_config),
        "dtype": options.dtype,
        "vocab_size": hf_config.vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": len(attention),
        "num_attention_heads": first.num_heads,
        "hidden_act": moe_hidden_act(  # MoE: the experts' activation in TensorRT-LLM's names (ditto.trtllm.moe)
            list(moe), _first_attr(hf_config, "hidden_act", "hidden_activation", "activation_function", default="gelu")),
        "logits_dtype": "float32",
        "norm_epsilon": float(
            _first_attr(hf_config, "rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps", "norm_eps", default=1e-5)
        ),
        "runtime_defaults": _runtime_defaults(attention, options),
        "position_embedding_type": first.position_embedding_type,
        "num_key_value_heads": first.num_kv_heads,
        "intermediate_size": _first_attr(hf_config, "intermediate_size", "n_inner", default=None) or 4 * hidden_size,
        "max_position_embeddings": _first_attr(
            hf_config, "max_position_embeddings", default=first.rotary_embedding_max_positions
        ),
        "mapping": {
            "world_size": 1, "gpus_per_node": 8, "cp_size": 1, "tp_size": 1, "pp_size": 1, "moe_tp_size": 1,
            "moe_cluster_size": 1, "moe_ep_size": 1, "attn_tp_size": 1, "attn_cp_size": 1,
        },
        "quantization": {
            "quant_algo": None, "kv_cache_quant_algo": None, "group_size": 128, "smoothquant_val": 0.5,
            "clamp_val": None, "use_meta_recipe": False, "has_zero_point": False, "pre_quant_scale": False,
            "exclude_modules": None,
        },
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "head_size": first.head_size,
        "rotary_embedding_dim": first.rotary_embedding_dim,
        "rotary_base": float(first.rotary_embedding_base),
        "rotary_scaling": _rotary_scaling(hf_config),
        "moe": moe_config(list(moe), hf_config),
    }
    pretrained.update(_architecture_specific(pretrained["architecture"], hf_config))
    build = {
        "max_input_len": options.max_input_len,
        "max_seq_len": options.max_seq_len,
        "opt_batch_size": 8,
        "max_batch_size": options.max_batch_size,
        "max_beam_width": options.max_beam_width,
        "max_num_tokens": options.max_num_tokens,
        "opt_num_tokens": options.resolved_opt_num_tokens,
        "max_prompt_embedding_table_size": 0,
        "kv_cache_type": "PAGED",
        "gather_context_logits": False,
        "gather_generation_logits": False,
        "strongly_typed": True,
        "force_num_profiles": None,
        "profiling_verbosity": "layer_names_only",
        "enable_debug_output": options.enable_debug_output,
        "max_draft_len": 0,
        "speculative_decoding_mode": 1,  # SpeculativeDecodingMode.NONE
        "use_refit": False,
        "input_timing_cache": None,
        "output_timing_cache": "model.cache",
        "lora_config": {
            "lora_dir": [], "lora_ckpt_source": "hf", "max_lora_rank": 64, "lora_target_modules": [],
            "trtllm_modules_to_hf_modules": {},
        },
        "weight_sparsity": False,
        "weight_streaming": False,
        "plugin_config": _plugin_config(options),
        "use_strip_plan": False,
        "max_encoder_input_len": 1024,
        "monitor_memory": False,
        "use_mrope": False,
    }
    return {"version": trtllm_version(), "pretrained_config": pretrained, "build_config": build}


def write_engine_dir(engine_dir: str | os.PathLike, config: dict, engine_bytes, *, force: bool) -> Path:
    """Write config.json and rank0.engine into `engine_dir`, all or nothing (ditto.fsutil.atomic_dir).

    An interrupted write leaves at most a hidden staging folder, never a directory at
    `engine_dir` that looks complete. An existing target is replaced only with force, and only
    when it is an engine folder ditto wrote or an empty folder (`engine_dir_problem`).
    """
    target = Path(engine_dir)
    if target.exists() and not force:
        raise DittoError(f"{target} already exists; pass --force to replace it, or choose another directory")
    problem = engine_dir_problem(target) if target.exists() else None
    if problem:
        raise DittoError(f"--force replaces only an engine folder ditto wrote, and {target} {problem}; "
                         "choose another directory")
    problems = validate_config(config)
    if problems:
        raise DittoError("refusing to write a config.json TensorRT-LLM cannot load:\n  " + "\n  ".join(problems))
    with fsutil.atomic_dir(target, replace=True) as staging:
        _write_file(staging / ENGINE_FILE, memoryview(engine_bytes))
        _write_file(staging / CONFIG_FILE, json.dumps(config, indent=4).encode())
    return target


def _write_file(path: Path, data) -> None:
    fsutil.write_bytes(path, data)


def engine_dir_problem(path: Path) -> str | None:
    """None when `path` is an empty folder or an engine folder (config.json with TensorRT-LLM's
    sections + rank*.engine, nothing else); else what it is, for the refusal message."""
    if not path.is_dir():
        return "is a file, not a folder"
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return None
    others = [n for n in names if n != CONFIG_FILE and not (n.startswith("rank") and n.endswith(".engine"))]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return f"holds files an engine folder does not ({shown})"
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        ok = isinstance(config, dict) and {"pretrained_config", "build_config"} <= set(config)
    except (OSError, ValueError):
        ok = False
    if not ok:
        return f"has no TensorRT-LLM {CONFIG_FILE}"
    return None


def _uniform_attention(attention: Sequence[GPTAttentionParams]) -> GPTAttentionParams:
    if not attention:
        raise DittoError("no attention layer was recognised; ditto builds decoder LMs with attention")
    for index, params in enumerate(attention):
        if params.layer_idx != index:
            raise DittoError(f"attention layer {index} has layer_idx {params.layer_idx}; layers must be in order")
    first = attention[0]
    shapes = {(p.num_heads, p.num_kv_heads, p.head_size) for p in attention}
    if len(shapes) > 1:
        raise DittoError(
            f"attention layers differ in (heads, kv heads, head size): {sorted(shapes)}; "
            "ditto's engines use one KV-cache pool, which needs them equal"
        )
    return first


def _first_attr(config, *names, default):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _runtime_defaults(attention: Sequence[GPTAttentionParams], options: BuildOptions) -> dict | None:
    """Sliding windows as the runtime's default per-layer attention window (RuntimeDefaults).

    The plugin takes the window from the `host_max_attention_window_sizes` input, which the
    runtime fills from its KV-cache config, defaulting to these values (C++ executor).
    """
    if not any(p.sliding_window for p in attention):
        return None
    return {"max_attention_window": [p.sliding_window or options.max_seq_len for p in attention]}


def _architecture_specific(architecture: str, hf_config) -> dict:
    """Keys TensorRT-LLM's tools read for some architectures only (see contract.py,
    `config_json_keys`): examples/utils.py `read_model_name` reads `pretrained_config.qwen_type`
    for every architecture whose name contains "qwen"; TensorRT-LLM's Qwen converter writes the
    HF model_type there (tensorrt_llm/models/qwen/config.py)."""
    if "qwen" in architecture.lower():
        return {"qwen_type": hf_config.model_type}
    return {}


def py_session_window_args(config: dict, argv: list[str]) -> list[str]:
    """Arguments for examples/run.py that give TensorRT-LLM's Python session the per-layer sliding
    windows: it reads `--max_attention_window_size` (default: the full sequence) and never
    `pretrained_config.runtime_defaults`, which only the C++ executor reads (contract.py,
    `sliding_window_runtime`). Empty when the model has no window, the C++ session is used, or
    the user already passed the flag."""
    if "--use_py_session" not in argv or any(a.startswith("--max_attention_window_size") for a in argv):
        return []
    windows = ((config.get("pretrained_config") or {}).get("runtime_defaults") or {}).get("max_attention_window")
    if not windows:
        return []
    return ["--max_attention_window_size", *(str(w) for w in windows)]


def attention_windows(config: dict) -> list[int] | None:
    """The per-layer attention windows an engine's config.json asks the runtime for, or None (full)."""
    return ((config.get("pretrained_config") or {}).get("runtime_defaults") or {}).get("max_attention_window")


def _rotary_scaling(hf_config) -> dict | None:
    """HF's RoPE scaling dict (transformers 5 rope_parameters or 4.x rope_scaling), None when unscaled."""
    params = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None)
    if not isinstance(params, dict):
        return None
    kind = params.get("rope_type", params.get("type"))
    if kind in (None, "default", "none"):
        return None
    return {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}


def _plugin_config(options: BuildOptions) -> dict:
    # PluginConfig's fields (tensorrt_llm/plugin/plugin.py) with the values build() leaves for a
    # one-GPU, unquantized decoder; plugin dtypes are written resolved instead of "auto"
    dtype = options.dtype
    return {
        "dtype": dtype,
        "bert_attention_plugin": "auto",
        "gpt_attention_plugin": dtype if options.gpt_attention_plugin else None,
        "gemm_plugin": dtype if options.gemm_plugin else None,
        "gemm_swiglu_plugin": None,
        "fp8_rowwise_gemm_plugin": None,
        "qserve_gemm_plugin": None,
        "identity_plugin": None,
        "nccl_plugin": None,
        "lora_plugin": None,
        "dora_plugin": False,
        "weight_only_groupwise_quant_matmul_plugin": None,
        "weight_only_quant_matmul_plugin": None,
        "smooth_quant_plugins": True,
        "smooth_quant_gemm_plugin": None,
        "layernorm_quantization_plugin": None,
        "rmsnorm_quantization_plugin": None,
        "quantize_per_token_plugin": False,
        "quantize_tensor_plugin": False,
        "moe_plugin": "auto",
        "mamba_conv1d_plugin": "auto",
        "low_latency_gemm_plugin": None,
        "low_latency_gemm_swiglu_plugin": None,
        "gemm_allreduce_plugin": None,
        "context_fmha": options.context_fmha,
        "bert_context_fmha_fp32_acc": False,
        "paged_kv_cache": True,
        "remove_input_padding": True,
        "norm_quant_fusion": False,
        "reduce_fusion": False,
        "user_buffer": False,
        "tokens_per_block": options.tokens_per_block,
        "use_paged_context_fmha": options.use_paged_context_fmha and options.context_fmha,
        "use_fp8_context_fmha": False,
        "fuse_fp4_quant": False,
        "multiple_profiles": False,
        "paged_state": False,
        "streamingllm": False,
        "manage_weights": False,
        "use_fused_mlp": True,
        "pp_reduce_scatter": False,
    }
