"""Built-in tiny models: small, deterministic, randomly initialised Hugging Face models.

Each is made locally from a config (no hub), saved once as a normal Hugging Face directory
(config.json + model.safetensors) under the ditto cache, and addressed by name
(`tiny-llama`, ...) anywhere a model path is accepted. Together they cover the building
blocks ditto must recognise: RoPE variants (llama3 scaling, partial rotary), GQA/MQA, QKV
bias, QK-norm, fused QKV and gate-up weights, GeGLU, embedding scale, tied embeddings,
learned positions, LayerNorm, Conv1D weights, sparse mixture-of-experts.

Weights come from ditto's own seeded generator per tensor name, not from transformers'
initialisers, so they do not change when transformers changes its init code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from pathlib import Path

import torch

from ditto import fsutil
from ditto.errors import DittoError

_COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=512,
)

# name -> (what it exercises, config kwargs)
TINY_MODELS: dict[str, tuple[str, dict]] = {
    "tiny-llama": (
        "Llama: RMSNorm, SwiGLU, RoPE with llama3 frequency scaling, MHA",
        dict(
            model_type="llama",
            **_COMMON,
            num_key_value_heads=4,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
    ),
    "tiny-mistral": (
        "Mistral: GQA (4 query heads over 2 KV heads), sliding window (8) shorter than the test sequences",
        dict(model_type="mistral", **_COMMON, num_key_value_heads=2, sliding_window=8, head_dim=16),
    ),
    "tiny-qwen2": (
        "Qwen2: QKV bias, GQA, tied embeddings",
        dict(model_type="qwen2", **_COMMON, num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "tiny-qwen3": (
        "Qwen3: QK-norm (RMSNorm on each head of Q and K before RoPE), GQA",
        dict(model_type="qwen3", **_COMMON, num_key_value_heads=2, head_dim=16),
    ),
    "tiny-gemma": (
        "Gemma: embedding scale, GeGLU, (1 + w) RMSNorm, tied embeddings, MQA, head_dim != hidden/heads",
        dict(model_type="gemma", **_COMMON, num_key_value_heads=1, head_dim=32),
    ),
    "tiny-gemma2": (
        "Gemma-2: attention logit soft-capping (the op's reference kernel), q_scaling != 1 "
        "(query_pre_attn_scalar 24, head_dim 16), alternating sliding (window 8) and full layers",
        dict(model_type="gemma2", **_COMMON, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
             attn_logit_softcapping=2.0, final_logit_softcapping=None, sliding_window=8),
    ),
    "tiny-phi3": (
        "Phi-3: fused qkv_proj and gate_up_proj weights, partial rotary (half the head)",
        dict(
            model_type="phi3",
            **_COMMON,
            num_key_value_heads=4,
            pad_token_id=0,
            eos_token_id=1,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5),
        ),
    ),
    "tiny-glm": (
        "GLM: interleaved (GPT-J style) partial RoPE (half the head), QKV bias, GQA, fused gate_up_proj",
        dict(
            model_type="glm",
            **_COMMON,
            num_key_value_heads=2,
            head_dim=16,
            partial_rotary_factor=0.5,
            pad_token_id=0,
            eos_token_id=1,
        ),
    ),
    "tiny-gpt2": (
        "GPT-2: learned positions, LayerNorm, GELU MLP, MHA, Conv1D weights, fused c_attn",
        dict(
            model_type="gpt2",
            vocab_size=512,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=512,
            n_inner=128,
            bos_token_id=1,
            eos_token_id=2,
        ),
    ),
    "tiny-mixtral": (
        "Mixtral: sparse MoE (4 experts, top-2, softmax renormalised over the chosen), per-expert checkpoint "
        "tensors that transformers 5 stacks into 3-D parameters at load time, GQA",
        dict(model_type="mixtral", **_COMMON, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
    ),
    "tiny-qwen3-moe": (
        "Qwen3-MoE: QK-norm, MoE with top-k softmax weights NOT renormalised, a dense MLP layer after a MoE layer",
        dict(
            model_type="qwen3_moe",
            **_COMMON,
            num_key_value_heads=2,
            head_dim=16,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
        ),
    ),
}


def is_tiny_name(spec: str) -> bool:
    return spec in TINY_MODELS


def cache_root() -> Path:
    return Path(os.environ.get("DITTO_CACHE_DIR", Path.home() / ".cache" / "ditto"))


def tiny_model_dir(name: str) -> Path:
    """The local directory of tiny model `name`, created on first use."""
    if name not in TINY_MODELS:
        raise DittoError(f"unknown built-in model {name!r}; built-in models: {', '.join(TINY_MODELS)}")
    _, kwargs = TINY_MODELS[name]
    import transformers

    fingerprint = hashlib.sha256(
        json.dumps([kwargs, _GENERATOR_VERSION, transformers.__version__.split(".")[0]], sort_keys=True).encode()
    ).hexdigest()[:12]
    target = cache_root() / "tiny" / f"{name}-{fingerprint}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    try:
        with fsutil.locked(target), contextlib.ExitStack() as stack:  # one creator; the others wait and reuse
            if not ((target / "config.json").exists() and (target / "model.safetensors").exists()):
                tmp = stack.enter_context(fsutil.atomic_dir(target, replace=True))
                _create(name, tmp)
    except OSError as e:
        raise DittoError(
            f"cannot write the model cache {cache_root()} ({fsutil.os_reason(e)}); "
            "set DITTO_CACHE_DIR to a writable folder"
        ) from None
    return target


def recipe_identity(directory: Path) -> bytes | None:
    """What defines a built-in tiny model's directory (its recipe and the weight generator's
    version), or None for any other directory. Its config.json is written by whichever
    transformers made it, and versions place keys differently (5.17 writes GLM's
    `partial_rotary_factor` at the top level, 5.24 inside `rope_parameters`): the same model,
    other bytes."""
    marker = Path(directory) / "DITTO_TINY_MODEL"
    if not marker.is_file():
        return None
    name = marker.read_text().split(":", 1)[0]
    if name not in TINY_MODELS:
        return None
    return json.dumps([name, TINY_MODELS[name][1], _GENERATOR_VERSION], sort_keys=True).encode()


def _create(name: str, folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    _, kwargs = TINY_MODELS[name]
    kwargs = dict(kwargs)
    config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    model = AutoModelForCausalLM.from_config(config)  # tiny: real CPU tensors are cheap
    with torch.no_grad():
        for pname, param in model.named_parameters():  # tied parameters are listed once
            param.copy_(_deterministic_tensor(pname, tuple(param.shape), QK_GAIN.get(name, DEFAULT_QK_GAIN)))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(folder)
    (folder / "DITTO_TINY_MODEL").write_text(f"{name}: {TINY_MODELS[name][0]}\n")


# Query/key weights are scaled up so that tiny models attend sharply to a few positions
# instead of almost uniformly: with N(0, 1/fan_in) weights, scores have a standard deviation
# near 1 and a position bug (RoPE at the wrong position or with a flipped sign, a window
# dropped, a misaddressed KV block) moves the logits by little; with query and key scaled by
# a gain it is gain**2. Names: separate q/k projections, fused qkv weights (their V part is
# scaled too, which only scales the attention output), QK-norm gains. Gemma's (1 + w) norms
# already double the normed hidden state (scores x4), so it keeps gain 1: sharper, its float16
# run drifts from HF's past the tolerance (HF rounds q and k to float16, ditto keeps float32).
DEFAULT_QK_GAIN = 2.0
QK_GAIN = {"tiny-gemma": 1.0}

# Bump when the weight generator changes (invalidates cached tiny models and goldens);
# the query/key gains are part of it.
_GENERATOR_VERSION = [3, DEFAULT_QK_GAIN, QK_GAIN]
_QK_WEIGHTS = ("q_proj.weight", "k_proj.weight", "qkv_proj.weight", "attn.c_attn.weight", "q_norm.weight", "k_norm.weight")


def _deterministic_tensor(name: str, shape: tuple[int, ...], qk_gain: float = 1.0) -> torch.Tensor:
    """Seeded per name: matrices ~ N(0, 1/fan_in), vectors (norms, biases) ~ 1 + N(0, 0.1); query
    and key weights times `qk_gain`."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=gen, dtype=torch.float32)
    if len(shape) >= 2:
        values = values / shape[-1] ** 0.5
    elif name.endswith("bias"):
        values = values * 0.1
    else:
        values = 1.0 + 0.1 * values
    return values * qk_gain if name.endswith(_QK_WEIGHTS) else values
