"""Benchmark: step time of the `fx` backend against the `hf` backend, side by side in one run.

    python bench/backends_step_time.py [--device cuda] [--dtype bfloat16] [--layers 8]

A Llama-style model with random weights (hidden 2048, 16 heads / 4 KV heads, `--layers`
layers) is written to a temp folder; both backends run the same forced request (batch of 4
ragged prompts, 32 generation steps). Prints seconds per run of each (best of 3 after a
warm-up) and the ratio fx / hf, plus the worst logit error between them.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM

    from ditto.runtime.backend import StepwiseRequest, get_backend

    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=args.layers,
                             num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048)
        LlamaForCausalLM(config).to(dtype).save_pretrained(folder)
        gen = torch.Generator().manual_seed(0)
        prompts = [torch.randint(0, 32000, (n,), generator=gen).tolist() for n in (100, 37, 128, 64)]
        request = StepwiseRequest(model=folder, prompts=prompts, steps=args.steps, dtype=dtype, device=args.device)
        hf, fx = get_backend("hf"), get_backend("fx")
        reference = hf.run(request)
        request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
        times = {}
        for name, backend in (("hf", hf), ("fx", fx)):
            backend.run(request)  # warm-up (loads, compiles nothing)
            best = float("inf")
            for _ in range(3):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                dumps = backend.run(request)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            times[name] = (best, dumps)
        error = max((a["logits"] - b["logits"]).abs().max().item() for a, b in zip(times["hf"][1], times["fx"][1]))
        scale = max(d["logits"].abs().max().item() for d in times["hf"][1])
        print(f"device {args.device} dtype {args.dtype} layers {args.layers} steps {args.steps} batch 4")
        print(f"hf: {times['hf'][0]:.2f}s  fx: {times['fx'][0]:.2f}s  ratio fx/hf: {times['fx'][0] / times['hf'][0]:.2f}")
        print(f"worst logit error fx vs hf: {error:.3g} (max |logit| {scale:.3g})")


if __name__ == "__main__":
    main()
