"""Remove nodes whose values nothing reads (torch.fx's own dead-code elimination), last in the pipeline.

before: a = mul(x, 2); b = add(x, 1); output(b)
after:  b = add(x, 1); output(b)
"""

from __future__ import annotations

from ditto.passes.manager import PassContext, register_pass


# last: removes what every other pass left unused
@register_pass("eliminate_dead_code", after=("simplify_shuffles",))
def eliminate_dead_code(ctx: PassContext) -> int:
    before = len(ctx.graph.nodes)
    ctx.graph.eliminate_dead_code()
    return before - len(ctx.graph.nodes)
