"""`TrtllmProgram`: the pipeline's product, the FX graph in TensorRT-LLM form plus its weights.

- `graph_module`: placeholders are exactly the engine inputs (names, dtypes and dims in
  `input_dims`); weights are `get_attr` nodes whose targets are keys of `weights`; the
  output is a tuple `(logits, *extra_outputs)` named by `output_names`. Call functions are
  ATen ops and `torch.ops.ditto.gpt_attention` (see `ditto/ops/gpt_attention.py`).
- `weights`: lazy; nothing is read from disk until `materialize()`.
- `attention`: the recognised `GPTAttentionParams` per attention layer, in layer order.
- `sequence_limit`: the longest sequence (prompt + generated tokens) the graph computes the model
  exactly for, when a recognised construct holds only up to a length (`SequenceLimit`); None: no such
  limit. `ditto build` caps max_seq_len at it and the backends refuse longer requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ditto.errors import DittoError
from ditto.models.weights import WeightTable
from ditto.ops.params import GPTAttentionParams


@dataclass(frozen=True)
class SequenceLimit:
    """The graph computes the model exactly only for sequences of at most `tokens` tokens (prompt +
    generated); `construct` names what imposes it, with its model source line."""

    tokens: int
    construct: str

    def check(self, tokens: int, what: str, fix: str) -> None:
        """Refuse `what` (a request, a build limit) of `tokens` tokens when it is longer than the limit."""
        if tokens > self.tokens:
            raise DittoError(f"{what} is {tokens} tokens, longer than {self.tokens}, the longest sequence ditto's "
                             f"conversion of this model is exact for: {self.construct}; {fix}")


@dataclass
class TrtllmProgram:
    graph_module: torch.fx.GraphModule
    weights: WeightTable
    hf_config: Any  # transformers.PretrainedConfig
    dtype: torch.dtype
    attention: list[GPTAttentionParams]
    # engine input name -> dims, each dim an int or a name ("num_tokens", "batch", ...)
    input_dims: dict[str, tuple] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=lambda: ["logits"])
    # probe name (layers.3.attn, ...) -> HF module path, see ditto.probes
    probe_modules: dict[str, str] = field(default_factory=dict)
    # what each pass did, in order: (pass name, number of places it rewrote)
    pass_log: list[tuple[str, int]] = field(default_factory=list)
    # the recognised `ditto.moe` layers, in graph order (see ditto.passes.replace_moe)
    moe: list[dict] = field(default_factory=list)
    sequence_limit: SequenceLimit | None = None

    def materialize(self, device: str | torch.device = "cpu") -> torch.fx.GraphModule:
        """Attach real weights to the graph module (reading them now) and return it."""
        for name in self.weights.names():
            setattr(self.graph_module, name, self.weights.load(name).to(device))
        return self.graph_module
