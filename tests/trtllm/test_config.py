"""config.json for TensorRT-LLM 1.2 engine directories, its schema facts, the atomic writer, and
the engine input spec.

The attention parameters here are derived from the HF configs by a small test helper (the
FX passes derive them from the graph); what is checked is how ditto turns them into config.json.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transformers import GemmaConfig, GPT2Config, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config

from ditto.errors import DittoError
from ditto.ops.params import GPTAttentionParams
from ditto.trtllm import config as config_module
from ditto.trtllm.config import (
    CONFIG_FILE,
    ENGINE_FILE,
    BuildOptions,
    engine_config,
    is_trtllm_architecture,
    write_engine_dir,
)
from ditto.trtllm.inputs import ENGINE_INPUTS, dim_ranges
from ditto.trtllm.schema import required_paths, validate_config
from tests.build_checks import BUILD_OPTIONS

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, vocab_size=128)

HF_CONFIGS = {
    "llama": lambda: LlamaConfig(**SMALL, num_key_value_heads=4, max_position_embeddings=256),
    "mistral_gqa": lambda: MistralConfig(**SMALL, num_key_value_heads=2, head_dim=16, sliding_window=32,
                                         max_position_embeddings=512),
    "qwen2": lambda: Qwen2Config(**SMALL, num_key_value_heads=2, rope_theta=1e6, max_position_embeddings=384),
    "gemma": lambda: GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=32, max_position_embeddings=256),
    "phi3_partial_rotary": lambda: Phi3Config(**SMALL, num_key_value_heads=4, partial_rotary_factor=0.5,
                                              max_position_embeddings=256),
    "gpt2": lambda: GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=128, vocab_size=128),
}

# (architecture, heads, kv heads, head size, rotary dim, position embedding, rotary base, max positions)
EXPECTED = {
    "llama": ("LlamaForCausalLM", 4, 4, 16, 16, "rope_gpt_neox", 10000.0, 256),
    "mistral_gqa": ("MistralForCausalLM", 4, 2, 16, 16, "rope_gpt_neox", 10000.0, 512),
    "qwen2": ("Qwen2ForCausalLM", 4, 2, 16, 16, "rope_gpt_neox", 1e6, 384),
    "gemma": ("GemmaForCausalLM", 4, 1, 32, 32, "rope_gpt_neox", 10000.0, 256),
    "phi3_partial_rotary": ("Phi3ForCausalLM", 4, 4, 16, 8, "rope_gpt_neox", 10000.0, 256),
    "gpt2": ("GPT2LMHeadModel", 4, 4, 16, 0, "learned_absolute", 10000.0, 128),
}



def attention_params(hf) -> list[GPTAttentionParams]:
    """What the passes recognise for these configs (test helper)."""
    heads = hf.num_attention_heads
    head_size = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    rope = getattr(hf, "rope_parameters", None)
    kwargs = {}
    if rope is not None:
        kwargs = dict(
            position_embedding_type="rope_gpt_neox",
            rotary_embedding_dim=int(head_size * rope.get("partial_rotary_factor", 1.0)),
            rotary_embedding_base=float(rope["rope_theta"]),
        )
    return [
        GPTAttentionParams(
            layer_idx=i,
            num_heads=heads,
            num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
            head_size=head_size,
            rotary_embedding_max_positions=hf.max_position_embeddings,
            rotary_embedding_original_max_positions=hf.max_position_embeddings,
            tokens_per_block=BUILD_OPTIONS.tokens_per_block,
            sliding_window=getattr(hf, "sliding_window", None) or 0,
            **kwargs,
        )
        for i in range(hf.num_hidden_layers)
    ]


def build(name: str) -> dict:
    hf = HF_CONFIGS[name]()
    return engine_config(hf, attention_params(hf), BUILD_OPTIONS)


@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
def test_config_meets_schema_facts_and_carries_the_model(name):
    config = build(name)
    assert validate_config(config) == []
    assert json.loads(json.dumps(config, allow_nan=False)) == config
    arch, heads, kv_heads, head_size, rotary_dim, pos_type, base, max_pos = EXPECTED[name]
    pretrained = config["pretrained_config"]
    assert pretrained["architecture"] == arch and is_trtllm_architecture(arch)
    assert (pretrained["num_attention_heads"], pretrained["num_key_value_heads"], pretrained["head_size"]) == (
        heads, kv_heads, head_size)
    assert pretrained["rotary_embedding_dim"] == rotary_dim
    assert pretrained["position_embedding_type"] == pos_type
    assert math.isclose(pretrained["rotary_base"], base, rel_tol=1e-12)
    assert pretrained["max_position_embeddings"] == max_pos
    assert (pretrained["vocab_size"], pretrained["hidden_size"], pretrained["num_hidden_layers"]) == (128, 64, 3)
    assert pretrained["dtype"] == "float16" and pretrained["logits_dtype"] == "float32"
    assert pretrained["mapping"]["tp_size"] == pretrained["mapping"]["pp_size"] == pretrained["mapping"]["world_size"] == 1
    assert pretrained["quantization"]["quant_algo"] is None
    build_config = config["build_config"]
    assert (build_config["max_batch_size"], build_config["max_input_len"], build_config["max_seq_len"],
            build_config["max_num_tokens"], build_config["max_beam_width"]) == (4, 64, 128, 256, 1)
    assert build_config["opt_num_tokens"] == 4  # min(max_batch_size * beam, max_num_tokens)
    assert build_config["kv_cache_type"] == "PAGED"
    plugin = build_config["plugin_config"]
    assert plugin["gpt_attention_plugin"] == "float16" and plugin["paged_kv_cache"] and plugin["remove_input_padding"]
    assert plugin["tokens_per_block"] == 32 and plugin["use_fp8_context_fmha"] is False


def test_rotary_scaling_is_recorded_from_the_hf_config():
    hf = LlamaConfig(**SMALL, rope_scaling={"rope_type": "linear", "factor": 2.0})
    config = engine_config(hf, attention_params(hf), BUILD_OPTIONS)
    assert config["pretrained_config"]["rotary_scaling"] == {"rope_type": "linear", "factor": 2.0}
    assert build("llama")["pretrained_config"]["rotary_scaling"] is None


@pytest.mark.parametrize("path", required_paths(), ids=".".join)
def test_schema_check_fails_on_a_missing_or_renamed_field(path):
    config = build("mistral_gqa")
    missing = copy.deepcopy(config)
    node = missing
    for name in path[:-1]:
        node = node[name]
    del node[path[-1]]
    assert f"missing {'.'.join(path)}" in validate_config(missing)
    renamed = copy.deepcopy(config)
    node = renamed
    for name in path[:-1]:
        node = node[name]
    node[path[-1] + "_renamed"] = node.pop(path[-1])
    assert f"missing {'.'.join(path)}" in validate_config(renamed)


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        (("build_config", "plugin_config", "tokens_per_block"), "32", "must be int"),
        (("build_config", "plugin_config", "paged_kv_cache"), 1, "must be bool"),
        (("pretrained_config", "num_key_value_heads"), True, "must be int"),
        (("pretrained_config", "dtype"), "fp16", "TensorRT-LLM accepts"),
        (("pretrained_config", "logits_dtype"), "bfloat16", "TensorRT-LLM accepts"),
        (("build_config", "kv_cache_type"), "paged", "TensorRT-LLM accepts"),
        (("build_config", "max_num_tokens"), None, "max_num_tokens must be set"),
    ],
)
def test_schema_check_fails_on_a_wrong_type_or_value(path, value, fragment):
    config = build("llama")
    node = config
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    problems = validate_config(config)
    assert any(fragment in p for p in problems), problems


def test_sliding_window_becomes_the_runtime_default_attention_window():
    assert build("mistral_gqa")["pretrained_config"]["runtime_defaults"] == {"max_attention_window": [32, 32, 32]}
    assert build("llama")["pretrained_config"]["runtime_defaults"] is None
    hf = HF_CONFIGS["llama"]()
    params = attention_params(hf)
    params[1] = GPTAttentionParams(**{**params[1].as_dict(), "sliding_window": 16})
    config = engine_config(hf, params, BUILD_OPTIONS)
    assert config["pretrained_config"]["runtime_defaults"] == {"max_attention_window": [128, 16, 128]}
    config["pretrained_config"]["runtime_defaults"]["max_attention_window"] = 16
    assert any("max_attention_window must be list" in p for p in validate_config(config))


def test_unknown_architecture_keeps_the_hf_name():
    hf = LlamaConfig(**SMALL, architectures=["MyLlamaVariantForCausalLM"])
    config = engine_config(hf, attention_params(hf), BUILD_OPTIONS)
    assert config["pretrained_config"]["architecture"] == "MyLlamaVariantForCausalLM"
    assert not is_trtllm_architecture("MyLlamaVariantForCausalLM")


def test_inconsistent_attention_layers_are_refused():
    hf = HF_CONFIGS["llama"]()
    params = attention_params(hf)
    with pytest.raises(DittoError, match="one KV-cache pool"):
        engine_config(hf, params[:-1] + [GPTAttentionParams(layer_idx=2, num_heads=4, num_kv_heads=2, head_size=16)],
                      BUILD_OPTIONS)
    with pytest.raises(DittoError, match="attention layers were recognised"):
        engine_config(hf, params[:2], BUILD_OPTIONS)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(max_input_len=200), "larger than --max-seq-len"),
        (dict(max_beam_width=2), "beam width 1"),
        (dict(dtype=torch.int8), "float16, bfloat16 or float32"),
        (dict(max_num_tokens=0), "positive integer"),
    ],
)
def test_bad_build_options_say_what_to_change(kwargs, fragment):
    base = dict(dtype="float16", max_batch_size=4, max_input_len=64, max_seq_len=128, max_num_tokens=256)
    with pytest.raises(DittoError, match=fragment):
        BuildOptions(**{**base, **kwargs})


def test_write_engine_dir_writes_both_files(tmp_path):
    config = build("llama")
    target = write_engine_dir(tmp_path / "engine", config, b"\x01\x02engine", force=False)
    assert json.loads((target / CONFIG_FILE).read_text()) == config
    assert (target / ENGINE_FILE).read_bytes() == b"\x01\x02engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]


def test_existing_dir_needs_force(tmp_path):
    config = build("llama")
    write_engine_dir(tmp_path / "engine", config, b"old", force=False)
    with pytest.raises(DittoError, match="--force"):
        write_engine_dir(tmp_path / "engine", config, b"new", force=False)
    assert (tmp_path / "engine" / ENGINE_FILE).read_bytes() == b"old"
    write_engine_dir(tmp_path / "engine", config, b"new", force=True)
    assert (tmp_path / "engine" / ENGINE_FILE).read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]


def _fail_midway(monkeypatch):
    real = config_module._write_file
    calls = []

    def write_then_fail(path, data):
        calls.append(path.name)
        if len(calls) == 2:  # the second file: write half of it, then the disk "fills up"
            with open(path, "wb") as f:
                f.write(bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(config_module, "_write_file", write_then_fail)
    return calls


def test_interrupted_write_leaves_no_engine_dir(tmp_path, monkeypatch):
    calls = _fail_midway(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_engine_dir(tmp_path / "engine", build("llama"), b"engine-bytes", force=False)
    assert calls == [ENGINE_FILE, CONFIG_FILE]
    assert list(tmp_path.iterdir()) == []  # no target, no leftover staging folder


def test_interrupted_forced_write_keeps_the_old_engine(tmp_path, monkeypatch):
    config = build("llama")
    write_engine_dir(tmp_path / "engine", config, b"old", force=False)
    _fail_midway(monkeypatch)
    with pytest.raises(OSError):
        write_engine_dir(tmp_path / "engine", config, b"new-engine", force=True)
    assert (tmp_path / "engine" / ENGINE_FILE).read_bytes() == b"old"
    assert json.loads((tmp_path / "engine" / CONFIG_FILE).read_text()) == config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]


def test_invalid_config_is_not_written(tmp_path):
    config = build("llama")
    del config["build_config"]["plugin_config"]["tokens_per_block"]
    with pytest.raises(DittoError, match="tokens_per_block"):
        write_engine_dir(tmp_path / "engine", config, b"x", force=False)
    assert list(tmp_path.iterdir()) == []


def test_engine_inputs_follow_trtllm_order():
    names = [spec.name for spec in ENGINE_INPUTS]
    assert names[:3] == ["input_ids", "position_ids", "last_token_ids"]
    assert names.index("kv_cache_block_offsets") < names.index("sequence_length") < names.index("cache_indirection")
    assert names[-1] == "cache_indirection" and len(set(names)) == len(names) == 17
    assert {spec.dtype for spec in ENGINE_INPUTS} == {torch.int32, torch.int64}


def test_dim_ranges_match_trtllm_single_profile():
    ranges = dim_ranges(max_batch_size=8, max_seq_len=2048, max_num_tokens=8192, tokens_per_block=64)
    assert ranges == {
        "num_tokens": (1, 8, 8192),
        "batch": (1, 4, 8),
        "max_blocks_per_seq": (1, 16, 32),
        "max_seq_len": (1, 1024, 2048),
    }
