"""Benchmark: per-decode-step time and peak GPU memory of the torch backends against HF `generate`.

    python bench/decode_step_time.py                 # Llama-3.1-8B shape on the GPU (about 10 min)
    python bench/decode_step_time.py --tiny          # a small shape, anywhere (smoke test)

A Llama-3.1-8B-shaped model (hidden 4096, 32 layers, 32/8 heads, intermediate 14336, vocab
128256, llama3 RoPE scaling) with random bfloat16 weights is created on the device and saved;
batch of 8 prompts of 128 tokens, 64 generation steps. In one process, side by side:

- HF `generate` (sdpa, KV cache, greedy) on the model object: the yardstick;
- the `hf` backend (batched mode), the `fx` backend: the same model loaded from disk;
- `replay` (ditto's TensorRT network replayed in torch) and `fx` again, at `--replay-layers`
  layers (replay walks thousands of network layers per step in Python, so it is timed on a
  shallower model of the same shape and compared with `fx` at that depth).

Each is run once to warm up (loads, caches), then 3 times with `--steps` generation steps and
3 times with none (the context step alone); per decode step = (best full - best context
only) / steps. The spread is (worst - best) / best of the full runs. Peak GPU memory is
`max_memory_allocated` from before the backend loads anything to the end of its runs, with
every other backend's caches freed, less what was allocated before it started (not its own);
the yardstick is generate's (its model is created on the device). Targets (issue 10): fx and hf <= 1.5x generate per decode step, replay <= 3x fx,
peak memory of each <= 1.2x generate's.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time

import torch


def llama_config(layers: int, tiny: bool):
    from transformers import LlamaConfig

    if tiny:
        return LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=layers,
                           num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                           rope_theta=500000.0, tie_word_embeddings=False)
    return LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
    )


def create_model(config, folder: str, device: str, dtype: torch.dtype):
    """Random weights made on the device (fast), saved to `folder`; returns the model."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder)
    return model.eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    import ditto.replay.backend as replay_backend
    import ditto.runtime.fx as fx
    import ditto.runtime.hf as hf

    hf._model.cache_clear()
    fx._program.cache_clear()
    replay_backend.prepared.cache_clear()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure(name: str, layers: int, run, steps: int, repeats: int, device: str) -> dict:
    """run(steps) runs one request of `steps` generation steps; returns the last full run's output."""
    base = torch.cuda.memory_allocated() if device.startswith("cuda") else 0  # not this backend's
    if base:
        print(f"    allocated before {name} loads: {base / 2**30:.2f} GiB (not counted in its peak)", flush=True)
    run(steps)  # warm-up: loads, caches, kernels
    full, context = [], []
    out = None
    for _ in range(repeats):
        for count, times in ((steps, full), (0, context)):
            sync(device)
            start = time.perf_counter()
            result = run(count)
            sync(device)
            times.append(time.perf_counter() - start)
            if count == steps:
                out = result
    peak = torch.cuda.max_memory_allocated() - base if device.startswith("cuda") else 0
    per_step = (min(full) - min(context)) / steps
    row = dict(name=name, layers=layers, per_step=per_step, full=min(full), context=min(context),
               spread=(max(full) - min(full)) / min(full), peak=peak, output=out)
    print(f"  {name} ({layers} layers): {per_step * 1e3:.1f} ms/step, full {min(full):.2f} s "
          f"(spread {row['spread']:.1%}), context {min(context):.3f} s, peak {peak / 2**30:.2f} GiB", flush=True)
    return row


def backend_runner(backend_name: str, folder: str, prompts, dtype, device):
    from ditto.runtime.backend import StepwiseRequest, get_backend

    backend = get_backend(backend_name)

    def run(steps: int):
        dumps = backend.run(StepwiseRequest(model=folder, prompts=prompts, steps=steps, dtype=dtype, device=device))
        plan = getattr(backend, "last_plan", None)
        if plan is not None and steps:
            print(f"    replay keeps {plan.kept_bytes() / 2**30:.2f} GiB of constants on the device", flush=True)
        return dumps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--replay-layers", type=int, default=8, help="0 skips replay")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a small model, batch 2, 16-token prompts, 4 steps")
    parser.add_argument("--skip", default="", help="comma-separated rows to skip: generate,hf,fx,replay")
    args = parser.parse_args()
    if args.tiny:
        args.layers, args.replay_layers = min(args.layers, 2), min(args.replay_layers, 2)
        args.batch, args.prompt, args.steps = 2, 16, 4
    skip = set(filter(None, args.skip.split(",")))
    dtype, device = torch.bfloat16, args.device
    torch.backends.cuda.matmul.allow_tf32 = False
    config = llama_config(args.layers, args.tiny)
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=gen)
    print(f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}), "
          f"torch {torch.__version__}, bfloat16, batch {args.batch}, prompts {args.prompt}, steps {args.steps}, "
          f"best of {args.repeats}", flush=True)
    rows, weights = [], 0
    if not {"generate", "hf", "fx"} <= skip:
        with tempfile.TemporaryDirectory() as folder:
            free(device)
            model = create_model(config, folder, device, dtype)
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            print(f"model: {args.layers} layers, weights {weights / 2**30:.2f} GiB", flush=True)
            if "generate" not in skip:
                ids = prompts.to(device)
                mask = torch.ones_like(ids)

                def generate(steps: int):
                    with torch.inference_mode():
                        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps + 1,
                                              min_new_tokens=steps + 1, do_sample=False, use_cache=True)

                rows.append(measure("HF generate (sdpa)", args.layers, generate, args.steps, args.repeats, device))
            del model
            free(device)
            for name in ("hf", "fx"):
                if name in skip:
                    continue
                run = backend_runner(name, folder, prompts.tolist(), dtype, device)
                rows.append(measure(f"{name} backend", args.layers, run, args.steps, args.repeats, device))
                free(device)
    if args.replay_layers and "replay" not in skip:
        with tempfile.TemporaryDirectory() as folder:
            shallow = llama_config(args.replay_layers, args.tiny)
            model = create_model(shallow, folder, device, dtype)
            small = sum(p.numel() * p.element_size() for p in model.parameters())
            del model
            free(device)
            print(f"model: {args.replay_layers} layers, weights {small / 2**30:.2f} GiB", flush=True)
            for name in ("replay", "fx"):  # replay first: its peak cannot include anything fx left
                run = backend_runner(name, folder, prompts.tolist(), dtype, device)
                row = measure(f"{name} backend", args.replay_layers, run, args.steps, args.repeats, device)
                row["weights"] = small
                rows.append(row)
                free(device)
    report(rows, weights)


def report(rows: list[dict], weights: int) -> None:
    generate = next((r for r in rows if r["name"].startswith("HF generate")), None)
    print("\n| backend | layers | per decode step ms | full run s (spread) | context step s | vs generate | "
          "vs fx (same depth) | peak GiB | peak / generate | peak / weights |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        fx = next((o for o in rows if o["name"] == "fx backend" and o["layers"] == r["layers"]), None)
        same_depth = generate is not None and generate["layers"] == r["layers"]
        vs_gen = f"{r['per_step'] / generate['per_step']:.2f}x" if same_depth else "-"
        vs_fx = f"{r['per_step'] / fx['per_step']:.2f}x" if fx is not None and fx is not r else "-"
        peak_gen = f"{r['peak'] / generate['peak']:.2f}x" if same_depth and generate["peak"] else "-"
        own = r.get("weights", weights) or 1
        print(f"| {r['name']} | {r['layers']} | {r['per_step'] * 1e3:.1f} | {r['full']:.2f} ({r['spread']:.1%}) | "
              f"{r['context']:.3f} | {vs_gen} | {vs_fx} | {r['peak'] / 2**30:.2f} | {peak_gen} | "
              f"{r['peak'] / own:.2f}x |")
    agreement(rows)


def agreement(rows: list[dict]) -> None:
    """Worst logit difference between backends run on the same model (greedy, so the tokens
    may part ways late; only the context step is compared)."""
    by_depth: dict[int, dict] = {}
    for r in rows:
        if isinstance(r["output"], list):
            by_depth.setdefault(r["layers"], {})[r["name"]] = r["output"][0]["logits"]
    for layers, outputs in by_depth.items():
        names = sorted(outputs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                scale = outputs[a].abs().max().item()
                error = (outputs[a] - outputs[b]).abs().max().item()
                print(f"context-step logits, {layers} layers, {a} vs {b}: max abs diff {error:.3g} "
                      f"(max |logit| {scale:.3g})")


if __name__ == "__main__":
    main()
