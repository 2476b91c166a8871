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
    input_ids = torch.zeros(1, _EXAMPLE_TOKENS, dtype=torch.long, device="meta")
    position_ids = torch.arange(_EXAMPLE_TOKENS, device="meta")[None]
    kwargs = dict(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    dynamic = dict(input_ids={1: num_tokens}, position_ids={1: num_tokens}, use_cache=None)
    if "position_ids" not in inspect.signature(loaded.model.forward).parameters:
        del kwargs["position_ids"], dynamic["position_ids"]  # e.g. ALiBi models take no positions
    try:
        with torch.no_grad(), _scalar_constants_keep_values():
            return torch.export.export(loaded.model, (), kwargs, dynamic_shapes=dynamic, strict=False)
    except Exception as e:
        arch = type(loaded.model).__name__
        raise DittoError(
            f"torch.export failed for {arch}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
            "the model's forward must be traceable with a dynamic number of tokens"
        ) from e


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

    torch.tensor = tensor
    try:
        yield
    finally:
        torch.tensor = original
