"""What a stepwise run is asked, checked before any work: prompts as token ids (text tokenized by
the model's own tokenizer, else its UTF-8 bytes), a device this machine has, tokens forced from
an earlier run's dumps. Shared by `ditto.run`, `ditto run` and the pytest harness."""

from __future__ import annotations

from pathlib import Path

import torch

from ditto.errors import DittoError


def tokenize(directory: Path, texts, token_ids):
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


def check_prompts(prompts: list[list[int]], vocab_size: int | None) -> None:
    for i, ids in enumerate(prompts):
        if not ids:
            raise DittoError(f"prompt {i} is empty (no tokens); give it some text or token ids")
        if vocab_size is None:
            continue
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise DittoError(f"prompt {i} has token id {bad[0]} outside the vocabulary (0..{vocab_size - 1}); "
                             "use ids the model knows")


def forced_tokens(folder: Path, steps: int, batch: int) -> list[list[int]]:
    from ditto.dumps import load_steps

    dumps = load_steps(folder)
    if len(dumps) < steps + 1:
        raise DittoError(f"{folder} holds {len(dumps)} steps; --max-output-len {steps} needs {steps + 1}")
    forced = [dumps[s + 1]["input_ids"].tolist() for s in range(steps)]
    if any(len(tokens) != batch for tokens in forced):
        raise DittoError(f"{folder} was run with another number of sequences than the {batch} given here")
    return forced
