"""The `hf` backend: the Hugging Face model itself, the reference every backend meets.

Two ways to run it (`DITTO_HF_MODE`):

- `batched` (default): the whole batch in one forward per step, as `generate` runs it:
  prompts left-padded with an attention mask, each token at its own position, one KV cache
  for the batch, the model's usual attention implementation (sdpa where the model has it).
- `eager`: each sequence on its own (batch of one, eager attention), so no padding or
  masking choice can touch the result; slow on GPUs. tests/runtime/test_hf_modes.py shows the two
  agree within the project's bound.

The model makes its own KV cache at the first step (some have their own cache class: MiniMax,
DeepSeek-V3.2's indexer cache) and gets it back at every later step. A model without a KV cache
(OpenAI-GPT) re-runs the whole sequence at every step. In `batched` mode, a model whose forward
cannot take the left-padded batch (it raises) is run one sequence at a time instead, and one
whose cache cannot take one new token at a time (CPM-Ant re-reads the whole sequence) is
re-run on the whole sequence at every step, each with a warning: the reference stays the
model's own result, only the batching and caching change.

Probes come from forward hooks on the modules `ditto.probes` names; per step they are packed
like the engine's tokens (padding dropped).
"""

from __future__ import annotations

import functools
import inspect
import logging

import torch

from ditto.errors import DittoError
from ditto.models.attention_impl import cannot_compute, guarded_sdpa
from ditto.models.loader import dtype_kwarg, load_config, resolve_model_dir
from ditto.probes import check_probes, probe_modules
from ditto.runtime.backend import StepDump, StepwiseRequest, env_choice, register_backend
from ditto.runtime.stepwise import next_tokens

MODES = ("batched", "eager")
_log = logging.getLogger(__name__)


def hf_mode() -> str:
    return env_choice("DITTO_HF_MODE", MODES, "a mode of the hf backend")


@functools.lru_cache(maxsize=4)
def _model(model: str, dtype: torch.dtype, device: str, attention: str):
    from transformers import AutoModelForCausalLM

    directory = resolve_model_dir(model)
    config = load_config(directory)
    kwargs = dict(**dtype_kwarg(dtype), local_files_only=True)
    try:
        hf = AutoModelForCausalLM.from_pretrained(directory, **kwargs, attn_implementation=attention)
    except ValueError:  # a model class without sdpa support: its eager attention takes masks too
        if attention == "eager":
            raise
        hf = AutoModelForCausalLM.from_pretrained(directory, **kwargs, attn_implementation="eager")
    hf.to(device).eval()
    return hf, probe_modules(hf, config.num_hidden_layers)


@register_backend("hf")
class HfBackend:
    def __init__(self, mode: str | None = None):
        self.mode = mode or hf_mode()
        if self.mode not in MODES:
            raise DittoError(f"hf backend mode {self.mode!r}; use one of {', '.join(MODES)}")

    def unavailable_reason(self) -> str | None:
        return None

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        if self.mode != "batched":
            return self._run(request, "eager")
        try:
            with guarded_sdpa():
                return self._run(request, "sdpa")
        except Exception as e:
            reason = cannot_compute(e)
            if reason is None:
                raise
            # SDPA would compute another model (ditto.models.attention_impl): the batch on eager attention
            _log.warning("hf: %s; running the batch with eager attention", reason)
            return self._run(request, "eager")

    def _run(self, request: StepwiseRequest, attention: str) -> list[StepDump]:
        model, modules = _model(request.model, request.dtype, request.device, attention)
        probes = check_probes(request.probes, modules, request.model)
        captured: dict[str, torch.Tensor] = {}
        hooks = []
        for probe in probes:
            module = model.get_submodule(modules[probe])

            def hook(_module, _args, output, probe=probe):
                value = output[0] if isinstance(output, (tuple, list)) else output
                captured[probe] = value.detach()

            hooks.append(module.register_forward_hook(hook))
        try:
            if self.mode == "batched":
                try:
                    return self._batched_steps(model, request, probes, captured)
                except _MODEL_ERRORS as e:
                    _warn(model, "a left-padded batch", e, "one sequence at a time")
                    captured.clear()
            try:
                return self._steps(model, request, probes, captured)
            except _MODEL_ERRORS as e:
                if _cache_kwarg(model) is None:
                    raise
                _warn(model, "one token at a time on its KV cache", e, "the whole sequence at every step")
                captured.clear()
                return self._steps(model, request, probes, captured, use_cache=False)
        finally:
            for h in hooks:
                h.remove()

    def _batched_steps(self, model, request, probes, captured) -> list[StepDump]:
        """One forward per step for the whole batch, left-padded, as `generate` runs it."""
        device = request.device
        parameters = inspect.signature(model.forward).parameters
        cache_kwarg = _cache_kwarg(model)
        extra = {}
        if "logits_to_keep" in parameters:
            extra["logits_to_keep"] = 1  # only the last position's logits, as generate asks
        counts = [len(p) for p in request.prompts]
        width = max(counts)
        ids = torch.zeros((len(counts), width), dtype=torch.long)
        mask = torch.zeros((len(counts), width), dtype=torch.long)
        positions = torch.ones((len(counts), width), dtype=torch.long)  # padding at 1, as generate
        for b, prompt in enumerate(request.prompts):
            ids[b, width - len(prompt) :] = torch.tensor(prompt)
            mask[b, width - len(prompt) :] = 1
            positions[b, width - len(prompt) :] = torch.arange(len(prompt))
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        new_tokens = [list(p) for p in request.prompts]
        past = [0] * len(counts)
        dumps = []
        for index in range(request.steps + 1):
            with torch.inference_mode():
                if cache_kwarg is None:  # no KV cache: the whole (padded) sequence again
                    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra)
                else:
                    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
                    extra[cache_kwarg] = _returned_cache(out)
            i32 = dict(dtype=torch.int32)
            dump = {
                "input_ids": torch.tensor([t for seq in new_tokens for t in seq], **i32),
                "position_ids": torch.cat([torch.arange(p, p + len(t), **i32) for p, t in zip(past, new_tokens)]),
                "logits": out.logits[:, -1].float().cpu(),
            }
            for p in probes:
                # [batch, width, features], left-padded (some modules, MoE blocks, give [batch * width, features])
                value = captured[p].reshape(len(new_tokens), -1, captured[p].shape[-1])
                rows = [value[b, value.shape[1] - len(t) :] for b, t in enumerate(new_tokens)]
                dump[p] = torch.cat(rows).reshape(-1, value.shape[-1]).cpu()
            dumps.append(dump)
            past = [p + len(t) for p, t in zip(past, new_tokens)]
            if index < request.steps:
                new_tokens = [[t] for t in next_tokens(request, index, dump["logits"])]
                new_ids = torch.tensor(new_tokens, device=device)
                new_positions = torch.tensor([[p] for p in past], device=device)
                if cache_kwarg is None:
                    ids, positions = torch.cat((ids, new_ids), dim=1), torch.cat((positions, new_positions), dim=1)
                else:
                    ids, positions = new_ids, new_positions
                mask = torch.cat((mask, mask.new_ones((len(counts), 1))), dim=1)
        return dumps

    def _steps(self, model, request, probes, captured, use_cache: bool = True) -> list[StepDump]:
        """Each sequence on its own: batch of one, no padding, no mask (without `use_cache`,
        or for a model without a KV cache, the whole sequence at every step)."""
        device = request.device
        cache_kwarg = _cache_kwarg(model) if use_cache else None
        caches = [None for _ in request.prompts]
        new_tokens = [list(p) for p in request.prompts]
        past = [0] * len(request.prompts)
        seen: list[list[int]] = [[] for _ in request.prompts]
        dumps = []
        for index in range(request.steps + 1):
            logits, values = [], {p: [] for p in probes}
            for b, tokens in enumerate(new_tokens):
                start = 0 if cache_kwarg is None else past[b]  # no KV cache: the whole sequence again
                sequence = seen[b] + tokens if cache_kwarg is None else tokens
                ids = torch.tensor([sequence], device=device)
                positions = torch.arange(start, past[b] + len(tokens), device=device)[None]
                with torch.no_grad():
                    if cache_kwarg is None:
                        out = model(input_ids=ids, position_ids=positions)
                    else:
                        kwargs = {} if caches[b] is None else {cache_kwarg: caches[b]}
                        out = model(input_ids=ids, position_ids=positions, use_cache=True, **kwargs)
                        caches[b] = _returned_cache(out)
                logits.append(out.logits[0, -1].float())
                for p in probes:
                    value = captured[p].reshape(-1, captured[p].shape[-1])
                    values[p].append(value[value.shape[0] - len(tokens) :])
            i32 = dict(dtype=torch.int32)
            dump = {
                "input_ids": torch.tensor([t for seq in new_tokens for t in seq], **i32),
                "position_ids": torch.cat([torch.arange(p, p + len(t), **i32) for p, t in zip(past, new_tokens)]),
                "logits": torch.stack(logits).cpu(),
            }
            dump.update({p: torch.cat(v).cpu() for p, v in values.items()})
            dumps.append(dump)
            past = [p + len(t) for p, t in zip(past, new_tokens)]
            seen = [s + t for s, t in zip(seen, new_tokens)]
            if index < request.steps:
                new_tokens = [[t] for t in next_tokens(request, index, dump["logits"])]
        return dumps


_MODEL_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def _warn(model, what: str, e: Exception, instead: str) -> None:
    first = str(e).splitlines()[0] if str(e) else ""
    _log.warning("hf: %s cannot run %s (%s: %s); running %s instead", type(model).__name__, what,
                 type(e).__name__, first, instead)


def _cache_kwarg(model) -> str | None:
    """The forward's KV-cache argument (transformers >= 5.2x renamed past_key_values to cache),
    None for a model without a KV cache."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return None


def _returned_cache(out):
    """The cache a forward returned (the model's own class: MiniMax, indexer caches)."""
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise DittoError(f"hf: {type(out).__name__} returned no KV cache with use_cache=True")
    return cache
