"""Stepwise inference on ditto's own backends, writing one step dump per step.

The seed's debugging flow on any machine: `ditto run` twice (e.g. fx in float32 and in
float16), then `ditto compare` on the two dump folders. Prompts are tokenized with the
model's tokenizer when its directory has one; otherwise (the built-in tiny models) the
UTF-8 bytes of the prompt are the token ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ditto import fsutil
from ditto.errors import DittoError
from ditto.runtime.request import check_device


def add_arguments(parser) -> None:
    parser.add_argument("model", help="HF model directory, hub id in the local cache, or a built-in tiny name")
    parser.add_argument("--backend", default="fx", help="backend to run: fx (default), replay, hf, ditto, trtllm")
    parser.add_argument("--engine-dir", type=Path, help="the engine directory the ditto and trtllm backends run")
    parser.add_argument("--prompt", action="append", help="input text (repeatable: one sequence each)")
    parser.add_argument("--token-ids", action="append", help="comma-separated token ids instead of --prompt (repeatable)")
    parser.add_argument("--max-output-len", type=int, default=10, help="generation steps after the context step (default 10)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cpu", help="torch device for the torch backends (default cpu)")
    parser.add_argument("--probe", action="append", default=[], help="extra output by meaning: layers.0.attn, final_norm, ... (repeatable)")
    parser.add_argument("--all-probes", action="store_true", help="dump every probe of every layer")
    parser.add_argument(
        "--output-dir", type=Path, help="where step{i}.pt go (default: $DEBUG_ARTIFACTS_DIR, else ./ditto-run)"
    )
    parser.add_argument(
        "--force-tokens-from",
        type=Path,
        metavar="DUMP_DIR",
        help="feed the generated tokens of an earlier run (its step dumps) instead of this run's own greedy choice",
    )
    parser.add_argument("--format", choices=["pt", "safetensors"], default="pt", help="step dump format (default pt)")


def run(args) -> int:
    from ditto.api import run as run_backend
    from ditto.cli.progress import show
    from ditto.dumps import save_steps
    from ditto.models.loader import resolve_model_dir
    from ditto.runtime.request import forced_tokens, tokenize

    directory = resolve_model_dir(args.model)
    if args.max_output_len < 0:
        raise DittoError("--max-output-len must be >= 0")
    output = args.output_dir or Path(os.environ.get("DEBUG_ARTIFACTS_DIR") or "ditto-run")
    fsutil.check_output_dir(output, "--output-dir")  # before the run, whose results would be lost
    check_device(args.device)
    prompts, decode = tokenize(directory, args.prompt, args.token_ids)
    forced = forced_tokens(args.force_tokens_from, args.max_output_len, len(prompts)) if args.force_tokens_from else None
    dumps = run_backend(args.model, prompts, backend=args.backend, steps=args.max_output_len, dtype=args.dtype,
                        probes=args.probe, all_probes=args.all_probes, device=args.device, engine_dir=args.engine_dir,
                        forced_tokens=forced, progress=show)
    paths = save_steps(output, dumps, fmt=args.format)
    generated = torch.stack([d["logits"].argmax(-1) for d in dumps], dim=1).tolist()
    for b, tokens in enumerate(generated):
        print(f"[{b}] {decode(prompts[b])!r} -> {decode(tokens)!r}")
    print(f"wrote {len(paths)} step dumps to {output}")
    return 0
