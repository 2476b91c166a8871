"""ditto against the TensorRT-LLM facts recorded in ditto/trtllm/contract.py (each read from
NVIDIA/TensorRT-LLM at a recorded commit), and the issue-9 defects in the TensorRT-LLM paths.

Nothing here runs TensorRT-LLM (it cannot be installed on these machines): the plugin creator is a
test double whose field list is the one TensorRT-LLM 1.2's creator advertises, as recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, Qwen2Config

import ditto.builder as build_module
from ditto.errors import DittoError
from ditto.ops.params import GPTAttentionParams
from ditto.runtime.paged_cache import PagedKVCache
from ditto.trtllm.config import (
    TRTLLM_BUILD_DEFAULTS,
    BuildOptions,
    engine_config,
    py_session_window_args,
    resolve_limits,
)
from ditto.trtllm.contract import CONTRACT, fact, release_line
from ditto.trtllm.gpt_attention_plugin import (
    create_gpt_attention_plugin,
    gpt_attention_fields,
    gpt_attention_input_names,
)
from ditto.trtllm.inputs import ENGINE_INPUTS
from ditto.trtllm.schema import validate_config
from harness import trtllm as harness_trtllm
from tests.trtllm._helpers import LLAMA, PLUGIN_OPTIONS, FakeTrt

NUMPY_TYPES = {"int32": np.int32, "float32": np.float32, "int8": np.int8, "int32 set": np.int32}


def test_every_fact_names_its_source_and_commit():
    for line, entry in CONTRACT.items():
        assert entry["version_source"]["path"] and entry["version_source"]["commit"], line
        for name, recorded in entry["facts"].items():
            assert recorded["path"] and recorded["commit"] and "value" in recorded, (line, name)
    assert CONTRACT["0.20"]["facts"] == {}  # nothing claimed for 0.20 that was not read
    assert release_line("1.2.1") == "1.2"
    with pytest.raises(DittoError, match="not a release ditto has facts for"):
        release_line("1.3.0")


def test_plugin_fields_are_exactly_what_create_plugin_reads_in_its_types():
    fields = dict(gpt_attention_fields(LLAMA, PLUGIN_OPTIONS))
    read = dict(fact("gpt_attention_create_plugin_reads"))
    assert sorted(fields) == sorted(read)  # createPlugin looks fields up by name, so order is free
    for name, kind in read.items():
        assert fields[name].dtype == np.dtype(NUMPY_TYPES[kind]), name


def test_a_1_2_creator_field_set_is_accepted_with_its_advertised_but_unread_fields():
    """Defect 1 (fails on the code before issue 9: every advertised name had to be set, and
    `layer_idx_in_cache_pool` never is)."""
    advertised = [name for name, _ in fact("gpt_attention_creator_advertises")]
    assert "layer_idx_in_cache_pool" in advertised
    creator = FakeTrt.Creator(advertised)
    assert create_gpt_attention_plugin(FakeTrt(creator), LLAMA, PLUGIN_OPTIONS) is not None
    [(_, collection)] = creator.created
    sent = {f.name: f.type for f in collection}
    assert "layer_idx_in_cache_pool" not in sent
    assert sent["block_sparse_homo_head_pattern"] == "INT8"  # the type createPlugin reads, not the advertised INT32
    with pytest.raises(DittoError, match=r"advertises fields ditto neither sets nor knows to be unread: \['a_new_field'\]"):
        create_gpt_attention_plugin(FakeTrt(FakeTrt.Creator(advertised + ["a_new_field"])), LLAMA, PLUGIN_OPTIONS)


# ditto's input names -> GPTAttentionPlugin::IdxEntry
_IDX_ENTRY = {
    "qkv": "QKV_TENSOR", "sequence_length": "SEQUENCE_LENGTH", "host_past_key_value_lengths": "HOST_PAST_KEY_VALUE_LENGTHS",
    "host_max_attention_window_sizes": "HOST_MAX_ATTENTION_WINDOW", "host_sink_token_length": "HOST_SINK_TOKEN_LENGTH",
    "context_lengths": "CONTEXT_LENGTHS", "cache_indirection": "CACHE_INDIR", "host_request_types": "REQUEST_TYPES",
    "kv_cache_block_offsets": "KV_CACHE_BLOCK_OFFSETS", "host_kv_cache_block_offsets": "HOST_KV_CACHE_BLOCK_OFFSETS",
    "host_kv_cache_pool_pointers": "HOST_KV_CACHE_POOL_POINTERS",
    "host_kv_cache_pool_mapping": "HOST_KV_CACHE_POOL_MAPPING", "rotary_inv_freq": "ROTARY_INV_FREQ",
    "rotary_cos_sin": "ROTARY_COS_SIN", "host_context_lengths": "HOST_CONTEXT_LENGTH",
    "host_runtime_perf_knobs": "HOST_RUNTIME_PERF_KNOBS", "host_context_progress": "HOST_CONTEXT_PROGRESS",
}


def test_plugin_inputs_follow_the_plugin_index_order():
    names = gpt_attention_input_names(LLAMA, PLUGIN_OPTIONS)
    assert [_IDX_ENTRY[n] for n in names] == fact("gpt_attention_input_order")


def test_engine_inputs_are_trtllm_builds():
    assert [(i.name, str(i.dtype).removeprefix("torch.")) for i in ENGINE_INPUTS] == [tuple(x) for x in fact("engine_inputs")]


def test_host_past_key_value_lengths_as_the_python_session_feeds_them():
    """Defect 6 (fails before issue 9: the per-sequence past length was fed)."""
    params = [GPTAttentionParams(layer_idx=0, num_heads=2, num_kv_heads=1, head_size=4, tokens_per_block=4)]
    cache = PagedKVCache(params, max_seq_len=16, batch=2, dtype=torch.float32)
    try:
        context = cache.step_inputs([[1, 2, 3, 4, 5], [6, 7]], [0, 0], [5, 2], is_context=True)
        assert context["host_past_key_value_lengths"].tolist() == [5, 2]  # host_context_lengths
        first = cache.step_inputs([[8], [9]], [5, 2], [5, 2], is_context=False)
        assert first["host_past_key_value_lengths"].tolist() == [5, 5]  # max_context_length + 0
        third = cache.step_inputs([[8], [9]], [7, 4], [5, 2], is_context=False)
        assert third["host_past_key_value_lengths"].tolist() == [7, 7]  # max_context_length + 2
    finally:
        cache.close()
    assert fact("host_past_key_value_lengths")["generation"].startswith("max_context_length + step")


def test_qwen_engines_carry_qwen_type():
    """Defect 2 (fails before issue 9: no qwen_type, and examples/run.py raised KeyError)."""
    config = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=256, max_position_embeddings=64)
    config.architectures = ["Qwen2ForCausalLM"]
    params = [GPTAttentionParams(layer_idx=i, num_heads=4, num_kv_heads=2, head_size=16, tokens_per_block=32)
              for i in range(2)]
    options = BuildOptions(dtype="float16", max_batch_size=2, max_input_len=16, max_seq_len=32, max_num_tokens=64)
    written = engine_config(config, params, options)
    assert written["pretrained_config"]["qwen_type"] == "qwen2"
    assert validate_config(written) == []
    del written["pretrained_config"]["qwen_type"]
    assert any("qwen_type" in p for p in validate_config(written))
    assert "pretrained_config.qwen_type" in fact("config_json_keys")["examples_run_py"]["architecture containing 'qwen'"]


def test_sliding_windows_reach_the_python_session_and_the_runner():
    """Defect 3 (fails before issue 9: windows lived only in runtime_defaults, which the Python
    session never reads, and ditto's cache fed the full length for every layer)."""
    config = {"pretrained_config": {"runtime_defaults": {"max_attention_window": [8, 32]}}}
    assert py_session_window_args(config, ["--use_py_session"]) == ["--max_attention_window_size", "8", "32"]
    assert py_session_window_args(config, ["--use_py_session", "--max_attention_window_size", "4"]) == []
    assert py_session_window_args(config, []) == []  # the C++ executor reads runtime_defaults itself
    assert py_session_window_args({"pretrained_config": {"runtime_defaults": None}}, ["--use_py_session"]) == []
    params = [GPTAttentionParams(layer_idx=i, num_heads=2, num_kv_heads=1, head_size=4, tokens_per_block=4,
                                 sliding_window=w) for i, w in enumerate((8, 0))]
    for cache in (PagedKVCache(params, max_seq_len=16, batch=1, dtype=torch.float32),
                  PagedKVCache.for_engine(2, 1, 4, 4, 16, 1, torch.float32, windows=[8, 32])):
        try:
            inputs = cache.step_inputs([[1, 2]], [0], [2], is_context=True)
            assert inputs["host_max_attention_window_sizes"].tolist() == [8, 16]
        finally:
            cache.close()
    assert "python_session" in fact("sliding_window_runtime")


def test_run_py_passes_the_windows(monkeypatch, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ditto_run_script", Path(__file__).parents[2] / "scripts" / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "config.json").write_text(json.dumps({"pretrained_config": {"runtime_defaults": {"max_attention_window": [4, 9]}}}))
    argv = ["run.py", "--engine_dir", str(tmp_path), "--use_py_session"]
    script._add_window_args(argv)
    assert argv[-3:] == ["--max_attention_window_size", "4", "9"]


def test_build_limit_defaults_are_trtllm_builds():
    """Defect 8 and part 5 (fail before issue 9: no defaults from the model, no clamps)."""
    defaults = {**fact("build_defaults"), **fact("plugin_config_defaults")}
    assert {k: defaults[k] for k in TRTLLM_BUILD_DEFAULTS} == TRTLLM_BUILD_DEFAULTS
    llama = LlamaConfig(max_position_embeddings=4096)
    limits = resolve_limits(llama)
    assert (limits.max_batch_size, limits.max_input_len, limits.max_seq_len, limits.max_num_tokens,
            limits.opt_num_tokens, limits.tokens_per_block) == (2048, 1024, 4096, 8192, 2048, 32)
    scaled = LlamaConfig(max_position_embeddings=4096, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert resolve_limits(scaled).max_seq_len == 8192  # max_position_embeddings * rotary factor
    llama3 = LlamaConfig(max_position_embeddings=4096, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 1024})
    assert resolve_limits(llama3).max_seq_len == 4096  # llama3 scaling does not stretch max_seq_len
    small = resolve_limits(LlamaConfig(max_position_embeddings=64), max_batch_size=2)
    assert (small.max_input_len, small.max_num_tokens, small.opt_num_tokens) == (64, 128, 2)  # clipped, clamped
    assert resolve_limits(llama, max_batch_size=1, max_seq_len=16, max_input_len=2, max_num_tokens=4,
                          tokens_per_block=64).max_num_tokens == 64  # at least tokens_per_block
    with pytest.raises(DittoError, match="--tokens-per-block 48 is not a power of 2"):
        resolve_limits(llama, tokens_per_block=48)
    with pytest.raises(DittoError, match="--max-num-tokens 100 is below --max-input-len 200"):
        resolve_limits(llama, max_input_len=200, max_num_tokens=100)
    with pytest.raises(DittoError, match="--max-input-len 100 exceeds the model's max_seq_len 64"):
        resolve_limits(LlamaConfig(max_position_embeddings=64), max_input_len=100)


@pytest.mark.needs_tensorrt
def test_ditto_build_with_no_flags(tmp_path, monkeypatch):
    """`ditto build tiny-qwen2 DIR`: trtllm-build's defaults for the model, qwen_type, and the plugin
    options config.json describes are the ones the network is built with (defect 7). TensorRT's
    builder is replaced (test_trt_build.py builds real engines); everything else is ditto build."""
    seen = {}
    real_build_network = build_module.build_network

    def build_network(*args, **kwargs):
        seen.update(kwargs)
        return real_build_network(*args, **kwargs)

    def no_trt_builder(built, trt, plan_path):
        plan_path.write_bytes(b"plan")
        return 4

    monkeypatch.setattr(build_module, "build_network", build_network)
    monkeypatch.setattr(build_module, "build_engine", no_trt_builder)
    build_module.build("tiny-qwen2", tmp_path / "engine")
    config = json.loads((tmp_path / "engine" / "config.json").read_text())
    assert config["pretrained_config"]["qwen_type"] == "qwen2"
    build = config["build_config"]
    assert (build["max_batch_size"], build["max_seq_len"], build["max_input_len"], build["max_num_tokens"],
            build["opt_num_tokens"], build["plugin_config"]["tokens_per_block"]) == (2048, 512, 512, 8192, 2048, 32)
    plugin = seen["plugin_options"]
    assert plugin.tokens_per_block == build["plugin_config"]["tokens_per_block"]
    assert plugin.max_context_length == build["max_input_len"]
    assert plugin.context_fmha == build["plugin_config"]["context_fmha"]
    assert plugin.use_paged_context_fmha == build["plugin_config"]["use_paged_context_fmha"]


def test_plugin_fields_follow_the_plugin_config():
    """Defect 7: with context FMHA off, the fields and config.json's plugin_config agree."""
    options = BuildOptions(dtype="float16", max_batch_size=2, max_input_len=16, max_seq_len=32, max_num_tokens=64,
                           tokens_per_block=LLAMA.tokens_per_block, context_fmha=False)
    fields = dict(gpt_attention_fields(LLAMA, options.plugin_options()))
    plugin_config = engine_config(LlamaConfig(hidden_size=LLAMA.num_heads * LLAMA.head_size, num_hidden_layers=1,
                                              num_attention_heads=LLAMA.num_heads,
                                              num_key_value_heads=LLAMA.num_kv_heads, vocab_size=64),
                                  [GPTAttentionParams(**{**LLAMA.as_dict(), "layer_idx": 0})], options)
    plugin_config = plugin_config["build_config"]["plugin_config"]
    assert int(fields["context_fmha_type"]) == int(plugin_config["context_fmha"]) == 0
    assert int(fields["use_paged_context_fmha"]) == int(plugin_config["use_paged_context_fmha"]) == 0


def test_trtllm_build_command_shares_the_profile_and_uses_current_flags(tmp_path):
    """Defect 9 (fails before issue 9: --paged_kv_cache enable, no --max_num_tokens)."""
    from harness.engines import engine_options
    from harness.models import ModelUnderTest

    model = ModelUnderTest("tiny-llama")
    options = engine_options(model, "float32", 4, [])
    command = harness_trtllm.build_command(tmp_path / "ckpt", tmp_path / "out", options)
    assert "--paged_kv_cache" not in command and command[command.index("--kv_cache_type") + 1] == "paged"
    assert "--paged_kv_cache" in fact("trtllm_build_flags")["deprecated"]
    for flag in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "tokens_per_block"):
        assert command[command.index(f"--{flag}") + 1] == str(options[flag]), flag


def test_convert_checkpoint_runs_with_the_examples_parent_on_the_path(tmp_path, monkeypatch):
    """Defect 10 (fails before issue 9: convert_checkpoint.py ran without it)."""
    from harness.models import ModelUnderTest

    calls = []
    monkeypatch.setattr(harness_trtllm, "_run", lambda command, **env: calls.append((command, env)))
    monkeypatch.setattr(harness_trtllm, "examples_dir", lambda: tmp_path / "examples")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    options = {"dtype": "float16", "max_batch_size": 1, "max_input_len": 4, "max_seq_len": 8, "max_num_tokens": 32,
               "tokens_per_block": 32, "probes": []}
    (tmp_path / "engines").mkdir()
    harness_trtllm.build_trtllm_engine(ModelUnderTest("tiny-llama"), tmp_path / "engines" / "e", options)
    convert_command, env = calls[0]
    assert convert_command[1].endswith("convert_checkpoint.py")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/elsewhere"]
