"""The planted bugs, one per entry: where, what changes, the slip it stands for, which tests.

Anchors (`old`) are small snippets that occur exactly once in their file, so other edits to
the file leave a mutant valid. `tests` is the targeted selection (pytest arguments) run for
that mutant by default; `--full` runs the whole suite instead, `--harness MODEL` the
regression module on one tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    why: str  # the maintainer's slip it stands for
    tests: tuple[str, ...]  # targeted pytest arguments

    @property
    def area(self) -> str:
        for prefix, area in AREAS:
            if self.path.startswith(prefix):
                return area
        return "other"


AREAS = (
    ("ditto/ops/", "ops"),
    ("ditto/passes/", "passes"),
    ("ditto/trt/converters/", "converters"),
    ("ditto/trt/attention_native.py", "native lowering"),
    ("ditto/runtime/paged_cache.py", "paged cache"),
    ("ditto/replay/", "replay"),
    ("ditto/comparator/", "compare"),
    ("harness/goldens.py", "goldens"),
)

# targeted selections: node ids, never -k (a -k filter applies to every file of the selection)
_TINY = ("tiny-gemma", "tiny-gpt2", "tiny-llama", "tiny-mistral", "tiny-phi3", "tiny-qwen2", "tiny-qwen3")
PARITY = tuple(f"tests/test_core_parity.py::test_fx_matches_hf[torch.float32-{m}]" for m in _TINY)  # fx vs hf
GENERIC = ("tests/test_core_generic.py", "tests/test_core_mutations.py")
ROPE_FIELDS = ("tests/test_core_rope_fields.py",)  # RoPE fields against the HF config
SIMPLIFY = ("tests/test_passes_simplify.py",)  # shuffle folding on small graphs
CONFIG = ("tests/test_trtllm_config.py", "tests/test_trtllm_plugin.py")  # what ditto writes for TensorRT-LLM
OPS = ("tests/test_ops_reference.py",)  # gpt_attention / paged cache against an SDPA reference
REPLAY_MODELS = ("tests/test_replay.py::test_replay_matches_fx_and_hf",)  # replay vs fx and hf, every tiny model
CONVERTERS = ("tests/test_trt_converters.py",)
EDGES = ("tests/test_trt_converters_edges.py",)
NATIVE = ("tests/test_native_attention.py",)
WINDOW = ("tests/test_core_sliding_window.py",)  # a model with a window shorter than its prompts, fx and replay
LAYERS = ("tests/test_replay_layers.py", "tests/test_replay_onnx.py")
COMPARE = ("tests/test_compare.py", "tests/test_cli_compare.py")
VERDICTS = ("tests/test_compare_verdicts.py",)
GOLDENS = ("tests/test_harness_units.py", "tests/test_plugin_goldens.py", "tests/test_goldens_units.py")

_OPS = "ditto/ops/gpt_attention.py"
_NATIVE = "ditto/trt/attention_native.py"
_LAYERS = "ditto/replay/layers.py"
_ATTN = "ditto/replay/attention.py"
_STATS = "ditto/comparator/stats.py"

MUTANTS: tuple[Mutant, ...] = (
    # ---- ops: the gpt_attention reference kernel and the KV-cache addressing ---------------
    Mutant("op_scale_without_sqrt", _OPS, "scale = 1.0 / (D**0.5 * q_scaling)", "scale = 1.0 / (D * q_scaling)",
           "softmax scale forgets the square root", OPS + PARITY),
    Mutant("op_causal_sees_next_token", _OPS, "allowed = key_pos <= query_pos", "allowed = key_pos <= query_pos + 1",
           "causal mask off by one", OPS + PARITY),
    Mutant("op_window_off_by_one", _OPS, "(key_pos > query_pos - sliding_window)", "(key_pos >= query_pos - sliding_window)",
           "sliding window keeps one key too many", OPS + PARITY),
    Mutant("op_window_dropped", _OPS, "if sliding_window > 0:", "if sliding_window < 0:",
           "sliding-window branch never taken", OPS + PARITY),
    Mutant("op_rope_neox_sign", _OPS, "torch.cat((first * cos - second * sin,", "torch.cat((first * cos + second * sin,",
           "halves RoPE rotates the wrong way", OPS + PARITY),
    Mutant("op_rope_gptj_pairs_swapped", _OPS, "even, odd = rot[..., 0::2], rot[..., 1::2]", "odd, even = rot[..., 0::2], rot[..., 1::2]",
           "interleaved RoPE swaps the pair members", OPS + GENERIC),
    Mutant("op_rope_position_shift", _OPS, "positions = torch.arange(past, total,", "positions = torch.arange(past + 1, total + 1,",
           "RoPE positions off by one", OPS + PARITY),
    Mutant("op_softcap_dropped_scale", _OPS, "scores = cap * torch.tanh(scores / cap)", "scores = torch.tanh(scores / cap)",
           "logit soft-capping forgets to scale back", OPS + PARITY),
    Mutant("op_kv_unit_layer_stride", _OPS, "k_units = offsets[b, 0, blocks] + 2 * layer_in_pool",
           "k_units = offsets[b, 0, blocks] + layer_in_pool", "K of layer l written over V of layer l - 1", OPS + PARITY),
    Mutant("op_gqa_repeat_not_interleave", _OPS, "keys = keys.repeat_interleave(group, dim=1)", "keys = keys.repeat(1, group, 1)",
           "GQA maps query heads to the wrong KV heads", OPS + PARITY),
    Mutant("op_block_slot_swapped", _OPS, "blocks, slots = pos // tokens_per_block, pos % tokens_per_block",
           "slots, blocks = pos // tokens_per_block, pos % tokens_per_block", "block and slot of a position swapped", OPS + PARITY),
    Mutant("kv_block_offset_ignores_layers", "ditto/ops/kv_cache.py", "return block_id * num_layers * 2 + kv", "return block_id * 2 + kv",
           "block offset forgets the layers per block", OPS + PARITY),
    # ---- paged cache (host side) -------------------------------------------------------------
    Mutant("cache_sequences_share_blocks", "ditto/runtime/paged_cache.py", "block = b * self.blocks_per_seq + j", "block = b + j",
           "two sequences' blocks overlap", OPS + PARITY),
    Mutant("cache_last_token_ids_not_cumulative", "ditto/runtime/paged_cache.py", '"last_token_ids": torch.tensor(counts, **i32).cumsum(0, **i32),',
           '"last_token_ids": torch.tensor(counts, **i32),', "last_token_ids as counts, not cumulative", OPS + PARITY),
    Mutant("cache_full_length_refused", "ditto/runtime/paged_cache.py", "if max(total) > self.max_seq_len:", "if max(total) >= self.max_seq_len:",
           "a sequence that exactly fills the cache is refused", OPS + PARITY),
    Mutant("cache_positions_shifted", "ditto/runtime/paged_cache.py", "torch.arange(p, p + n, **i32)", "torch.arange(p + 1, p + n + 1, **i32)",
           "position_ids off by one", OPS + PARITY),
    # ---- passes --------------------------------------------------------------------------------
    Mutant("pass_q_scaling_inverted", "ditto/passes/replace_attention.py", "q_scaling=1.0 / (scale * math.sqrt(head_size)),",
           "q_scaling=scale * math.sqrt(head_size),", "q_scaling inverted (same only for scale 1/sqrt(D))", PARITY + GENERIC),
    Mutant("pass_default_scale_missing", "ditto/passes/replace_attention.py", "scale = 1.0 / math.sqrt(head_size)", "scale = 1.0",
           "SDPA's default scale forgotten", PARITY + GENERIC),
    Mutant("pass_rotary_base_default", "ditto/passes/replace_attention.py", 'rotary_embedding_base=rope.get("base", 10000.0),',
           "rotary_embedding_base=10000.0,", "rotary base falls back to 10000", ROPE_FIELDS + CONFIG + PARITY),
    Mutant("pass_window_off_by_one", "ditto/passes/replace_attention.py", "window = int(allowed[-1].sum())", "window = int(allowed[-1].sum()) + 1",
           "recognised sliding window one too long", WINDOW + PARITY + GENERIC),
    Mutant("pass_last_token_off_by_one", "ditto/passes/gather_last_token.py", "index = insert_op(graph, aten.sub.Tensor, (last, 1))",
           "index = insert_op(graph, aten.sub.Tensor, (last, 0))", "last token index off by one", PARITY),
    Mutant("pass_fused_widths_wrong_dim", "ditto/passes/fuse_parallel_linears.py", "widths = [int(fake(w).shape[0]) for w in weights]",
           "widths = [int(fake(w).shape[1]) for w in weights]", "fused projection widths read from the input dim", PARITY),
    Mutant("pass_missing_bias_as_ones", "ditto/passes/fuse_parallel_linears.py", "InMemoryTensor(torch.zeros(width, dtype=dtype))",
           "InMemoryTensor(torch.ones(width, dtype=dtype))", "a missing bias fused as ones", PARITY + GENERIC),
    Mutant("pass_eager_scale_mul_div_swapped", "ditto/passes/eager_attention_to_sdpa.py",
           "scale = float(scores.args[1]) if scores.target == aten.mul.Tensor else 1.0 / float(scores.args[1])",
           "scale = 1.0 / float(scores.args[1]) if scores.target == aten.mul.Tensor else float(scores.args[1])",
           "eager attention scale inverted", ("tests/test_core_generic.py::test_eager_attention_is_normalised",) + PARITY),
    Mutant("pass_permute_composition_reversed", "ditto/passes/simplify_shuffles.py", "[inner[p] for p in perm]", "[perm[p] for p in inner]",
           "two permutes composed in the wrong order", SIMPLIFY + PARITY + GENERIC),
    Mutant("pass_cat_cover_drops_order_check", "ditto/passes/simplify_shuffles.py", "            if start != position:\n                return None\n", "",
           "cat of slices taken as the whole source without checking order", SIMPLIFY + PARITY + GENERIC),
    # ---- converters ----------------------------------------------------------------------------
    Mutant("conv_rsub_operands", "ditto/trt/converters/elementwise.py", 'return binary(ctx, b, _scaled(ctx, a, alpha), "SUB")',
           'return binary(ctx, a, _scaled(ctx, b, alpha), "SUB")', "rsub computes a - b", CONVERTERS),
    Mutant("conv_le_without_equal", "ditto/trt/converters/elementwise.py", 'return _compare(ctx, a, b, ("LESS", "EQUAL"))',
           'return _compare(ctx, a, b, ("LESS",))', "<= lowered as <", CONVERTERS + EDGES),
    Mutant("conv_masked_fill_swapped", "ditto/trt/converters/elementwise.py", "return select(ctx, mask, value, x)", "return select(ctx, mask, x, value)",
           "masked_fill fills where the mask is false", CONVERTERS),
    Mutant("conv_rsqrt_without_recip", "ditto/trt/converters/elementwise.py", 'return unary(ctx, unary(ctx, in_result_dtype(ctx, x), "SQRT"), "RECIP")',
           'return unary(ctx, in_result_dtype(ctx, x), "SQRT")', "rsqrt lowered as sqrt", CONVERTERS),
    Mutant("conv_gelu_tanh_as_erf", "ditto/trt/converters/elementwise.py", '"GELU_TANH" if approximate == "tanh" else "GELU_ERF"', '"GELU_ERF"',
           "tanh-approximate GELU lowered as exact GELU", CONVERTERS),
    Mutant("conv_unsqueeze_negative_dim", "ditto/trt/converters/shuffle.py", "[dim % (len(x.shape) + 1)]", "[dim % len(x.shape)]",
           "negative unsqueeze dim counted on the input rank", CONVERTERS),
    Mutant("conv_slice_step_count", "ditto/trt/converters/slicing.py", 'size_op(ctx, size_op(ctx, stop, begin, "SUB"), step - 1, "SUM")',
           'size_op(ctx, size_op(ctx, stop, begin, "SUB"), 0, "SUM")', "strided slice length rounds down", CONVERTERS),
    Mutant("conv_chunk_width_floor", "ditto/trt/converters/slicing.py", "width = -(-size // chunks)", "width = size // chunks",
           "chunk width rounds down", CONVERTERS + EDGES),
    Mutant("conv_softmax_last_axis_only", "ditto/trt/converters/reduce.py", "layer.axes = 1 << (dim % len(x.shape))",
           "layer.axes = 1 << (len(x.shape) - 1)", "softmax always over the last axis", CONVERTERS),
    Mutant("conv_layer_norm_not_centred", "ditto/trt/converters/reduce.py", "y = _normalise(ctx, x, list(range(-len(shape), 0)), eps, centre=True)",
           "y = _normalise(ctx, x, list(range(-len(shape), 0)), eps, centre=False)", "layer_norm lowered as RMS norm", CONVERTERS),
    Mutant("conv_empty_dims_reduce_nothing", "ditto/trt/converters/reduce.py", "dims is None or (not isinstance(dims, int) and len(dims) == 0)",
           "dims is None", "an empty dim list (reduce all) reduces nothing", CONVERTERS + EDGES),
    Mutant("conv_addmm_drops_alpha", "ditto/trt/converters/matmul.py", '        y = binary(ctx, y, alpha, "PROD")\n', "        pass\n",
           "addmm ignores alpha", CONVERTERS + EDGES),
    Mutant("conv_arange_count_off_by_one", "ditto/trt/converters/creation.py", "step - 1 if step > 0 else step + 1", "0",
           "dynamic arange length rounds down", CONVERTERS + EDGES),
    # ---- native attention lowering (TensorRT layers) ----------------------------------------------
    Mutant("native_rope_gptj_sign", _NATIVE, 'second = _ew(ctx, _ew(ctx, odd, cos, "PROD"), _ew(ctx, even, sin, "PROD"), "SUM")',
           'second = _ew(ctx, _ew(ctx, odd, cos, "PROD"), _ew(ctx, even, sin, "PROD"), "SUB")', "interleaved RoPE sign flip in TensorRT",
           NATIVE + REPLAY_MODELS),
    Mutant("native_rope_neox_sign", _NATIVE, 'first = _ew(ctx, _ew(ctx, first_in, cos, "PROD"), _ew(ctx, second_in, sin, "PROD"), "SUB")',
           'first = _ew(ctx, _ew(ctx, first_in, cos, "PROD"), _ew(ctx, second_in, sin, "PROD"), "SUM")', "halves RoPE sign flip in TensorRT",
           NATIVE + REPLAY_MODELS),
    Mutant("native_window_dropped", _NATIVE, "if params.sliding_window > 0:", "if params.sliding_window < 0:",
           "sliding window dropped in TensorRT", NATIVE + WINDOW),
    Mutant("native_q_scaling_dropped", _NATIVE, "scale = 1.0 / (math.sqrt(D) * params.q_scaling)", "scale = 1.0 / math.sqrt(D)",
           "q_scaling ignored in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_layer_units", _NATIVE, "layer_units = _int(ctx, 2 * params.layer_idx)", "layer_units = _int(ctx, params.layer_idx)",
           "K of layer l over V of layer l - 1 in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_slot_not_modulo", _NATIVE, 'slot = _ew(ctx, positions, _ew(ctx, block, _int(ctx, tpb), "PROD"), "SUB")', "slot = positions",
           "slot not reduced within its block in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_token_index_inclusive", _NATIVE, "trt.CumulativeOperation.SUM, True, False)", "trt.CumulativeOperation.SUM, False, False)",
           "token index 1-based: tokens assigned to the previous sequence", NATIVE + REPLAY_MODELS),
    Mutant("native_softcap_not_rescaled", _NATIVE, 'scores = _ew(ctx, scores, ctx.scalar(cap, scores), "PROD")', "pass",
           "soft-capping forgets to scale back in TensorRT", NATIVE + REPLAY_MODELS),
    # ---- replay layers -------------------------------------------------------------------------
    Mutant("replay_reflect_off_by_one", _LAYERS, "torch.where(coords >= n, period - coords, coords)", "torch.where(coords >= n, period - coords - 1, coords)",
           "REFLECT slice mirrors about the edge, not the edge element", LAYERS),
    Mutant("replay_gather_lowest_index_invalid", _LAYERS, "valid = (indices >= -n) & (indices < n)", "valid = (indices > -n) & (indices < n)",
           "gather index -n treated as out of bounds", LAYERS),
    Mutant("replay_floor_div_as_div", _LAYERS, '"FLOOR_DIV": _floor_div,', '"FLOOR_DIV": _div,', "FLOOR_DIV replayed as DIV", LAYERS),
    Mutant("replay_avg_one_axis", _LAYERS, '"AVG": lambda x, axes, keep: x.mean(axes, keepdim=keep),',
           '"AVG": lambda x, axes, keep: x.sum(axes, keepdim=keep) / x.shape[axes[0]],', "mean over several axes divides by one axis", LAYERS),
    Mutant("replay_norm_unbiased_variance", _LAYERS, "variance = ((wide - mean) ** 2).mean(axes, keepdim=True)",
           "variance = wide.var(axes, keepdim=True)", "normalization with Bessel's correction", LAYERS),
    Mutant("replay_cumulative_reverse_unflipped", _LAYERS, "    if call.attr(\"reverse\"):\n        out = out.flip(axis)\n    return out.to(x.dtype)", "    return out.to(x.dtype)",
           "reverse cumulative sum not flipped back", LAYERS),
    Mutant("replay_scatter_strides_of_indices", _LAYERS, "flat = sum(c * math.prod(data.shape[d + 1 :])", "flat = sum(c * math.prod(indices.shape[d + 1 :])",
           "ELEMENT scatter addresses with the indices' strides", LAYERS),
    Mutant("replay_shuffle_inverse_permutation", _LAYERS, "    return order[:rank]\n", "    return sorted(range(rank), key=order[:rank].__getitem__)\n",
           "shuffle applies the inverse permutation", LAYERS),
    Mutant("replay_matmul_transpose_ignored", _LAYERS, '(y.transpose(-1, -2) if op1 == "TRANSPOSE" else y)', "y",
           "matrix multiply ignores TRANSPOSE on the second input", LAYERS),
    Mutant("replay_rotary_interleaved_sign", _ATTN, "torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1)",
           "torch.stack((a * cos + b * sin, b * cos - a * sin), dim=-1)", "interleaved rotary rotates the wrong way", LAYERS),
    Mutant("replay_attention_gqa_repeat", _ATTN, "keys = k.float().repeat_interleave(group, dim=1)", "keys = k.float().repeat(1, group, 1, 1)",
           "GQA replay maps query heads to the wrong KV heads", LAYERS),
    Mutant("replay_lower_right_sign", _ATTN, "allowed = cols <= rows + (s_kv - s_q)", "allowed = cols <= rows + (s_q - s_kv)",
           "LOWER_RIGHT causal diagonal anchored the wrong way", LAYERS),
    Mutant("replay_softmax_axis_first", _LAYERS, "return torch.softmax(_wide(x), axes[0]).to(x.dtype)", "return torch.softmax(_wide(x), 0).to(x.dtype)",
           "softmax over the first axis", LAYERS),
    # ---- compare -------------------------------------------------------------------------------
    Mutant("compare_boundary_counts_out", _STATS, "n_out = (d > atol.to(ct) + rtol.to(ct) * y_abs)", "n_out = (d >= atol.to(ct) + rtol.to(ct) * y_abs)",
           "an element exactly at the tolerance fails", COMPARE),
    Mutant("compare_nan_only_on_a", _STATS, "return torch.where(x.isnan() | y.isnan(), math.inf, d)", "return torch.where(x.isnan(), math.inf, d)",
           "a NaN in the reference is not ranked worst", COMPARE),
    Mutant("compare_equal_infinities_fail", _STATS, "within = (x == y) | (finite & (d <= atol + rtol * y_abs))", "within = finite & (d <= atol + rtol * y_abs)",
           "equal infinities counted out of tolerance", COMPARE),
    Mutant("compare_rtol_on_a", _STATS, "n_out = (d > atol.to(ct) + rtol.to(ct) * y_abs)", "n_out = (d > atol.to(ct) + rtol.to(ct) * x.abs())",
           "rtol relative to A instead of the reference", COMPARE),
    Mutant("compare_zero_side_cosine", "ditto/comparator/__init__.py", "    if aa == 0 or bb == 0:\n        return 0.0", "    if aa == 0 or bb == 0:\n        return 1.0",
           "an all-zero side looks identical", COMPARE),
    Mutant("compare_mean_over_all", "ditto/comparator/__init__.py", "result.mean_abs = e.sum_abs / e.n_abs if e.n_abs else 0.0",
           "result.mean_abs = e.sum_abs / a.numel() if a.numel() else 0.0", "mean |a - b| counts NaN positions", COMPARE + VERDICTS),
    Mutant("compare_only_in_b_ignored", "ditto/comparator/results.py", "and not self.only_in_a and not self.only_in_b", "and not self.only_in_a",
           "a name only in B passes", COMPARE + VERDICTS),
    Mutant("compare_runs_extra_steps_of_b_ignored", "ditto/comparator/__init__.py",
           'result.steps_only_in_b = [f"step{i}" for i in range(len(a), len(b))]', "result.steps_only_in_b = []",
           "a run shorter than its reference passes", ("tests/test_api.py",)),
    Mutant("layer_class_conditional_missing", "ditto/trt/layer_types.py", "classes[key[2:]] = cls", "pass",
           "if-conditional layers read as bare ILayer", ("tests/trt/test_layer_types.py",)),
    # ---- goldens -------------------------------------------------------------------------------
    Mutant("golden_steps_not_identity", "harness/goldens.py", '    "steps": "steps",\n', "",
           "a golden of another step count is compared", GOLDENS),
    Mutant("golden_topk_own_run", "harness/goldens.py", "index = like[key] if like is not None and key in like else rows.topk",
           "index = rows.topk", "fingerprint top-k ids taken from the new run", GOLDENS),
    Mutant("golden_stats_without_abs", "harness/goldens.py", "flat.max(), flat.abs().mean()]", "flat.max(), flat.mean()]",
           "fingerprint stats lose mean |x|", GOLDENS),
)
