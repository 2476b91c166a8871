"""`pad_kv_shapes`: layers with different KV shapes share one paged KV-cache pool, padded exactly.

Tiny random models from the architecture sweep's shrunk default configs: MiMo-V2-Flash (2 KV heads
on one layer, 4 on the other: the 2 are repeated) and Gemma 4 text (head_dim 16 on sliding layers,
global_head_dim on full ones: Q/K/V zero-padded to it, the output sliced back). Every layer's op
then has the one padded shape; fx (with 4-token KV blocks, so each sequence spans several blocks)
and replay (the native TensorRT lowering) match Hugging Face in float32 within the project's 1e-4
bound. Dots3 (sliding layers with half the heads of the indexed ones, as many KV heads as query heads):
the common 4 KV heads do not divide the sliding layers' 2 query heads, which are repeated too."""

import dataclasses
import functools
import tempfile

import pytest
import torch

from ditto.ops.params import GPTAttentionParams
from ditto.passes.manager import run_passes
from ditto.passes.pad_kv_shapes import padded_kv_shape, query_repeats
from ditto.pipeline import load_program
from ditto.runtime.backend import get_backend
from ditto.runtime.fx import place_on_device, run_program
from ditto.trtllm.config import BuildOptions, engine_config
from tests.parity import FLOAT32_BOUND, forced_request, worst_errors
from tests.passes._helpers import check_pass, model_context, run_graph
from tests.tiny_models import assert_backends_match_hf, save_sweep_model

# the op computes RoPE from a cos/sin table and attention through the paged KV cache: float32
# sums in another order than HF's eager path (as for replace_attention)
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@functools.cache
def _saved(model_type: str) -> str:
    return save_sweep_model(tempfile.mkdtemp(prefix=f"ditto-{model_type}-"), model_type)


def case():
    ctx, feeds = model_context(_saved("mimo_v2_flash"))
    logits = run_graph(ctx, feeds)  # the model's own graph: its eager attention with sinks
    run_passes(ctx, ["eager_attention_to_sdpa"])  # (its SDPA alone leaves the sinks in node meta)
    return dict(ctx=ctx, feeds=feeds, pass_name="pad_kv_shapes", matches=1, tolerance=TOLERANCE,
                expect=lambda before: logits)


def test_the_layer_with_fewer_kv_heads_is_padded_in_one_context_step():
    c = case()
    check_pass(**c)
    assert {(p.num_kv_heads, p.head_size) for p in c["ctx"].attention} == {(4, 16)}


_OPTIONS = BuildOptions(dtype=torch.float32, max_batch_size=4, max_input_len=64, max_seq_len=128, max_num_tokens=256)


def _shapes(program) -> set:
    return {(p.num_kv_heads, p.head_size) for p in program.attention}


def _fx_matches_hf_over_several_blocks(path: str, tokens_per_block: int = 4) -> None:
    program = load_program(path, tokens_per_block=tokens_per_block)
    program.materialize("cpu")
    place_on_device(program.graph_module, "cpu")
    request = forced_request(path, steps=4, probes=["layers.0.attn", "layers.1.out"])
    assert max(map(len, request.prompts)) + request.steps > 2 * tokens_per_block  # several blocks a sequence
    reference = get_backend("hf").run(request)
    errors = worst_errors(reference, run_program(program, request))
    assert max(errors.values()) <= FLOAT32_BOUND, errors


# what the padded shape must show: MiMo's 2 KV heads repeated to 4; Gemma 4's sliding layers' head_dim
# 16 padded to the full layers' global_head_dim (the sweep keeps transformers' default, 512); Dots3's
# sliding layers (2 query heads over 2 KV heads, head 48) beside indexed ones (4 over 4, head 32): KV
# heads repeated to 4, and so query heads too (2 -> 4, copy 0 of each kept), one head size 48
@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("model_type, padded", [("mimo_v2_flash", lambda kv, d: (kv, d) == (4, 16)),
                                                ("gemma4_text", lambda kv, d: kv == 2 and d > 16),
                                                ("dots3_note_text", lambda kv, d: (kv, d) == (4, 48))])
def test_mixed_kv_shapes_convert_and_match_hf(tmp_path, model_type, padded):
    path = save_sweep_model(tmp_path, model_type)
    program = load_program(path)
    shapes = _shapes(program)
    assert len(shapes) == 1 and padded(*next(iter(shapes))), shapes
    assert len({p.num_heads for p in program.attention}) == 1  # Dots3: the 2-head layers' queries repeated
    # the engine's config.json describes the one padded pool TensorRT-LLM's runtime allocates
    config = engine_config(program.hf_config, program.attention, _OPTIONS, moe=program.moe)["pretrained_config"]
    assert (config["num_key_value_heads"], config["head_size"]) == next(iter(shapes))
    _fx_matches_hf_over_several_blocks(path)
    assert_backends_match_hf(path, backends=("replay",))


def _params(num_heads, num_kv_heads, head_size):
    return GPTAttentionParams(layer_idx=0, num_heads=num_heads, num_kv_heads=num_kv_heads, head_size=head_size)


def test_the_common_shape_repeats_heads_to_their_lcm_and_pads_to_the_widest():
    layers = [_params(12, 2, 16), _params(12, 3, 64), _params(12, 6, 8)]
    assert padded_kv_shape([dataclasses.replace(p, layer_idx=i) for i, p in enumerate(layers)]) == (6, 64)


def test_query_heads_are_repeated_where_the_common_kv_heads_do_not_divide_them():
    assert padded_kv_shape([_params(4, 2, 16), _params(6, 3, 16)]) == (6, 16)
    assert [query_repeats(h, 6) for h in (4, 6, 12, 2)] == [3, 1, 1, 3]


def test_one_shape_is_left_alone():
    assert padded_kv_shape([_params(4, 2, 16), _params(4, 2, 16)]) == (2, 16)
