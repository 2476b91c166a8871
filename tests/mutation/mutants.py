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
    unlisted: bool = False  # the second set (tests/mutation/unlisted.py): kinds issue 12 does not list

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
    ("harness/", "harness verdicts"),
    ("ditto/models/", "loader"),
    ("ditto/probes.py", "probes"),
)

# targeted selections: node ids, never -k (a -k filter applies to every file of the selection)
_TINY = ("tiny-gemma", "tiny-gpt2", "tiny-llama", "tiny-mistral", "tiny-phi3", "tiny-qwen2", "tiny-qwen3")
PARITY = tuple(f"tests/pipeline/test_fx_parity.py::test_fx_matches_hf[torch.float32-{m}]" for m in _TINY)  # fx vs hf
GENERIC = ("tests/pipeline/test_generic_architectures.py", "tests/pipeline/test_broken_passes_caught.py")
ROPE_FIELDS = ("tests/trtllm/test_rope_fields.py",)  # RoPE fields against the HF config
SIMPLIFY = ("tests/passes/test_simplify_shuffles_permutations.py",)  # shuffle folding on small graphs
CONFIG = ("tests/trtllm/test_config.py", "tests/trtllm/test_gpt_attention_plugin.py")  # what ditto writes for TensorRT-LLM
OPS = ("tests/ops/test_gpt_attention_reference.py",)
ALIBI = ("tests/ops/test_attention_alibi.py", "tests/ops/test_gpt_attention_variants.py")  # BLOOM/MPT end to end; both kernels vs dense
TILED = ("tests/passes/test_attention_tiled_kv.py",)
MLA = ("tests/passes/test_attention_mla.py",)  # multi-head latent attention on tiny DeepSeek-V2, hf vs fx vs replay
GRANITE_SINK = ("tests/pipeline/test_attention_variants.py::test_attention_sink_through_logsumexp_is_a_sink_parameter",)
VARIANT_OPS = ("tests/ops/test_gpt_attention_variants.py",)  # ALiBi, sinks, query scale in the op vs dense attention
QUERY_SCALE = ("tests/passes/test_attention_query_scale.py",)  # Beam's per-position query scale, hf vs fx vs replay  # K/V heads tiled (JetMoE style), regrouped for GQA
SINKS = ("tests/ops/test_attention_sinks.py",)  # sinks on tiny FLINT, XGLM's eager attention, hf vs fx vs replay  # gpt_attention / paged cache against an SDPA reference
QK_NORM_AFTER_ROPE = ("tests/passes/test_attention_qk_norm_after_rope.py",)  # HunYuan, norm after RoPE, hf vs fx vs replay
OPENAI_GPT = ("tests/passes/test_eager_attention_openai_gpt.py",)  # permuted key, 0/1 multiplicative mask
REPLAY_MODELS = ("tests/replay/test_backend.py::test_replay_matches_fx_and_hf",)  # replay vs fx and hf, every tiny model
CONVERTERS = ("tests/trt/test_converters.py",)
EDGES = ("tests/trt/test_converters_edges.py",)
NATIVE = ("tests/trt/test_attention_native.py",)
WINDOW = ("tests/pipeline/test_sliding_window.py",)  # a model with a window shorter than its prompts, fx and replay
LAYERS = tuple(f"tests/replay/test_{kind}.py" for kind in (
    "shuffle", "slicing", "elementwise", "reduce", "matmul", "creation", "attention", "plugin_layers", "network")) + (
    "tests/replay/test_onnx_oracle.py",)
COMPARE = ("tests/compare/test_comparator.py", "tests/cli/test_compare.py")
VERDICTS = ("tests/compare/test_verdicts.py",)
GOLDENS = ("tests/harness/test_units.py", "tests/harness/test_goldens_plugin.py", "tests/harness/test_goldens_units.py")
SPARSE = ("tests/pipeline/test_sparse_attention.py", "tests/passes/test_attention_sparse_topk.py")  # indexer's top-k, up to K
PAD_KV = ("tests/passes/test_pad_kv_shapes.py",)  # mixed KV shapes (MiMo, Gemma 4) padded to one pool, fx and replay vs hf

_OPS = "ditto/ops/gpt_attention.py"
_ROPE = "ditto/ops/rope.py"
_NATIVE = "ditto/trt/attention_native.py"
_ATTN = "ditto/replay/attention.py"
_STATS = "ditto/comparator/stats.py"

LISTED: tuple[Mutant, ...] = (
    # ---- ops: the gpt_attention reference kernel and the KV-cache addressing ---------------
    Mutant("op_scale_without_sqrt", _OPS, "scale = 1.0 / (D**0.5 * q_scaling)", "scale = 1.0 / (D * q_scaling)",
           "softmax scale forgets the square root", OPS + PARITY),
    Mutant("op_causal_sees_next_token", _OPS, "allowed = key_pos <= query_pos", "allowed = key_pos <= query_pos + 1",
           "causal mask off by one", OPS + PARITY),
    Mutant("op_window_off_by_one", _OPS, "(key_pos > query_pos - sliding_window)", "(key_pos >= query_pos - sliding_window)",
           "sliding window keeps one key too many", OPS + PARITY),
    Mutant("op_window_dropped", _OPS, "if sliding_window > 0:", "if sliding_window < 0:",
           "sliding-window branch never taken", OPS + PARITY),
    Mutant("rope_pair_sign", _ROPE, "return sub(mul(a, cos), mul(b, sin)), add(mul(b, cos), mul(a, sin))",
           "return add(mul(a, cos), mul(b, sin)), sub(mul(b, cos), mul(a, sin))",
           "RoPE rotates the wrong way (every user of the one rotation)", OPS + PARITY),
    Mutant("op_rope_gptj_pairs_swapped", _ROPE, "a, b = rotate_pair(rot[..., 0::2], rot[..., 1::2], cos, sin)",
           "a, b = rotate_pair(rot[..., 1::2], rot[..., 0::2], cos, sin)", "interleaved RoPE swaps the pair members", OPS + GENERIC),
    Mutant("op_rope_position_shift", _OPS, "positions = torch.arange(past, total,", "positions = torch.arange(past + 1, total + 1,",
           "RoPE positions off by one", OPS + PARITY),
    Mutant("op_softcap_dropped_scale", _OPS, "scores = cap * torch.tanh(scores / cap)", "scores = torch.tanh(scores / cap)",
           "logit soft-capping forgets to scale back", OPS + PARITY),
    Mutant("op_kv_unit_layer_stride", "ditto/ops/kv_cache.py", "return block_units + UNITS_PER_LAYER * layer_in_pool",
           "return block_units + layer_in_pool", "K of layer l written over V of layer l - 1", OPS + PARITY),
    Mutant("op_gqa_repeat_not_interleave", _OPS, "keys = keys.repeat_interleave(group, dim=1)", "keys = keys.repeat(1, group, 1)",
           "GQA maps query heads to the wrong KV heads", OPS + PARITY),
    Mutant("op_block_slot_swapped", _OPS, "blocks, slots = pos // tokens_per_block, pos % tokens_per_block",
           "slots, blocks = pos // tokens_per_block, pos % tokens_per_block", "block and slot of a position swapped", OPS + PARITY),
    Mutant("kv_block_offset_ignores_layers", "ditto/ops/kv_cache.py", "return block_id * num_layers * 2 + kv", "return block_id * 2 + kv",
           "block offset forgets the layers per block", OPS + PARITY),
    Mutant("op_alibi_distance_reversed", _OPS, "alibi_slopes.float()[:, None, None] * (key_pos - query_pos)[None]",
           "alibi_slopes.float()[:, None, None] * (query_pos - key_pos)[None]", "ALiBi bias with the distance's sign flipped",
           ALIBI),
    Mutant("op_sinks_ignored", _OPS, "probs = torch.softmax(torch.cat((scores, sinks), dim=-1), dim=-1)[..., :-1]",
           "probs = torch.softmax(scores, dim=-1)", "attention sinks left out of the softmax", SINKS),
    Mutant("op_query_scale_ignored", _OPS,
           "q = q * query_position_scale[torch.arange(past, total, device=qkv.device)].float()[:, None, None]",
           "q = q * query_position_scale[torch.arange(0, total - past, device=qkv.device)].float()[:, None, None]",
           "per-position query scale read at the token's index in the step, not its position", VARIANT_OPS + QUERY_SCALE),
    Mutant("batched_alibi_distance_reversed", "ditto/ops/gpt_attention_batched.py",
           "self.distance = put((positions[None, None, :] - query_pos[:, :, None]).float())",
           "self.distance = put((query_pos[:, :, None] - positions[None, None, :]).float())",
           "ALiBi distance sign flipped in the batched kernel", VARIANT_OPS),
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
    Mutant("pad_kv_heads_tiled", "ditto/passes/pad_kv_shapes.py",
           "x = insert_op(graph, aten.unsqueeze.default, (x, 2))\n    x = insert_op(graph, aten.expand.default, (x, [-1, kv, repeats, d]))",
           "x = insert_op(graph, aten.unsqueeze.default, (x, 1))\n    x = insert_op(graph, aten.expand.default, (x, [-1, repeats, kv, d]))",
           "KV heads padded by tiling (copies of every head in turn), so query heads read other heads' K/V", PAD_KV),
    Mutant("pad_query_heads_tiled", "ditto/passes/pad_kv_shapes.py", "q = _repeat_heads(graph, q, H, copies, D)",
           "q = insert_op(graph, aten.cat.default, ([q] * copies, 1))",
           "query heads repeated by tiling, so their copies read other heads' K/V", PAD_KV),
    Mutant("pad_kv_scale_of_padded_size", "ditto/passes/pad_kv_shapes.py",
           "q_scaling=params.q_scaling * math.sqrt(params.head_size) / math.sqrt(head_size),", "q_scaling=params.q_scaling,",
           "zero-padded head size changes the softmax scale (1/sqrt of the padded size)", PAD_KV),
    Mutant("pass_q_scaling_inverted", "ditto/passes/replace_attention.py", "q_scaling=1.0 / (scale * math.sqrt(op_size)),",
           "q_scaling=scale * math.sqrt(op_size),", "q_scaling inverted (same only for scale 1/sqrt(D))", PARITY + GENERIC),
    Mutant("pass_default_scale_missing", "ditto/passes/replace_attention.py", "scale = 1.0 / math.sqrt(head_size)", "scale = 1.0",
           "SDPA's default scale forgotten", PARITY + GENERIC),
    Mutant("pass_rotary_base_default", _ROPE, "rotary_embedding_base=self.base,",
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
           "eager attention scale inverted", ("tests/pipeline/test_generic_architectures.py::test_eager_attention_is_normalised",) + PARITY),
    Mutant("pass_baddbmm_bias_dropped", "ditto/passes/eager_attention_to_sdpa.py", "            mask = _add_term(mask, bias, softmax)",
           "            pass", "baddbmm's bias term (BLOOM's ALiBi) dropped from the scores", ALIBI),
    Mutant("pass_sinks_not_recorded", "ditto/passes/eager_attention_to_sdpa.py", "        if sinks is not None:\n            sdpa.meta[SINKS_META]",
           "        if False:\n            sdpa.meta[SINKS_META]", "recognised sinks not passed on to the attention op", SINKS),
    Mutant("pass_flat_softmax_clamp_kept_as_mask", "ditto/passes/eager_attention_to_sdpa.py", "floor.args[1] <= _MASKED:",
           "floor.args[1] > 0:", "XGLM's clamp not peeled: its attention stays unrecognised", SINKS),
    Mutant("pass_tiled_kv_not_regrouped", "ditto/passes/replace_attention.py", "        if k_tiled:  # query head i * KV + j",
           "        if False:  # query head i * KV + j", "tiled K/V heads read with grouped-GQA head mapping", TILED),
    Mutant("pass_mla_rope_piece_not_first", "ditto/passes/replace_attention.py",
           "result.append([rotated[0]] + [p for p in pieces if p.rotated is None])",
           "result.append([p for p in pieces if p.rotated is None] + [rotated[0]])",
           "MLA's rotated features left where the model has them (the op rotates the leading ones)", MLA),
    Mutant("pass_mla_output_slice_wrong", "ditto/passes/replace_attention.py", "(rows, 3, 0, value_size))",
           "(rows, 3, op_size - value_size, op_size))", "the zero-padded value features sliced back instead of the real ones",
           MLA),
    Mutant("pass_mla_rope_permutation_inverted", "ditto/passes/replace_attention.py",
           "perm = y.abs().argmax(dim=1)  # output feature of each input feature",
           "perm = y.abs().argmax(dim=0)  # output feature of each input feature",
           "the feature permutation after RoPE (DeepSeek-V3's rope_interleave) undone the wrong way round", MLA),
    Mutant("pass_mla_q_scaling_unpadded_head", "ditto/passes/replace_attention.py",
           "        q_scaling=1.0 / (scale * math.sqrt(op_size)),\n        **_position_fields",
           "        q_scaling=1.0 / (scale * math.sqrt(head_size)),\n        **_position_fields",
           "q_scaling from the model's query/key head, not the op's padded head (value wider than q/k)", MLA),
    Mutant("pass_sparse_indexer_not_named", "ditto/passes/replace_attention.py", "picker = _token_topk(mask)",
           "picker = None", "sparse attention refused as a generic token-dependent mask (the indexer unnamed)", SPARSE),
    Mutant("sparse_wrong_term_dropped", "ditto/passes/replace_attention.py",
           "base, node = (clean[0] if clean else None), tainted[0]",
           "base, node = (tainted[0] if clean else None), tainted[0]",
           "the causal part of a sparse-attention mask dropped and the top-k term kept", SPARSE),
    Mutant("sparse_keep_all_unchecked", "ditto/passes/replace_attention.py",
           "if torch.broadcast_shapes(got.shape, want.shape) != got.shape or not torch.equal(got, want.expand_as(got)):",
           "if False:", "a top-k term dropped without checking that keeping every key leaves the other operand", SPARSE),
    Mutant("sparse_axis_not_the_tokens", "ditto/passes/replace_attention.py", "if not size.is_Symbol or any(",
           "if not size.free_symbols or any(", "a top-k over 2 x tokens keys taken as bounding the sequence at K", SPARSE),
    Mutant("sparse_limit_not_enforced", "ditto/runtime/stepwise.py",
           "program.sequence_limit.check(max(len(p) for p in request.prompts) + request.steps,",
           "program.sequence_limit.check(max(len(p) for p in request.prompts),",
           "the sequence limit checked against the prompt alone: generation runs past K", SPARSE),
    Mutant("sparse_limit_off_by_one", "ditto/program.py", "if tokens > self.tokens:", "if tokens >= self.tokens:",
           "a sequence of exactly K tokens refused (top-k of K keys keeps all K)", SPARSE),
    Mutant("sparse_build_limit_ignored", "ditto/trtllm/config.py",
           "max_seq_len = min(max_seq_len, sequence_limit.tokens)", "max_seq_len = max(max_seq_len, sequence_limit.tokens)",
           "ditto build's default max_seq_len not capped at the sequence limit", SPARSE),
    Mutant("sparse_build_explicit_unchecked", "ditto/trtllm/config.py", "    elif sequence_limit is not None:\n",
           "    elif False:\n", "an explicit --max-seq-len above the sequence limit accepted", SPARSE),
    Mutant("converter_unbind_reversed", "ditto/trt/converters/slicing.py",
           "return [select(ctx, x, dim, i) for i in range(x.shape[dim % len(x.shape)])]",
           "return [select(ctx, x, dim, i) for i in reversed(range(x.shape[dim % len(x.shape)]))]",
           "unbind's pieces in reverse order", ("tests/trt/test_converters.py::test_slicing[unbind]",)),
    Mutant("pass_lse_sink_scale_kept", "ditto/passes/eager_attention_to_sdpa.py", "            scaled.replace_all_uses_with(out)\n",
           "            pass\n", "logsumexp sink scaling kept beside an op that already has the sink (applied twice)",
           GRANITE_SINK),
    Mutant("pass_post_rope_commute_unchecked", "ditto/passes/replace_attention.py",
           "            if _commutes(ctx, raw, out, after, rope):", "            if True:",
           "a transform after RoPE moved before it without checking that it commutes (QK-norm weights that differ "
           "within a rotated pair converted to wrong numbers)", QK_NORM_AFTER_ROPE),
    Mutant("pass_norm_after_rope_fit_unverified", "ditto/passes/replace_attention.py",
           "    if not error <= tolerance * max(1.0, want.abs().max().item()):\n        _fail(sdpa, f\"a transform between RoPE and attention on {raw.name} neither",
           "    if False:\n        _fail(sdpa, f\"a transform between RoPE and attention on {raw.name} neither",
           "a transform after RoPE taken as an RMSNorm without verifying the fit (a LayerNorm converted wrongly)",
           QK_NORM_AFTER_ROPE),
    Mutant("op_norm_after_rope_eps_dropped", _OPS, "torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm[-1])",
           "torch.rsqrt(x.pow(2).mean(-1, keepdim=True))", "RMSNorm after RoPE without its epsilon", QK_NORM_AFTER_ROPE),
    Mutant("native_norm_after_rope_key_skipped", _NATIVE, "        k = _rms_norm_after_rope(ctx, k, inputs[\"key_norm_after_rope\"], D)",
           "        pass", "the native lowering normalises the query after RoPE but not the key", QK_NORM_AFTER_ROPE),
    Mutant("pass_post_rope_moved_reads_rotated", "ditto/passes/replace_attention.py", "    env = {cut: raw}\n",
           "    env = {}\n", "the transform moved before RoPE still reads the rotated tensor (rotated twice)",
           QK_NORM_AFTER_ROPE),
    Mutant("pass_multiplicative_mask_not_zero_one", "ditto/passes/eager_attention_to_sdpa.py",
           "    return bool(((value == 0) | (value == 1)).all())", "    return True",
           "x * b + c * (1 - b) taken as a mask for a b that is not 0/1 (scores scaled, not masked)", OPENAI_GPT),
    Mutant("pass_multiplicative_mask_dropped", "ditto/passes/eager_attention_to_sdpa.py",
           "        return _skip_casts(x), _add_term(mask, term, softmax)", "        return _skip_casts(x), mask",
           "OpenAI-GPT's multiplicative causal mask peeled but not added back as an additive mask", OPENAI_GPT),
    Mutant("fake_value_fixed_size_unchecked", "ditto/graph/insert.py", "    if newly_fixed:\n", "    if False:\n",
           "a fake kernel that fixes the dynamic token count goes unnoticed (static shapes from then on)",
           ("tests/graph/test_insert.py",)),
    Mutant("fake_value_sdpa_rule_key_width", "ditto/graph/insert.py", "return q.new_empty((*q.shape[:-1], v.shape[-1]))",
           "return q.new_empty((*q.shape[:-1], k.shape[-1]))", "SDPA's shape rule takes the key's head size for the output's",
           ("tests/graph/test_insert.py",) + OPENAI_GPT),
    Mutant("pass_static_token_axis_unnamed", "ditto/passes/replace_attention.py", "    if token_axis is None:  # fixed by",
           "    if False:  # fixed by", "an attention input whose token count was fixed goes on as if it had heads first",
           ("tests/passes/test_replace_attention.py",)),
    Mutant("cli_interrupt_turned_into_error_reported_as_error", "ditto/cli/main.py",
           "        if received and not isinstance(e, KeyboardInterrupt):", "        if False:",
           "a Ctrl-C that a library turned into another error is printed as that error (exit 2), not the interrupt",
           ("tests/cli/test_faults.py::test_ctrl_c_that_a_library_turns_into_another_error_is_an_interrupt",)),
    Mutant("sweep_mrope_sections_left_at_default", "scripts/arch_sweep.py",
           "        return dict(entry, mrope_section=[half * 3 // 8", "        return dict(entry, _=[half * 3 // 8",
           "the tiny config keeps the modeling file's M-RoPE sections for a 128-wide head",
           ("tests/models/test_arch_sweep_config.py::test_shrinking_keeps_fields_consistent",)),
    Mutant("pass_inplace_view_base_readers_ignored", "ditto/passes/functionalize_inplace.py", "if user is not node and order[user] > order[node] and user is not mutated:",
           "if False:", "an in-place update of a view rewritten although its base is read again",
           ("tests/passes/test_functionalize_views.py",)),
    Mutant("pass_permute_composition_reversed", "ditto/passes/simplify_shuffles.py", "[inner[p] for p in perm]", "[perm[p] for p in inner]",
           "two permutes composed in the wrong order", SIMPLIFY + PARITY + GENERIC),
    Mutant("pass_cat_cover_drops_order_check", "ditto/passes/simplify_shuffles.py", "            if start != position:\n                return None\n", "",
           "cat of slices taken as the whole source without checking order", SIMPLIFY + PARITY + GENERIC),
    Mutant("trtllm_alibi_slopes_last", "ditto/trtllm/gpt_attention_plugin.py", 'names.insert(names.index("host_context_lengths"), "alibi_slopes")',
           'names.append("alibi_slopes")', "ALiBi slopes bound to the wrong plugin input", ALIBI),
    Mutant("replay_plugin_alibi_as_learned", "ditto/replay/plugin_layers.py", '2: "rope_gpt_neox", 4: "alibi"}',
           '2: "rope_gpt_neox", 4: "learned_absolute"}', "plugin replay ignores ALiBi", ("tests/replay/test_plugin_layers.py::test_alibi_plugin_maps_to_the_reference_op",)),
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
    Mutant("native_rope_gptj_sign", _NATIVE, "first, second = rotate_pair(even, odd, cos, sin, arithmetic)",
           "first, second = rotate_pair(odd, even, cos, sin, arithmetic)", "interleaved RoPE pairs swapped in TensorRT",
           NATIVE + REPLAY_MODELS),
    Mutant("native_rope_neox_sign", _NATIVE, 'for op in ("PROD", "SUM", "SUB"))', 'for op in ("PROD", "SUB", "SUM"))',
           "RoPE sign flip in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_window_dropped", _NATIVE, "if params.sliding_window > 0:", "if params.sliding_window < 0:",
           "sliding window dropped in TensorRT", NATIVE + WINDOW),
    Mutant("native_q_scaling_dropped", _NATIVE, "scale = 1.0 / (math.sqrt(D) * params.q_scaling)", "scale = 1.0 / math.sqrt(D)",
           "q_scaling ignored in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_layer_units", _NATIVE, "layer_units = _int(ctx, layer_unit(0, params.layer_idx))",
           "layer_units = _int(ctx, params.layer_idx)", "K of layer l over V of layer l - 1 in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_slot_not_modulo", _NATIVE, 'slot = _ew(ctx, positions, _ew(ctx, block, _int(ctx, tpb), "PROD"), "SUB")', "slot = positions",
           "slot not reduced within its block in TensorRT", NATIVE + REPLAY_MODELS),
    Mutant("native_token_index_inclusive", _NATIVE, "trt.CumulativeOperation.SUM, True, False)", "trt.CumulativeOperation.SUM, False, False)",
           "token index 1-based: tokens assigned to the previous sequence", NATIVE + REPLAY_MODELS),
    Mutant("native_alibi_distance_reversed", _NATIVE, '_ew(ctx, keys_row, query_pos, "SUB"), [tokens, 1, 1, span])',
           '_ew(ctx, query_pos, keys_row, "SUB"), [tokens, 1, 1, span])', "ALiBi distance sign flipped in TensorRT",
           ALIBI),
    Mutant("native_sinks_not_in_denominator", _NATIVE, 'total = _ew(ctx, total, exp(_ew(ctx, sink, top, "SUB")), "SUM")',
           "total = total", "attention sinks dropped from the softmax denominator in TensorRT", SINKS),
    Mutant("native_query_scale_ignored", _NATIVE, 'q = _ew(ctx, q, ctx.reshape(factor, [tokens, 1, 1]), "PROD")', "q = q",
           "per-position query scale dropped in TensorRT", QUERY_SCALE),
    Mutant("native_softcap_not_rescaled", _NATIVE, 'scores = _ew(ctx, scores, ctx.scalar(cap, scores), "PROD")', "pass",
           "soft-capping forgets to scale back in TensorRT", NATIVE + REPLAY_MODELS),
    # ---- replay layers -------------------------------------------------------------------------
    Mutant("replay_reflect_off_by_one", "ditto/replay/slicing.py", 'torch.where(coords >= n, period - coords, coords)', "torch.where(coords >= n, period - coords - 1, coords)",
           "REFLECT slice mirrors about the edge, not the edge element", LAYERS),
    Mutant("replay_gather_lowest_index_invalid", "ditto/replay/slicing.py", 'valid = (indices >= -n) & (indices < n)', "valid = (indices > -n) & (indices < n)",
           "gather index -n treated as out of bounds", LAYERS),
    Mutant("replay_scatter_always_in_place", "ditto/replay/slicing.py", "out = data if 0 in call.overwritable and data.is_contiguous() else",
           "out = data if data.is_contiguous() else", "scatter writes into its data whoever else still reads it", LAYERS),
    Mutant("replay_overwrite_ignores_views", "ditto/replay/network.py", "if all(v.device != args[i].device or v.untyped_storage().data_ptr() != storage for v in others):",
           "if True:", "in-place write through a tensor another live value views", LAYERS),
    Mutant("replay_check_syncs_while_recording", "ditto/replay/registry.py", "        if self.capturing:\n            torch._assert_async(",
           "        if False:\n            torch._assert_async(", "a check reads a device value on the host while a CUDA graph records",
           ("tests/replay/test_plan.py",)),
    Mutant("replay_graph_signature_without_host_reads", "ditto/replay/graphs.py", "        for name in self.host_reads:\n            parts.append(",
           "        for name in self.host_reads[:0]:\n            parts.append(", "a recorded graph replayed for other shape data",
           ("tests/replay/test_plan.py",)),
    Mutant("native_span_not_whole_blocks", "ditto/trt/attention_native.py", 'longest = _ew(ctx, _ew(ctx, blocks, _int(ctx, tpb), "PROD"), span_limit, "MIN")',
           "pass", "keys read up to the longest sequence, not whole blocks: a new shape every decode step",
           ("tests/replay/test_plan.py",)),
    Mutant("replay_floor_div_as_div", "ditto/replay/elementwise.py", '"FLOOR_DIV": _floor_div,', '"FLOOR_DIV": _div,', "FLOOR_DIV replayed as DIV", LAYERS),
    Mutant("replay_avg_one_axis", "ditto/replay/reduce.py", '"AVG": lambda x, axes, keep: x.mean(axes, keepdim=keep),',
           '"AVG": lambda x, axes, keep: x.sum(axes, keepdim=keep) / x.shape[axes[0]],', "mean over several axes divides by one axis", LAYERS),
    Mutant("replay_norm_unbiased_variance", "ditto/replay/reduce.py", 'variance = ((wide - mean) ** 2).mean(axes, keepdim=True)',
           "variance = wide.var(axes, keepdim=True)", "normalization with Bessel's correction", LAYERS),
    Mutant("replay_cumulative_reverse_unflipped", "ditto/replay/reduce.py", '    if call.attr("reverse"):\n        out = out.flip(axis)\n    return out.to(x.dtype)', "    return out.to(x.dtype)",
           "reverse cumulative sum not flipped back", LAYERS),
    Mutant("replay_scatter_strides_of_indices", "ditto/replay/slicing.py", 'flat = sum(c * math.prod(data.shape[d + 1 :])', "flat = sum(c * math.prod(indices.shape[d + 1 :])",
           "ELEMENT scatter addresses with the indices' strides", LAYERS),
    Mutant("replay_shuffle_inverse_permutation", "ditto/replay/shuffle.py", '    return order[:rank]\n', "    return sorted(range(rank), key=order[:rank].__getitem__)\n",
           "shuffle applies the inverse permutation", LAYERS),
    Mutant("replay_matmul_transpose_ignored", "ditto/replay/matmul.py", '(y.transpose(-1, -2) if op1 == "TRANSPOSE" else y)', "y",
           "matrix multiply ignores TRANSPOSE on the second input", LAYERS),
    Mutant("replay_rotary_interleaved_flag", _ATTN, 'interleaved=bool(call.attr("interleaved"))', 'interleaved=not call.attr("interleaved")',
           "rotary layer replayed with the other pairing", LAYERS),
    Mutant("replay_attention_gqa_repeat", _ATTN, "keys = k.float().repeat_interleave(group, dim=1)", "keys = k.float().repeat(1, group, 1, 1)",
           "GQA replay maps query heads to the wrong KV heads", LAYERS),
    Mutant("replay_lower_right_sign", _ATTN, "allowed = cols <= rows + (s_kv - s_q)", "allowed = cols <= rows + (s_q - s_kv)",
           "LOWER_RIGHT causal diagonal anchored the wrong way", LAYERS),
    Mutant("replay_softmax_axis_first", "ditto/replay/reduce.py", 'return torch.softmax(widen(x), axes[0]).to(x.dtype)', "return torch.softmax(widen(x), 0).to(x.dtype)",
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
    Mutant("compare_only_in_b_ignored", "ditto/comparator/results.py", "and not only_in_a and not only_in_b", "and not only_in_a",
           "a name (or a step) only in B passes", COMPARE + VERDICTS),
    # ---- MoE routers and activations (issue 11) ------------------------------------------------
    Mutant("moe_group_score_max_only", "ditto/ops/moe.py", "group_scores = grouped.topk(group_top, dim=-1).values.sum(dim=-1)",
           "group_scores = grouped.amax(dim=-1)", "DeepSeek-V3's group score (sum of the top 2) read as the max",
           ("tests/ops/test_moe_routers.py",)),
    Mutant("moe_sparse_mixer_eps_not_doubled", "ditto/ops/moe.py", "> 2 * epsilon", "> epsilon",
           "the sparse mixer's threshold taken as epsilon, not 2 epsilon", ("tests/ops/test_moe_routers.py",)),
    Mutant("moe_clamped_gate_both_sides", "ditto/ops/moe.py", "gate.clamp(max=limit)", "gate.clamp(-limit, limit)",
           "the clamped SwiGLU's gate clamped from below too", ("tests/ops/test_moe_routers.py",)),
    Mutant("moe_trt_choice_on_scores", "ditto/trt/converters/moe.py",
           'choice = logits if selection == "logits" else scores', "choice = scores",
           "the TensorRT routing ranks the scores when the model ranks biased logits (Kolibri1)",
           ("tests/ops/test_moe_routers.py",)),
    Mutant("moe_pass_epsilon_undoubled", "ditto/passes/replace_moe.py", "return _shortest(low / 2, high / 2)",
           "return _shortest(low, high)", "the measured sparse-mixer threshold taken as epsilon",
           ("tests/passes/test_moe_recognition.py::test_router_is_recognised_and_fx_matches_hf[phimoe]",)),
    Mutant("moe_interleaved_read_as_halves", "ditto/passes/replace_moe.py",
           "return Concat((Narrow(source, dim, linear_start, inter, step), Narrow(source, dim, gate_start, inter, step)), dim=dim)",
           "return Concat((Narrow(source, dim, inter, inter), Narrow(source, dim, 0, inter)), dim=dim)",
           "every reordered fc1 taken as gate-first halves (GPT-OSS interleaves gate/up columns)",
           ("tests/passes/test_moe_gpt_oss.py",)),
    Mutant("moe_depends_on_walks_earlier_layers", "ditto/graph/nodes.py",
           "if current in seen or not isinstance(current, Node) or current < target:",
           "if current in seen or not isinstance(current, Node):",
           "the expert-order search walks up through the router into earlier layers and gives up (GPT-OSS)",
           ("tests/passes/test_moe_gpt_oss.py",)),
    Mutant("moa_keys_not_checked", "ditto/passes/check_supported.py",
           "if _reads(query, topk) and not any(_reads(other, topk) for other in others):", "if _reads(query, topk):",
           "a routed MLP before an attention taken for a routed query",
           ("tests/passes/test_routed_attention_refused.py",)),
    Mutant("moe_checkpoint_buffer_init_value", "ditto/exporter/graph.py",
           "and fqn in loaded.buffers and fqn not in loaded.sources:", "and fqn in loaded.buffers:",
           "a persistent buffer in the checkpoint (expert bias) keeps its init value",
           ("tests/passes/test_moe_recognition.py::test_router_is_recognised_and_fx_matches_hf[kolibri1]",)),
    Mutant("moe_plugin_activation_ids_0x", "ditto/trtllm/moe.py", 'for name in ("gelu", "relu", "silu", "swiglu", "geglu", "identity")}',
           'for name in ("gelu", "relu", "silu", "swiglu", "geglu")} | {"identity": 5}',
           "TensorRT-LLM 0.x's activation ids (identity 5) for the 1.x plugin", ("tests/trtllm/test_moe_plugin.py",)),
    Mutant("moe_plugin_scales_before_ids", "ditto/trt/converters/moe.py",
           'inputs = plugin_inputs(x, value(a["fc1_weight"]), fc2, ids, weights,',
           'inputs = plugin_inputs(x, value(a["fc1_weight"]), fc2, weights, ids,',
           "the plugin's token_selected_experts and token_final_scales swapped", ("tests/trtllm/test_moe_plugin.py",)),
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

# the second set, written after these (imported here so that every user of MUTANTS sees both)
from tests.mutation.unlisted import UNLISTED  # noqa: E402

MUTANTS: tuple[Mutant, ...] = LISTED + UNLISTED
