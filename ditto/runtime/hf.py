"""The `hf` backend: the Hugging Face model itself, eager, the reference every backend meets.

Each sequence runs on its own (batch of one, HF's own KV cache), so no padding or masking
choice of ours can change the reference. Probes come from forward hooks on the modules
`ditto.probes` names; per step they are packed like the engine's tokens.
"""

from __future__ import annotations

import functools

import torch

from ditto.models.loader import dtype_kwarg, load_config, resolve_model_dir
from ditto.probes import check_probes, probe_modules
from ditto.runtime.backend import StepDump, StepwiseRequest, register_backend
from ditto.runtime.stepwise import next_tokens


@functools.lru_cache(maxsize=4)
def _model(model: str, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM

    directory = resolve_model_dir(model)
    config = load_config(directory)
    hf = AutoModelForCausalLM.from_pretrained(directory, **dtype_kwarg(dtype), local_files_only=True, attn_implementation="eager")
    hf.to(device).eval()
    return hf, probe_modules(hf, config.num_hidden_layers)


@register_backend("hf")
class HfBackend:
    def unavailable_reason(self) -> str | None:
        return None

    def run(self, request: StepwiseRequest) -> list[StepDump]:
        model, modules = _model(request.model, request.dtype, request.device)
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
            return self._steps(model, request, probes, captured)
        finally:
            for h in hooks:
                h.remove()

    def _steps(self, model, request, probes, captured) -> list[StepDump]:
        from transformers import DynamicCache

        import inspect

        device = request.device
        # transformers >= 5.2x renamed past_key_values to cache
        cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
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
