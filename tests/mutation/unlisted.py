"""The second set of planted bugs: kinds issue 12 does not list, written after the first 70.

Issue 12 asks that acceptance also be measured on bugs it does not list. These mutants were
written fresh, in code the first set leaves alone (the batched fx attention kernel, the
tolerance rules, the harness's verdict logic, golden I/O, converters for repeats, creation,
symbolic sizes and slicing bounds, replay FILL/CLIP/TopK, MoE routing in the op and in the
TensorRT lowering, the host-side paged-cache inputs, the checkpoint loader, probe lookup),
each a maintainer's slip: an off-by-one, swapped arguments, a dropped branch, a wrong
default, a wrong dtype, a wrong dim. They are in `MUTANTS` with `unlisted=True`, so the
anchor checks cover them; `python -m tests.mutation --set unlisted` runs only them.
"""

from __future__ import annotations

from tests.mutation.mutants import COMPARE, CONVERTERS, EDGES, GOLDENS, LAYERS, PARITY, WINDOW, Mutant

BATCHED = ("tests/ops/test_gpt_attention_batched.py",)  # the batched kernel against the reference kernel
HARNESS_UNITS = ("tests/harness/test_units.py",)
TOLERANCES = ("tests/compare/test_tolerances.py",) + HARNESS_UNITS  # the tolerance rules
MOE = ("tests/pipeline/test_moe.py",)
CONTRACT = ("tests/trtllm/test_contract.py", "tests/runtime/test_engine.py")
CONVERTERS_MORE = ("tests/trt/test_converters_dtypes_and_sizes.py",)  # dtypes of *_like, negated sizes
LOADING = ("tests/models/test_loading.py", "tests/pipeline/test_moe.py")

_B = "ditto/ops/gpt_attention_batched.py"
_TOL = "ditto/comparator/tolerances.py"
_VERDICT = "harness/comparison.py"
_GOLD = "harness/goldens.py"
_MOE_OP = "ditto/ops/moe.py"


def _u(name, path, old, new, why, tests) -> Mutant:
    return Mutant(name, path, old, new, why, tests, unlisted=True)


UNLISTED: tuple[Mutant, ...] = (
    # ---- the batched fx attention kernel (what fx runs by default) ------------------------------
    _u("batched_rope_turn_sign", _B, "turned = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)",
       "turned = torch.cat((rot[..., half:], -rot[..., :half]), dim=-1)", "halves RoPE rotates the wrong way (batched kernel)",
       BATCHED + PARITY),
    _u("batched_window_off_by_one", _B, "allowed &= positions[None, None, :] > query_pos[:, :, None] - sliding_window",
       "allowed &= positions[None, None, :] >= query_pos[:, :, None] - sliding_window",
       "sliding window keeps one key too many (batched kernel)", BATCHED + WINDOW),
    _u("batched_layer_shift", _B, "layer_unit(self.read_units, layer_in_pool))",
       "layer_unit(self.read_units, layer_in_pool) - 1)",
       "K of layer l read from V of layer l - 1 (batched kernel)", BATCHED + PARITY),
    _u("batched_last_block_clamp", _B, "blocks = (positions // tpb).clamp(max=max_blocks - 1)",
       "blocks = (positions // tpb).clamp(max=max_blocks - 2)", "the last KV block of a full sequence read from the one before",
       BATCHED + PARITY),
    _u("batched_gqa_fold_order", _B, "queries = queries.view(B, N, KV, G, D).permute(0, 2, 3, 1, 4)",
       "queries = queries.view(B, N, G, KV, D).permute(0, 3, 2, 1, 4)", "query heads folded onto the wrong KV heads (context step)",
       BATCHED + PARITY),
    _u("batched_generation_gqa", _B, "F.scaled_dot_product_attention(q.reshape(B, KV, G, D), keys,",
       "F.scaled_dot_product_attention(q.reshape(B, G, KV, D).transpose(1, 2), keys,",
       "query heads mapped to the wrong KV heads in generation steps only", BATCHED + PARITY),
    # ---- tolerance rules ----------------------------------------------------------------------------
    _u("tol_atol_not_scaled", _TOL, "return self.atol * max(1.0, max_magnitude(reference)), self.rtol",
       "return self.atol, self.rtol", "the fixed rule's atol not scaled by the reference's magnitude", TOLERANCES + COMPARE),
    _u("tol_tighter_side_wins", _TOL, "max(a for a, _ in defaults), max(r for _, r in defaults)",
       "min(a for a, _ in defaults), min(r for _, r in defaults)", "between two dtypes the tighter default is taken",
       TOLERANCES + COMPARE),
    _u("tol_floor_eps_of_oracle", _TOL, "self.floor_ulps * torch.finfo(self.dtype).eps * scale",
       "self.floor_ulps * torch.finfo(self.oracle_dtype).eps * scale", "calibrated floor in float32 ulps, not the run dtype's",
       TOLERANCES + COMPARE),
    _u("tol_noise_signed", _TOL, "diff = (ref[name].double() - want.double()).abs()", "diff = ref[name].double() - want.double()",
       "hf's noise measured without abs (negative errors ignored)", TOLERANCES + COMPARE),
    # ---- harness verdicts ---------------------------------------------------------------------------
    _u("verdict_extra_steps_ignored", _VERDICT, 'run.steps_only_in_a = [f"step{i}" for i in range(len(reference), len(candidate))]',
       'run.steps_only_in_a = [f"step{i}" for i in range(len(candidate), len(reference))]',
       "a candidate with more steps than the reference passes", HARNESS_UNITS + COMPARE),
    _u("verdict_deepest_first", _VERDICT, "for t in step.tensors:  # already in depth order",
       "for t in reversed(step.tensors):  # already in depth order", "the first divergence named at the deepest probe",
       HARNESS_UNITS + ("tests/pipeline/test_broken_passes_caught.py",)),
    # ---- goldens I/O ------------------------------------------------------------------------------
    _u("golden_last_step_not_loaded", _GOLD, 'for i in range(int(manifest.get("num_steps", -1))):',
       'for i in range(int(manifest.get("num_steps", -1)) - 1):', "a golden loads one step fewer than its manifest says",
       GOLDENS),
    _u("golden_like_first_step", _GOLD, "kept = fingerprint(kept, like[i] if like and i < len(like) else None)",
       "kept = fingerprint(kept, like[0] if like else None)", "every step fingerprinted at step 0's top-k ids", GOLDENS),
    # ---- converters ---------------------------------------------------------------------------------
    _u("conv_repeat_interleave_tiles", "ditto/trt/converters/shuffle.py",
       "    spread = ctx.reshape(x, dims[: dim + 1] + [1] + dims[dim + 1 :])\n"
       "    repeated = expand_to(ctx, spread, dims[: dim + 1] + [repeats] + dims[dim + 1 :])",
       "    spread = ctx.reshape(x, dims[:dim] + [1] + dims[dim:])\n"
       "    repeated = expand_to(ctx, spread, dims[:dim] + [repeats] + dims[dim:])",
       "repeat_interleave lowered as repeat (tiles instead of interleaving)", CONVERTERS),
    _u("conv_full_like_float", "ditto/trt/converters/creation.py",
       "def full_like(ctx, x, value, **_):\n    return filled(ctx, dims_of(ctx, x), value, result_dtype(ctx, ctx.torch_dtype(x.dtype)))",
       "def full_like(ctx, x, value, **_):\n    return filled(ctx, dims_of(ctx, x), value, result_dtype(ctx, torch.float32))",
       "full_like ignores its input's dtype", CONVERTERS_MORE + CONVERTERS),
    _u("conv_symbolic_neg_swapped", "ditto/trt/converters/symbolic.py", 'return size_op(ctx, 0, a, "SUB")',
       'return size_op(ctx, a, 0, "SUB")', "negated symbolic size computed as a - 0", CONVERTERS_MORE + CONVERTERS),
    _u("conv_negative_bound_sub", "ditto/trt/converters/slicing.py", 'value = value if value >= 0 else size_op(ctx, size, value, "SUM")',
       'value = value if value >= 0 else size_op(ctx, size, value, "SUB")', "negative slice bound subtracted from the size",
       CONVERTERS + EDGES),
    _u("conv_split_sizes_shifted", "ditto/trt/converters/slicing.py", "starts = [sum(sizes[:i]) for i in range(len(sizes))]",
       "starts = [sum(sizes[: i + 1]) for i in range(len(sizes))]", "split_with_sizes starts off by one part", CONVERTERS),
    _u("conv_moe_renorm_over_tokens", "ditto/trt/converters/moe.py", 'reduce(ctx, weights, "SUM", [1], True, "weight_sum")',
       'reduce(ctx, weights, "SUM", [0], True, "weight_sum")', "MoE weights renormalised over tokens, not the top-k", MOE),
    # ---- replay layers ------------------------------------------------------------------------------
    _u("replay_fill_first_delta", "ditto/replay/creation.py", 'value = value + (beta[axis].to(call.device) * index)',
       "value = value + (beta[0].to(call.device) * index)", "LINSPACE fill uses the first delta on every axis", LAYERS),
    _u("replay_clip_bounds_swapped", "ditto/replay/elementwise.py", '"CLIP": lambda x, a, b: x.clamp(max=b).clamp(min=a),',
       '"CLIP": lambda x, a, b: x.clamp(max=a).clamp(min=b),', "CLIP's alpha and beta swapped", LAYERS),
    _u("replay_topk_min_max_swapped", "ditto/replay/topk.py", 'largest = call.enum("op", {"MAX": True, "MIN": False})',
       'largest = call.enum("op", {"MAX": False, "MIN": True})', "TopK MAX replayed as MIN", LAYERS + MOE),
    # ---- MoE routing (the op) -----------------------------------------------------------------------
    _u("moe_renorm_branch_flipped", _MOE_OP, "    if normalization_mode == NORMALIZATION_RENORMALIZE:\n        weights = weights / weights",
       "    if normalization_mode == NORMALIZATION_NONE:\n        weights = weights / weights",
       "renormalisation applied to the wrong mode", MOE),
    _u("moe_gate_halves_swapped", _MOE_OP, "linear, gate = h.chunk(2, dim=-1)\n        return linear *",
       "gate, linear = h.chunk(2, dim=-1)\n        return linear *",
       "gated expert MLP takes the gate from the left half", MOE),
    _u("moe_bias_in_weights", _MOE_OP, "weights = scores.gather(-1, experts)", "weights = choice.gather(-1, experts)",
       "the expert bias leaks into the routing weights", MOE),
    # ---- paged cache host inputs ----------------------------------------------------------------------
    _u("cache_past_lengths_per_sequence", "ditto/runtime/paged_cache.py", "return [max(context_lengths) + step] * len(past_lengths)",
       "return list(past_lengths)", "host_past_key_value_lengths fed per sequence, not as TensorRT-LLM's session does",
       CONTRACT),
    _u("cache_window_not_fed", "ditto/runtime/paged_cache.py", "self.windows = [p.sliding_window or max_seq_len for p in attention]",
       "self.windows = [max_seq_len for p in attention]", "the model's attention window not fed to the engine", CONTRACT),
    # ---- loader and probes --------------------------------------------------------------------------
    _u("loader_experts_lexicographic", "ditto/models/conversion.py", "for key in sorted(index, key=dot_natural_key):",
       "for key in sorted(index):", "checkpoint keys sorted as strings: expert 10 stacked before expert 2", LOADING),
    _u("probe_first_node_of_module", "ditto/probes.py", "                last[path] = node\n",
       "                last.setdefault(path, node)\n", "a probe reads the first node inside its module, not the last",
       PARITY),
)
