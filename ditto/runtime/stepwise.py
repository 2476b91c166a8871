"""The step loop shared by ditto's graph backends: context step, then forced generation steps."""

from __future__ import annotations

from typing import Callable

import torch

from ditto.runtime.backend import StepDump, StepwiseRequest
from ditto.runtime.paged_cache import UNDUMPED_INPUTS, PagedKVCache

# runs one step: engine inputs -> {"logits": [batch, vocab] float32, probe name: value}
StepFunction = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def refuse_beyond_limit(program, request: StepwiseRequest) -> None:
    """Refuse a request whose longest sequence (prompt + steps, as an engine's max_seq_len counts it) is
    longer than the program's `sequence_limit` (ditto.program.SequenceLimit): past it the graph would
    compute something other than the model."""
    if program.sequence_limit is not None:
        program.sequence_limit.check(max(len(p) for p in request.prompts) + request.steps,
                                     "the request's longest sequence (prompt + steps)",
                                     "use shorter prompts or fewer steps")


def run_steps(request: StepwiseRequest, cache: PagedKVCache, step: StepFunction) -> list[StepDump]:
    prompts = request.prompts
    context_lengths = [len(p) for p in prompts]
    past = [0] * len(prompts)
    new_tokens = [list(p) for p in prompts]
    dumps: list[StepDump] = []
    for index in range(request.steps + 1):
        inputs = cache.step_inputs(new_tokens, past, context_lengths, is_context=index == 0, device=request.device)
        outputs = step(inputs)
        dump = {k: v.detach().cpu() for k, v in inputs.items() if k not in UNDUMPED_INPUTS}
        dump.update({k: v.detach().cpu() for k, v in outputs.items()})
        dumps.append(dump)
        past = [p + len(t) for p, t in zip(past, new_tokens)]
        if index < request.steps:
            new_tokens = [[t] for t in next_tokens(request, index, outputs["logits"])]
    return dumps


def next_tokens(request: StepwiseRequest, step: int, logits: torch.Tensor) -> list[int]:
    """The tokens fed at generation step `step`: forced ones, else greedy."""
    if request.forced_tokens is not None:
        return list(request.forced_tokens[step])
    return logits.argmax(dim=-1).tolist()
