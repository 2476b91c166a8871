"""The pass manager: run registered passes in order, repeating the list to a fixed point.

A pass is a function `(ctx: PassContext) -> int` returning how many places it rewrote
(0 = nothing to do), so a run can print "fuse_parallel_linears: 8" and a test can assert it.
Adding a pass is one `@register_pass("name")` in its own module, listed in `PIPELINE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ditto.errors import DittoError
from ditto.graph.insert import fake_empty
from ditto.models.loader import LoadedModel
from ditto.models.weights import WeightSpec, WeightTable
from ditto.ops.params import GPTAttentionParams


@dataclass
class PassContext:
    gm: torch.fx.GraphModule
    weights: WeightTable
    loaded: LoadedModel
    tokens_per_block: int = 64
    attention: list[GPTAttentionParams] = field(default_factory=list)
    # engine input name -> placeholder node, once the TRT-LLM inputs exist
    engine_inputs: dict = field(default_factory=dict)
    # the recognised MoE layers (ditto.passes.replace_moe), in graph order, as config fields
    moe: list[dict] = field(default_factory=list)
    # RoPE identified per rotation signature: layers with the same rotation share one identification
    identified_rope: dict = field(default_factory=dict)

    @property
    def graph(self) -> torch.fx.Graph:
        return self.gm.graph

    def add_weight(self, name: str, spec: WeightSpec) -> torch.fx.Node:
        """A new weight (`get_attr` node after the placeholders) that the weight table resolves lazily."""
        self.weights.add(name, spec)
        self.gm.register_buffer(name, torch.empty(spec.shape, dtype=spec.dtype, device="meta"))
        with self.graph.inserting_before(next(n for n in self.graph.nodes if n.op != "placeholder")):
            node = self.graph.get_attr(name)
        node.meta["val"] = fake_empty(self.graph, spec.shape, spec.dtype)
        return node


Pass = Callable[[PassContext], int]
PASSES: dict[str, Pass] = {}


def register_pass(name: str):
    def wrap(fn: Pass) -> Pass:
        fn.pass_name = name
        PASSES[name] = fn
        return fn

    return wrap


def run_passes(ctx: PassContext, names: list[str], max_rounds: int = 10) -> list[tuple[str, int]]:
    """Run `names` in order, again and again until a round changes nothing; log matches."""
    totals: dict[str, int] = {name: 0 for name in names}
    for _ in range(max_rounds):
        changed = False
        for name in names:
            try:
                matches = PASSES[name](ctx)
            except DittoError:
                raise
            except Exception as e:  # a construct the pass did not foresee: say which pass, never a bare error
                raise DittoError(
                    f"pass {name} failed on this model with {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                    "the model uses a construct ditto does not handle yet (run `ditto export MODEL --artifacts DIR` "
                    "to see the graph)"
                ) from e
            if matches:
                totals[name] += matches
                changed = True
                ctx.graph.lint()
        if not changed:
            break
    ctx.gm.recompile()
    return list(totals.items())
