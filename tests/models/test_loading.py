"""Loading: sharded checkpoints, hub ids only from the local cache, the rewritten graph re-exports."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ditto.errors import DittoError
from ditto.models.loader import resolve_model_dir
from ditto.models.tiny import tiny_model_dir
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import run_program
from ditto.runtime.paged_cache import PagedKVCache
from tests.parity import FLOAT32_BOUND, forced_request, materialized, worst_errors


def test_sharded_checkpoint_gives_the_same_program(tmp_path):
    source = tiny_model_dir("tiny-mistral")
    state = load_file(source / "model.safetensors")
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / file)
        weight_map.update({k: file for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((source / "config.json").read_text())

    program = materialized(load_program(str(tmp_path)))
    request = forced_request("tiny-mistral", steps=2, probes=[])
    errors = worst_errors(get_backend("hf").run(request), run_program(program, request))
    assert errors["logits"] <= FLOAT32_BOUND


def test_hub_id_only_from_local_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DittoError, match="not in the local Hugging Face cache and ditto never downloads"):
        resolve_model_dir("some-org/some-model")


def test_rewritten_graph_runs_and_exports():
    program = load_program("tiny-llama")
    gm = program.materialize()
    cache = PagedKVCache(program.attention, max_seq_len=32, batch=2, dtype=program.dtype)
    try:
        inputs = cache.step_inputs([[1, 2, 3], [4, 5]], [0, 0], [3, 2], is_context=True)
        args = tuple(inputs[n.name] for n in gm.graph.nodes if n.op == "placeholder")
        (logits,) = gm(*args)
        assert logits.shape == (2, 512) and logits.dtype == torch.float32
        exported = torch.export.export(gm, args, strict=False)
    finally:
        cache.close()
    targets = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.ditto.gpt_attention.default) == 2
