"""Architecture sweep: one tiny random model per causal-LM architecture of the installed
transformers, run through ditto's `hf`, `fx` and `replay` backends with forced tokens.

    nice python scripts/arch_sweep.py                 # every architecture, results reused
    nice python scripts/arch_sweep.py --only llama,gemma2 --rerun
    python scripts/arch_sweep.py --table              # print the table from saved results

For each `model_type` in `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES` it shrinks the default config
(2-3 layers, hidden 64, vocab 256, ...; `tiny_config`), instantiates the model with seeded
random weights, `save_pretrained`s it to a temporary directory and compares logits over a
ragged batch of 3 prompts and 4 generation steps: `fx` and `replay` against `hf`, relative
error bound 1e-4 in float32 (the parity tests' bound). Results go to `bench/arch_sweep.json`
(one entry per architecture, reused unless `--rerun`), and the table is printed.

Outcome per architecture: `pass` (fx and replay within bound), `fx only` (replay refused),
`refused` (a DittoError: the message says why), `WRONG` (converted, numbers out of bound:
a bug), `ERROR` (a bare Python exception: a bug), `setup` (transformers itself could not
build or run the tiny model; the detail is transformers' error), or a family excluded from the
target by name, before any config is built (encoder-decoder, encoder-only, multimodal,
recurrent/SSM or hybrid models, speculative-decoding drafters: not attention decoder-only LMs).
The `hf` reference falls back to one sequence at a time, then to whole-sequence steps, for
models that cannot take a padded batch or one new token on their cache (ditto/runtime/hf.py).

    nice python scripts/arch_sweep.py --shard 0/2 --results /tmp/s0.json &   # two side by side
    nice python scripts/arch_sweep.py --shard 1/2 --results /tmp/s1.json
    python scripts/arch_sweep.py --merge /tmp/s0.json /tmp/s1.json           # into bench/arch_sweep.json
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "arch_sweep.json"
TOLERANCE = 1e-4  # float32, relative to max |reference logit| (floor 1), as tests/parity.py
PROMPTS = [[5, 9, 23, 7, 100], [3, 4], [17, 18, 19, 20, 21, 22, 23, 24, 25]]
STEPS = 4

# Families outside "attention decoder-only causal LM" (excluded from the target's denominator).
# Decided from each architecture's modeling file, not from a run.
RECURRENT = {"mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm", "recurrent_gemma"}
HYBRID = {  # attention layers interleaved with SSM / linear-attention / convolution layers
    "bamba", "jamba", "zamba", "zamba2", "falcon_h1", "nemotron_h", "granitemoehybrid", "lfm2", "lfm2_moe",
    "lfm3", "qwen3_next", "kimi_linear", "olmo_hybrid", "bailing_hybrid", "qwen3_5", "qwen3_5_text",
    "qwen3_5_moe", "qwen3_5_moe_text",
    "lara_mini", "qwen4_exp_text",  # gated delta-net (linear attention) layers
    "inkling_text", "inkling2_text", "inkling2_loop_text",  # a short convolution over tokens in every layer
    "zaya",  # convolutional attention: Q/K from a causal convolution with its own conv state
}
# Not standalone LMs: speculative-decoding drafters whose forward reads the target model's
# embeddings and KV states (input_ids are ignored).
DRAFTERS = {"gemma4_assistant", "gemma4_unified_assistant"}
ENCODER_ONLY = {  # bidirectional encoders that transformers can also run as decoders
    "bert", "bert-generation", "big_bird", "camembert", "data2vec-text", "electra", "ernie", "megatron-bert",
    "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "xlm-roberta", "xlm-roberta-xl",
    "xmod", "xlm", "xlnet", "reformer", "modernbert-decoder",
}
MULTIMODAL = {"fuyu", "git", "got_ocr2", "mllama", "phi4_multimodal", "emu3", "moshi", "musicgen", "musicgen_melody",
              "trocr", "whisper", "blt"}

_SIZE_KEYS = {
    ("hidden_size", "n_embd", "d_model", "dim", "model_dim"): 64,
    ("num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads", "decoder_attention_heads"): 4,
    ("intermediate_size", "ffn_dim", "ffn_hidden_size", "d_ff", "encoder_ffn_dim", "decoder_ffn_dim", "dff"): 128,
    ("vocab_size",): 256,
    ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length", "max_sequence_length"): 256,
    ("head_dim", "attention_head_dim", "qk_rope_head_dim"): 16,
    ("rotary_dim",): 8,
    ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"): 4,
    ("num_experts_per_tok", "moe_topk", "top_k", "moe_k"): 2,
    ("moe_intermediate_size", "shared_expert_intermediate_size", "expert_intermediate_size"): 32,
    ("kv_lora_rank",): 16,
    ("q_lora_rank",): 32,
    ("qk_nope_head_dim", "v_head_dim"): 16,
    ("sliding_window", "attention_window_size"): 8,
}
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "decoder_layers", "encoder_layers")
_KV_HEAD_KEYS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num", "num_key_value_groups")
_TOKEN_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id",
               "cls_token_id", "unk_token_id", "mask_token_id")


def family(model_type: str, config) -> str | None:
    """The excluded family of an architecture, or None for an attention decoder-only LM."""
    if model_type in RECURRENT:
        return "recurrent/SSM"
    if model_type in HYBRID:
        return "hybrid (SSM or linear attention layers)"
    if model_type in ENCODER_ONLY:
        return "encoder-only"
    if model_type in MULTIMODAL:
        return "multimodal"
    if model_type in DRAFTERS:
        return "speculative-decoding drafter (reads the target model's states)"
    if config is None:
        return None
    kinds = {str(kind) for kind in getattr(config, "layer_types", None) or []}
    if any(word in kind for kind in kinds for word in ("linear", "mamba", "conv", "recurrent", "delta")):
        return "hybrid (SSM or linear attention layers)"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if any(hasattr(config, key) for key in ("vision_config", "audio_config", "vq_config")):
        return "multimodal"
    return None


# Fields some default configs leave None although the model needs a value (transformers' own
# default config cannot be instantiated then): filled with the tiny size.
_NONE_FILLED = {
    "head_dim": 16, "num_key_value_heads": 2, "n_routed_experts": 4, "num_experts": 4,
    "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
}
# Per-architecture settings the generic shrinking cannot derive, each with the reason.
OVERRIDES = {
    # the modeling file reads attn_config.rope_theta, which the default attention config lacks, and
    # clamps Q/K/V with clip_qkv unconditionally (default None); DBRX's released config clips at 8
    "dbrx": dict(attn_config=dict(kv_n_heads=2, rope_theta=10000.0, clip_qkv=8.0), ffn_config=dict(ffn_hidden_size=128,
                                                                                       moe_num_experts=4, moe_top_k=2)),
    # a looped-depth model: input, recurrent and output layer counts must add up to the layer count
    "dory": dict(num_hidden_layers=3, n_input_layers=1, n_recurrent_layers=1, n_output_layers=1,
                 layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    # the default leaves the shared-expert count None, which the MoE block multiplies by
    "dots1": dict(n_shared_experts=1),
    # its validator wants as many KV heads as query heads; its sliding-window layers take their sizes from
    # swa_* settings the generic shrinking does not see (defaults: 64 heads, LoRA ranks 1024): shrunk as the
    # released model's ratios have them (half the heads of the indexed layers, a wider no-RoPE query/key part)
    "dots3_note_text": dict(num_key_value_heads=4, swa_num_attention_heads=2, swa_num_key_value_heads=2,
                            swa_q_lora_rank=32, swa_kv_lora_rank=16, swa_head_dim=48, swa_qk_nope_head_dim=32,
                            swa_v_head_dim=16),
    # KV-sharing layers count from the end of the stack; none in a 2-layer model
    "gemma3n_text": dict(num_kv_shared_layers=0, vocab_size_per_layer_input=256, hidden_size_per_layer_input=16,
                         altup_num_inputs=2, laurel_rank=8, activation_sparsity_pattern=[0.0, 0.0]),
}


def tiny_config(model_type: str):
    """The default config of `model_type`, shrunk to a few layers of a small width.

    Shrunk consistently: per-layer lists keep one entry per layer, multi-head latent attention
    keeps its KV head count equal to the query head count (it has no grouped KV heads), RoPE
    parameters keyed by layer type get an entry per type, M-RoPE sections (which modeling files
    default for a 128-wide head) sum to the tiny head's rotary half, and fields the default leaves None
    although the model needs them are filled (`_NONE_FILLED`)."""
    from transformers import AutoConfig

    default = AutoConfig.for_model(model_type)
    values = default.to_dict()  # what the config object holds after its own __post_init__ (Dory halves layers)
    for key in values:
        try:
            values[key] = getattr(default, key)
        except Exception:  # per-layer (heterogeneous) configs refuse global reads of per-layer fields
            pass
    kwargs = {}
    for keys, size in _SIZE_KEYS.items():
        for key in keys:
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                kwargs[key] = size
    for key, size in _NONE_FILLED.items():
        if key in values and values[key] is None:
            kwargs[key] = size
    layers = 2
    layer_types = values.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        kinds = list(dict.fromkeys(layer_types))  # one layer of each kind, in order of first use
        kwargs["layer_types"] = kinds + kinds[:1] if len(kinds) == 1 else kinds
        layers = len(kwargs["layer_types"])
    if isinstance(values.get("attention_types"), list):  # GPT-Neo: [[["global", "local"], repeats]]
        kwargs["attention_types"] = [[["global", "local"], 1]]
    for key, size in (("n_group", 2), ("topk_group", 1), ("first_k_dense_replace", 1)):
        # grouped top-k over the 4 tiny experts; one dense layer first, so the MoE layer is reached
        if isinstance(values.get(key), int) and values[key] > size:
            kwargs[key] = size
    default_layers = next((values[k] for k in _LAYER_KEYS if isinstance(values.get(k), int)), None)
    for key, value in values.items():  # other per-layer lists (indexer_types, ...): the first entries
        if key != "layer_types" and key not in kwargs and isinstance(value, list) and len(value) == default_layers:
            kwargs[key] = value[:layers]
    for key in ("global_head_dim",):
        if isinstance(values.get(key), int):
            kwargs[key] = 32
    for key in _LAYER_KEYS:
        if isinstance(values.get(key), int):
            kwargs[key] = layers
    for key in _KV_HEAD_KEYS:
        if isinstance(values.get(key), int):
            kwargs[key] = 2
    for keys, size in _SIZE_KEYS.items():  # per-layer lists (Gemma 3n's intermediate_size): one entry a layer
        for key in keys:
            value = values.get(key)
            if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
                kwargs[key] = [size] * layers
    if isinstance(values.get("kv_lora_rank"), int):  # multi-head latent attention: K/V per query head
        kwargs["num_key_value_heads"] = kwargs.get("num_attention_heads", 4)
        if "qk_head_dim" in values:
            kwargs["qk_head_dim"] = kwargs.get("qk_nope_head_dim", 16) + kwargs.get("qk_rope_head_dim", 16)
        if "head_dim" in values:
            kwargs["head_dim"] = kwargs.get("qk_rope_head_dim", 16)
    rope = values.get("rope_parameters")
    if isinstance(rope, dict) and "rope_type" not in rope and "rope_theta" not in rope:
        kinds = kwargs.get("layer_types") or []
        default_rope = {"rope_type": "default", "rope_theta": 10000.0}
        if kinds:  # keyed by layer type: one entry per type the model uses; None (no RoPE, NoPE) stays None
            kwargs["rope_parameters"] = {
                kind: (dict(rope[kind]) if rope[kind] is not None else None) if kind in rope else dict(default_rope)
                for kind in kinds}
        elif not rope:
            kwargs["rope_parameters"] = default_rope
    if "mrope_section" in (getattr(type(default), "ignore_keys_at_rope_validation", None) or ()):
        # M-RoPE splits the rotary half into (t, h, w) sections, which modeling files default for a
        # 128-wide head (Cohere Compass: [22, 22, 20]; transformers 5.17 fails on a narrower head)
        head_dim = kwargs.get("head_dim") or kwargs["hidden_size"] // kwargs["num_attention_heads"]
        kwargs["rope_parameters"] = _with_mrope_sections(kwargs.get("rope_parameters", rope), head_dim)
    for key in _TOKEN_KEYS:
        value = values.get(key)
        if isinstance(value, int) and value >= 256:
            kwargs[key] = 1
        elif isinstance(value, list):
            kwargs[key] = [v if v < 256 else 1 for v in value]
    kwargs.update(OVERRIDES.get(model_type, {}))
    return AutoConfig.for_model(model_type, **kwargs)


def _with_mrope_sections(rope: dict, head_dim: int) -> dict:
    """`rope` (flat, or keyed by layer type) with M-RoPE sections summing to the rotary half of
    `head_dim` (partial rotary counted), split about as [22, 22, 20] splits 64."""
    def with_sections(entry: dict) -> dict:
        half = int(head_dim * entry.get("partial_rotary_factor", 1.0)) // 2
        return dict(entry, mrope_section=[half * 3 // 8, half * 3 // 8, half - 2 * (half * 3 // 8)])

    if "rope_type" in rope or "rope_theta" in rope:
        return with_sections(rope)
    return {kind: None if entry is None else with_sections(entry) for kind, entry in rope.items()}


def run_one(model_type: str) -> dict:
    from transformers import AutoModelForCausalLM

    from ditto.errors import DittoError
    from ditto.runtime.backend import StepwiseRequest, get_backend

    excluded = family(model_type, None)
    if excluded:
        return dict(outcome="excluded", detail=excluded)
    try:
        config = tiny_config(model_type)
    except Exception as e:
        return dict(outcome="setup", detail=f"config: {type(e).__name__}: {_first_line(e)}")
    excluded = family(model_type, config)
    if excluded:
        return dict(outcome="excluded", detail=excluded)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config).eval()
            with torch.no_grad():  # larger random weights than the init: differences show
                for p in model.parameters():
                    if p.dim() > 1:
                        p.normal_(0, 0.1)
            model.save_pretrained(tmp)
            del model
            request = StepwiseRequest(model=tmp, prompts=PROMPTS, steps=STEPS, probes=[])
            reference = get_backend("hf").run(request)
        except Exception as e:
            return dict(outcome="setup", detail=f"hf: {type(e).__name__}: {_first_line(e)}")
        request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
        result = {}
        for backend in ("fx", "replay"):
            start = time.time()
            try:
                dumps = get_backend(backend).run(request)
            except DittoError as e:
                result[backend] = dict(outcome="refused", detail=_first_line(e))
            except Exception as e:
                tb = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{Path(tb.filename).name}:{tb.lineno}"
                result[backend] = dict(outcome="ERROR", detail=f"{type(e).__name__} at {where}: {_first_line(e)}")
            else:
                error = _worst(reference, dumps)
                outcome = "pass" if error <= TOLERANCE else "WRONG"
                result[backend] = dict(outcome=outcome, detail=f"max rel error {error:.2e}")
            result[backend]["seconds"] = round(time.time() - start, 1)
            if result[backend]["outcome"] != "pass":
                break
    fx, replay = result["fx"], result.get("replay")
    if fx["outcome"] != "pass":
        return dict(outcome=fx["outcome"], detail=f"fx: {fx['detail']}", backends=result)
    if replay["outcome"] != "pass":
        outcome = "fx only" if replay["outcome"] == "refused" else replay["outcome"]
        return dict(outcome=outcome, detail=f"replay: {replay['detail']}", backends=result)
    return dict(outcome="pass", detail=f"fx {fx['detail']}; replay {replay['detail']}", backends=result)


def _worst(reference, dumps) -> float:
    worst = 0.0
    for ref, got in zip(reference, dumps):
        value = ref["logits"].float()
        scale = max(1.0, value.abs().max().item())
        worst = max(worst, (got["logits"].float() - value).abs().max().item() / scale)
    return worst


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else repr(e))
    # the pass manager's prefix ("pass NAME (round 1, after ...): ") would push the reason past the cut
    text = re.sub(r"^pass \S+ \(round [^)]*\): ", "", text)
    return text[:300]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def print_table(results: dict) -> None:
    target = {k: v for k, v in results.items() if v["outcome"] != "excluded"}
    testable = {k: v for k, v in target.items() if v["outcome"] != "setup"}
    passed = sum(v["outcome"] == "pass" for v in testable.values())
    print("| architecture | outcome | detail |")
    print("| --- | --- | --- |")
    for name, v in sorted(results.items(), key=lambda kv: (kv[1]["outcome"] == "excluded", kv[1]["outcome"], kv[0])):
        print(f"| {name} | {v['outcome']} | {v['detail'].replace('|', '/')} |")
    print()
    print(f"attention decoder-only architectures: {len(target)} ({len(target) - len(testable)} could not be "
          f"built tiny by transformers); pass hf,fx,replay: {passed}/{len(testable)} "
          f"({100.0 * passed / max(1, len(testable)):.0f}%)")


# detail text -> short reason, for the README's grouped table (first match wins)
_REASONS = [
    (r"experts\.gate_up_proj|experts\.\d", "MoE (packed experts; issue 11 part 2)"),
    (r"dynamic_shapes.*top-level keys", "export assumes the forward signature (issue 11 part 4)"),
    (r"routing computes none of the known routers", "MoE router TensorRT-LLM has no mode for (e.g. expert bias on the raw logits)"),
    (r"expert activation is none of", "MoE expert activation TensorRT-LLM's MoE has none for (e.g. clamped SwiGLU)"),
    (r"cannot remove the in-place op", "an in-place update of a view (functionalisation refuses it)"),
    (r"expert projections are not applied one after the other",
     "MoE experts in a form the MoE pass does not recognise (gpt-oss: interleaved gate/up, clamped)"),
    (r"no pattern matched the top-k", "MoE experts outside transformers' batched implementation"),
    (r"pairs of tokens", "a second reader of the attention scores (attention sink)"),
    (r"no pattern matched .*softmax", "softmax outside a recognised attention (ALiBi, sinks, other score terms)"),
    (r"different KV-head shapes", "layers with different KV head shapes (one KV pool only)"),
    (r"mask depends on the token values", "mask computed from token values"),
    (r"no list of decoder layers for", "decoder layers run in loops (more attention calls than decoder layers; Dory's recurrent depth)"),
    (r"computed by projections chosen per token", "token-routed attention (a mixture of attention heads: JetMoE's MoA)"),
    (r"long-RoPE", "long-RoPE (issue 9 defect 4)"),
    (r"RoPE is applied to only one", "RoPE found on the query only (attention experts)"),
    (r"picks among the tokens|sparse attention: ", "sparse attention (an indexer's top-k over tokens)"),
    (r"multi-head latent attention", "multi-head latent attention (MLA: value head size differs from query/key)"),
    (r"torch\.export failed.*data-dependent", "torch.export: a branch or loop on tensor values (MoE experts looped over the picked experts)"),
    (r"torch\.export failed.*Constraints violated", "torch.export: the forward fixes the token count (prompt tokens prepended)"),
    (r"does not reproduce the graph", "RoPE not reproduced (a normalisation between RoPE and attention, e.g. nGPT / QK-norm after RoPE)"),
    (r"no converter", "a missing converter"),
]


def _reason(detail: str) -> str:
    import re

    for pattern, reason in _REASONS:
        if re.search(pattern, detail):
            return reason
    return detail.split(": ", 1)[-1][:120]


def print_markdown(results: dict) -> None:
    """The README table: architectures grouped by outcome and reason."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, v in results.items():
        outcome = v["outcome"]
        if outcome == "pass":
            key = ("converted: hf, fx, replay agree (1e-4)", "")
        elif outcome == "excluded":
            key = ("not an attention decoder-only LM", v["detail"])
        elif outcome == "setup":
            key = ("transformers cannot run the tiny model", v["detail"].split(": ", 1)[-1][:160])
        elif outcome == "fx only":
            key = ("converted: fx only, replay refused", _reason(v["detail"]))
        else:
            key = (outcome if outcome in ("WRONG", "ERROR") else "refused (DittoError)", _reason(v["detail"]))
        groups.setdefault(key, []).append(name)
    order = ["converted: hf, fx, replay agree (1e-4)", "converted: fx only, replay refused", "refused (DittoError)",
             "WRONG", "ERROR", "transformers cannot run the tiny model", "not an attention decoder-only LM"]
    print("| outcome | why | architectures |")
    print("| --- | --- | --- |")
    for (outcome, reason), names in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), -len(kv[1]))):
        print(f"| {outcome} ({len(names)}) | {reason} | {', '.join(sorted(names))} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated model types")
    parser.add_argument("--rerun", action="store_true", help="ignore saved results for the selected types")
    parser.add_argument("--table", action="store_true", help="only print the table of saved results")
    parser.add_argument("--markdown", action="store_true", help="print the README's grouped table of saved results")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per architecture")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (default %(default)s)")
    parser.add_argument("--shard", help="K/N: only every N-th selected type from the K-th (0-based), for running N "
                        "sweeps side by side, each with its own --results; merge them with --merge")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="results files to merge into --results")
    args = parser.parse_args(argv)
    results_file = args.results
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if args.merge:
        for other in args.merge:
            results.update(json.loads(other.read_text()))
        results_file.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.markdown:
        print_markdown(results)
        return 0
    if not args.table and not args.merge:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        types = args.only.split(",") if args.only else sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        if args.shard:
            k, n = (int(v) for v in args.shard.split("/"))
            if not 0 <= k < n:  # 0-based: 2/2 would silently skip the first type
                parser.error(f"--shard {args.shard}: K counts from 0, so 0 <= K < N (e.g. 0/2 and 1/2)")
            types = types[k::n]
        signal.signal(signal.SIGALRM, _alarm)
        for model_type in types:
            if model_type in results and not args.rerun:
                continue
            start = time.time()
            signal.alarm(args.timeout)
            try:
                result = run_one(model_type)
            except _Timeout:
                result = dict(outcome="setup", detail=f"timed out after {args.timeout} s")
            finally:
                signal.alarm(0)
            result["seconds"] = round(time.time() - start, 1)
            results[model_type] = result
            print(f"{model_type}: {result['outcome']}: {result['detail']} ({result['seconds']} s)", flush=True)
            results_file.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
