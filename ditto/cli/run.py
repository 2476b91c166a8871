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
from ditto.cli.progress import stage
from ditto.errors import DittoError


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
    from ditto.dumps import save_steps
    from ditto.models.loader import DTYPES, load_config, load_model, resolve_model_dir
    from ditto.probes import all_probe_names, probe_modules
    from ditto.runtime.backend import StepwiseRequest, get_backend

    directory = resolve_model_dir(args.model)
    if args.max_output_len < 0:
        raise DittoError("--max-output-len must be >= 0")
    output = args.output_dir or Path(os.environ.get("DEBUG_ARTIFACTS_DIR") or "ditto-run")
    fsutil.check_output_dir(output, "--output-dir")  # before the run, whose results would be lost
    check_device(args.device)
    prompts, decode = _tokenize(directory, args.prompt, args.token_ids)
    _check_prompts(prompts, getattr(load_config(directory), "vocab_size", None))
    probes = list(args.probe)
    if args.all_probes:
        loaded = load_model(args.model, args.dtype)
        probes = all_probe_names(probe_modules(loaded.model, load_config(directory).num_hidden_layers))
    backend = get_backend(args.backend)
    reason = backend.unavailable_reason()
    if reason:
        raise DittoError(f"backend {args.backend!r} cannot run here: {reason}")
    request = StepwiseRequest(
        model=args.model, prompts=prompts, steps=args.max_output_len, dtype=DTYPES[args.dtype], probes=probes, device=args.device,
        engine_dir=str(args.engine_dir) if args.engine_dir else None,
    )
    if args.force_tokens_from:
        request.forced_tokens = _forced_tokens(args.force_tokens_from, args.max_output_len, len(prompts))
    with stage(f"run {args.backend} ({len(prompts)} sequences, {args.max_output_len} steps)"):
        dumps = backend.run(request)
    paths = save_steps(output, dumps, fmt=args.format)
    generated = torch.stack([d["logits"].argmax(-1) for d in dumps], dim=1).tolist()
    for b, tokens in enumerate(generated):
        print(f"[{b}] {decode(prompts[b])!r} -> {decode(tokens)!r}")
    print(f"wrote {len(paths)} step dumps to {output}")
    return 0


def _tokenize(directory: Path, texts, token_ids):
    if token_ids:
        try:
            prompts = [[int(t) for t in ids.split(",") if t.strip()] for ids in token_ids]
        except ValueError:
            raise DittoError("--token-ids takes comma-separated integers, e.g. --token-ids 1,2,3") from None
        return prompts, lambda ids: ids
    texts = texts or ["Hey, are you conscious?"]
    has_tokenizer = any((directory / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
    if has_tokenizer:
        from transformers import AutoTokenizer

        try:
            # never the repository's own code: transformers would otherwise ask on stdin, and "y" runs it
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        except ValueError as e:
            if "trust_remote_code" not in str(e):
                raise
            raise DittoError(f"the tokenizer in {directory} needs its own code, which ditto run never executes; "
                             "pass --token-ids instead") from None
        return [tokenizer(t)["input_ids"] for t in texts], tokenizer.decode
    return [list(t.encode()) for t in texts], lambda ids: bytes(i for i in ids if i < 256).decode(errors="replace")


def check_device(device: str, flag: str = "--device") -> None:
    """A torch device this machine has (before loading anything)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DittoError(f"{flag} {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DittoError(f"{flag} {device}: this machine has no usable CUDA device; use {flag} cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DittoError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA devices; "
                             "pick one that exists")
    elif dev.type not in ("cpu", "cuda"):
        raise DittoError(f"{flag} {device}: ditto runs on cpu or cuda")


def _check_prompts(prompts: list[list[int]], vocab_size: int | None) -> None:
    for i, ids in enumerate(prompts):
        if not ids:
            raise DittoError(f"prompt {i} is empty (no tokens); give it some text or token ids")
        if vocab_size is None:
            continue
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise DittoError(f"prompt {i} has token id {bad[0]} outside the vocabulary (0..{vocab_size - 1}); "
                             "use ids the model knows")


def _forced_tokens(folder: Path, steps: int, batch: int) -> list[list[int]]:
    from ditto.dumps import load_steps

    dumps = load_steps(folder)
    if len(dumps) < steps + 1:
        raise DittoError(f"{folder} holds {len(dumps)} steps; --max-output-len {steps} needs {steps + 1}")
    forced = [dumps[s + 1]["input_ids"].tolist() for s in range(steps)]
    if any(len(tokens) != batch for tokens in forced):
        raise DittoError(f"{folder} was run with another number of sequences than the {batch} given here")
    return forced
