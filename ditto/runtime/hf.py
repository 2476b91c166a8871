"""The `hf` backend: the Hugging Face model itself, the reference every backend meets.

Two ways to run it (`DITTO_HF_MODE`):

- `batched` (default): the whole batch in one forward per step, as `generate` runs it:
  prompts left-padded with an attention mask, each token at its own position, one KV cache
  for the batch, the model's usual attention implementation (sdpa where the model has it).
- `eager`: each sequence on its own (batch of one, eager attention), so no padding or
  masking choice can touch the result; slow on GPUs. tests/test_hf_modes.py shows the two
  agree within the project's bound.

Probes come from forward hooks on the modules `ditto.probes` names; per step they are packed
like the engine's tokens (padding dropped).
"""

from __future__ import annotations

import functools
import inspect

import torch

from ditto.errors import DittoError
from ditto.models.loader import dtype_kwarg, load_config, resolve_model_dir
from ditto.probes import check_probes, probe_modules
from ditto.runtime.backend import StepDump, StepwiseRequest, env_choice, register_backend
from ditto.runtime.stepwise import next_tokens

MODES = ("batched", "eager")


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
        model, modules = _model(request.model, request.dtype, request.device, "sdpa" if self.mode == "batched" else "eager")
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
            steps = self._batched_steps if self.mode == "batched" else self._steps
            return steps(model, request, probes, captured)
        finally:
            for h in hooks:
                h.remove()

    def _batched_steps(self, model, request, probes, captured) -> list[StepDump]:
        """One forward per step for the whole batch, left-padded, as `generate` runs it."""
        from transformers import DynamicCache

        device = request.device
        parameters = inspect.signature(model.forward).parameters
        extra = {_cache_kwarg(model): DynamicCache()}
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
                out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
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
                ids = torch.tensor(new_tokens, device=device)
                positions = torch.tensor([[p] for p in past], device=device)
                mask = torch.cat((mask, mask.new_ones((len(counts), 1))), dim=1)
        return dumps

    def _steps(self, model, request, probes, captured) -> list[StepDump]:
        """Each sequence on its own: batch of one, no padding, no mask."""
        from transformers import DynamicCache

        device = request.device
        cache_kwarg = _cache_kwarg(model)
        caches = [DynamicCache() for _ in request.prompts]
        new_tokens = [list(p) for p in request.prompts]
        past = [0] * len(request.prompts)
        dumps = []
        for index in range(request.steps + 1):
            logits, values = [], {p: [] for p in probes}
            for b, tokens in enumerate(new_tokens):
                ids = torch.tensor([tokens], device=device)
                positions = torch.arange(past[b], past[b] + len(tokens), device=device)[None]
                with torch.no_grad():
                    out = model(input_ids=ids, position_ids=positions, use_cache=True, **{cache_kwarg: caches[b]})
                logits.append(out.logits[0, -1].float())
                for p in probes:
                    values[p].append(captured[p].reshape(-1, captured[p].shape[-1]))
            i32 = dict(dtype=torch.int32)
            dump = {
                "input_ids": torch.tensor([t for seq in new_tokens for t in seq], **i32),
                "position_ids": torch.cat([torch.arange(p, p + len(t), **i32) for p, t in zip(past, new_tokens)]),
                "logits": torch.stack(logits).cpu(),
            }
            dump.update({p: torch.cat(v).cpu() for p, v in values.items()})
            dumps.append(dump)
            past = [p + len(t) for p, t in zip(past, new_tokens)]
            if index < request.steps:
                new_tokens = [[t] for t in next_tokens(request, index, dump["logits"])]
        return dumps


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x renamed past_key_values to cache."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
