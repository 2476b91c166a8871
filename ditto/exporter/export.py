"""Export a meta-device Hugging Face causal LM with `torch.export`.

The model is exported in TensorRT-LLM's packed ("remove input padding") form: one row of
`num_tokens` tokens, `input_ids` and `position_ids` of shape [1, num_tokens] with
`num_tokens` dynamic; the batch lives in the attention op's inputs, added by the passes.
No weight is materialised: parameters, buffers and inputs are all on the meta device.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from ditto.errors import DittoError
from ditto.models.loader import LoadedModel

# torch.export specialises sizes 0 and 1; the example uses more tokens than that.
_EXAMPLE_TOKENS = 8


def export_model(loaded: LoadedModel) -> torch.export.ExportedProgram:
    # DYNAMIC rather than a named range: some transformers versions bound the token count by
    # max_position_embeddings, which a fixed range would report as a violated constraint
    num_tokens = torch.export.Dim.DYNAMIC
    tensors = {
        "input_ids": (torch.zeros(1, _EXAMPLE_TOKENS, dtype=torch.long, device="meta"), {1: num_tokens}),
        "position_ids": (torch.arange(_EXAMPLE_TOKENS, device="meta")[None], {1: num_tokens}),
    }
    kwargs, dynamic, flags = forward_arguments(loaded.model.forward, tensors, {"use_cache": False})
    # flags go in through a hook: torch.export cannot take dynamic shapes for `**kwargs` entries
    hook = loaded.model.register_forward_pre_hook(lambda _m, args, kw: (args, {**kw, **flags}), with_kwargs=True)
    try:
        with torch.no_grad(), _scalar_constants_keep_values():
            return torch.export.export(loaded.model, (), kwargs, dynamic_shapes=dynamic, strict=False)
    except Exception as e:
        arch = type(loaded.model).__name__
        where = _model_frame(e)
        what = ""
        if "data-dependent" in str(e):
            what = ("a branch or loop on tensor values (e.g. MoE experts looped over the experts the router picked, "
                    "outside transformers' `@use_experts_implementation`) ")
        raise DittoError(
            f"torch.export failed for {arch}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            f"{f' at {where}' if where else ''}; {what}"
            "the model's forward must be traceable with a dynamic number of tokens"
        ) from e
    finally:
        hook.remove()


def _model_frame(e: BaseException) -> str | None:
    """The innermost frame of the model's own source (transformers' models/, or a file outside
    torch and ditto) in the exception's traceback, as 'File "...", line N, in f'."""
    import traceback

    frames = []
    while e is not None:
        frames = traceback.extract_tb(e.__traceback__) or frames
        if any("/transformers/models/" in f.filename for f in frames):
            break
        e = e.__cause__ or e.__context__
    model = [f for f in frames if "/transformers/models/" in f.filename]
    if not model:
        return None
    f = model[-1]
    return f'File "{f.filename}", line {f.lineno}, in {f.name}'


def forward_arguments(forward, tensors: dict[str, tuple], flags: dict) -> tuple[dict, dict, dict]:
    """What to pass to `forward`, read from its signature: (tensor kwargs, their dynamic shapes,
    constant flags).

    `tensors` maps a name to (example value, dynamic shape); a tensor the forward does not
    declare by name is not passed (e.g. ALiBi models take no `position_ids`). A flag is passed
    when the forward declares it or takes `**kwargs` (GraniteMoE and OpenAI-GPT take
    `use_cache` only through `**kwargs`). `input_ids` must be declared.
    """
    parameters = inspect.signature(forward).parameters
    named = {name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    takes_var_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if "input_ids" not in named:
        raise DittoError(
            f"the model's forward{inspect.signature(forward)} takes no `input_ids`; ditto exports causal LMs "
            "called as model(input_ids=...)"
        )
    kwargs = {name: value for name, (value, _) in tensors.items() if name in named}
    dynamic = {name: shape for name, (_, shape) in tensors.items() if name in named}
    passed_flags = {name: value for name, value in flags.items() if name in named or takes_var_keyword}
    return kwargs, dynamic, passed_flags


@contextlib.contextmanager
def _scalar_constants_keep_values():
    """`torch.tensor(3.0, device=x.device)` in a forward on meta would lose its value, and
    export would lift a constant without one (seen with torch 2.11 + transformers 5.17:
    GPT-2's attention scale, Gemma's embedding normaliser). Scalars are made on the CPU
    instead, which works beside meta tensors like a Python number."""
    original = torch.tensor

    def tensor(data, *args, **kwargs):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "meta" and isinstance(data, (int, float, bool)):
            kwargs["device"] = "cpu"
        return original(data, *args, **kwargs)

    # `x[..., [-2]]` (Falcon's fused QKV split) turns the list into an index tensor on x's
    # device inside C++, which on meta loses its values the same way: give it one on the CPU
    getitem = torch.Tensor.__getitem__

    def index(self, key):
        if self.device.type == "meta":
            key = tuple(_cpu_index(k) for k in key) if isinstance(key, tuple) else _cpu_index(key)
        return getitem(self, key)

    torch.tensor = tensor
    torch.Tensor.__getitem__ = index
    try:
        yield
    finally:
        torch.tensor = original
        torch.Tensor.__getitem__ = getitem


def _cpu_index(key):
    if isinstance(key, list) and key and all(isinstance(k, int) and not isinstance(k, bool) for k in key):
        return torch.tensor(key, dtype=torch.long, device="cpu")
    return key
