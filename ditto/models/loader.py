"""Resolve a model spec to a local Hugging Face directory and build its model on the meta device.

A spec is a built-in tiny name (`tiny-llama`), a local directory (config.json +
safetensors, sharded or not), or a hub id that is already in the local Hugging Face cache
(nothing is downloaded). The model is instantiated with parameters on the meta device, so a
70B config costs no memory; buffers (RoPE frequencies, ...) are computed for real on the CPU,
because they are not in the checkpoint, and then moved to meta for export.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ditto.errors import DittoError
from ditto.models import tiny
from ditto.models.conversion import checkpoint_sources
from ditto.models.weights import WeightSource

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A model with meta parameters, plus where each parameter's values live."""

    model: torch.nn.Module
    config: object  # transformers.PretrainedConfig
    directory: Path
    dtype: torch.dtype
    # parameter/buffer name -> safetensors file that holds it
    checkpoint_index: dict[str, Path] = field(default_factory=dict)
    # buffer name -> real CPU value (buffers are not in checkpoints)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    # parameter name -> every name sharing that parameter (tied embeddings)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    # model parameter name -> where its values come from, by transformers' own key renames and
    # tensor conversions (ditto.models.conversion); names absent here are not in the checkpoint
    sources: dict[str, WeightSource] = field(default_factory=dict)


def resolve_model_dir(spec: str | Path) -> Path:
    spec_str = str(spec)
    if tiny.is_tiny_name(spec_str):
        return tiny.tiny_model_dir(spec_str)
    path = Path(spec_str).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DittoError(f"{path} is a file; pass the Hugging Face model directory that contains config.json")
        if not (path / "config.json").is_file():
            raise DittoError(
                f"{path} has no config.json; pass a Hugging Face model directory (config.json + *.safetensors)"
            )
        return path
    if spec_str.startswith("tiny-"):
        raise DittoError(f"unknown built-in model {spec_str!r}; built-in models: {', '.join(tiny.TINY_MODELS)}")
    if spec_str.count("/") == 1 and not spec_str.startswith((".", "/")):
        return _from_hub_cache(spec_str)
    raise DittoError(
        f"model {spec_str!r} not found: pass a local Hugging Face directory, a hub id already in the local "
        f"cache, or a built-in name ({', '.join(tiny.TINY_MODELS)})"
    )


def _from_hub_cache(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise DittoError(
            f"{repo_id!r} is not in the local Hugging Face cache and ditto never downloads; run "
            f"`huggingface-cli download {repo_id}` first or pass a local directory"
        ) from None


def load_config(directory: Path, trust_remote_code: bool = False):
    from transformers import AutoConfig

    try:
        json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise DittoError(f"{directory / 'config.json'} is not valid JSON ({e}); fix or re-download it") from None
    try:
        return AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as e:
        raise DittoError(
            f"transformers cannot read {directory / 'config.json'}: {str(e).splitlines()[0]}; "
            "check model_type and the transformers version"
        ) from None


def load_model(
    spec: str | Path,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Meta-device model for `spec` in `dtype` (default: the checkpoint's dtype, else float32)."""
    from transformers import AutoModelForCausalLM

    directory = resolve_model_dir(spec)
    config = load_config(directory, trust_remote_code)
    _check_decoder(config)
    torch_dtype = _pick_dtype(config, dtype)
    model = None
    # SDPA first (one clean node per attention); eager where a model has no SDPA path
    for implementation in [attn_implementation] if attn_implementation else ["sdpa", "eager"]:
        try:
            with _params_on_meta():
                model = AutoModelForCausalLM.from_config(
                    config,
                    **dtype_kwarg(torch_dtype),
                    trust_remote_code=trust_remote_code,
                    attn_implementation=implementation,
                )
            break
        except Exception as e:
            error = e
    if model is None:
        raise _unsupported(config, error)
    model.eval()
    _export_friendly_experts(model)
    index = _checkpoint_index(directory)  # after the architecture check: that error comes first
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    for module in model.modules():
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = b.to("meta")
    aliases: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    alias_map = {name: names for names in aliases.values() for name in names}
    sources = checkpoint_sources(model, index)
    return LoadedModel(model, config, directory, torch_dtype, index, buffers, alias_map, sources)


def _export_friendly_experts(model) -> None:
    """transformers 5 lets MoE experts pick their implementation; `batched_mm` computes every
    (token, chosen expert) pair with static shapes, which exports on the meta device and which
    `ditto.passes.replace_moe` recognises. Models without the choice keep their own forward."""
    can_set = getattr(model, "_can_set_experts_implementation", None)
    if can_set is not None and can_set():
        model.set_experts_implementation("batched_mm")


# Heads of encoder checkpoints: transformers may still build a causal LM from their config
# (BertLMHeadModel), so they would fail later, blamed on their weights.
_ENCODER_HEADS = ("ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                  "ForPreTraining", "ForMultipleChoice", "ForNextSentencePrediction")
_DECODER_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _check_decoder(config) -> None:
    """An encoder checkpoint (BERT, RoBERTa, ...) named as such, before export."""
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith(_DECODER_HEADS) for a in archs) and any(a.endswith(_ENCODER_HEADS) for a in archs):
        raise DittoError(f"{','.join(archs)} (model_type {getattr(config, 'model_type', '?')!r}) is an encoder model; "
                         "ditto builds decoder-only causal LMs (Llama, Mistral, Qwen, GPT-2, ...)")


def _unsupported(config, error: Exception) -> DittoError:
    arch = ",".join(getattr(config, "architectures", None) or [type(config).__name__])
    return DittoError(
        f"cannot build a causal-LM for {arch} (model_type {getattr(config, 'model_type', '?')!r}): "
        f"{str(error).splitlines()[0]}; ditto supports decoder-only models that transformers' "
        "AutoModelForCausalLM can build"
    )


def _pick_dtype(config, dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        if dtype not in DTYPES:
            raise DittoError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        return DTYPES[dtype]
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored, torch.dtype):
        return stored
    return DTYPES.get(str(stored), torch.float32)


def _checkpoint_index(directory: Path) -> dict[str, Path]:
    """Parameter name -> safetensors file, from the shard index or by reading headers."""
    index_file = directory / "model.safetensors.index.json"
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise DittoError(f"{index_file} is malformed ({e}); re-download the model") from None
        for file in sorted(set(weight_map.values())):
            if not (directory / file).is_file():
                raise DittoError(f"{index_file.name} names the shard {file}, which is not in {directory}; "
                                 "re-download the model")
            _safetensors_keys(directory / file)  # checks the shard is whole
        return {name: directory / file for name, file in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        found = ", ".join(sorted(p.name for p in directory.iterdir())[:8])
        raise DittoError(
            f"{directory} has no *.safetensors weights (found: {found}); ditto reads safetensors only — "
            "convert .bin checkpoints with transformers' save_pretrained(safe_serialization=True)"
        )
    return {key: f for f in files for key in _safetensors_keys(f)}


def _safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header alone (no mmap of the data: 70B files are huge).

    The file must be as long as its header says: a truncated file would map past its end."""
    import struct

    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        end = 8 + length + max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError, KeyError, TypeError,
            ValueError, AttributeError):
        raise DittoError(f"{path} is not a valid safetensors file; re-download or re-save the model") from None
    size = path.stat().st_size
    if size < end:
        raise DittoError(f"{path} is truncated ({size} bytes, its header promises {end}); re-download or re-save the model")
    return [k for k in header if k != "__metadata__"]


@contextlib.contextmanager
def _params_on_meta():
    """Create parameters on the meta device and buffers on the CPU (they hold computed values)."""
    original = torch.nn.Module.register_parameter

    def register_parameter(module, name, param):
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    torch.nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """transformers 5 calls it `dtype`; 4.5x `torch_dtype`."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}
