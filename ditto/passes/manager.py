"""The pass manager: run registered passes in order, repeating the list to a fixed point.

A pass is a function `(ctx: PassContext) -> int` returning how many places it rewrote
(0 = nothing to do), so a run can print "fuse_parallel_linears: 8" and a test can assert it.
Adding a pass is one module in ditto/passes/ with `@register_pass("name", after=..., before=...)`:
the package imports every module of its folder, and the pipeline order follows from the passes'
declared constraints (`pipeline()`), checked when `ditto.passes` is imported.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from ditto.errors import DittoError
from ditto.graph.insert import fake_empty
from ditto.models.loader import LoadedModel
from ditto.models.weights import WeightSpec, WeightTable
from ditto.ops.params import GPTAttentionParams
from ditto.program import SequenceLimit
from ditto.registry import add_unique


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
    # lengths beyond which a recognised construct no longer computes the model (ditto.program.SequenceLimit)
    sequence_limits: list[SequenceLimit] = field(default_factory=list)

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
# name -> the pass; name -> its ordering constraints (kept apart so a test can swap a pass's function)
PASSES: dict[str, Pass] = {}
ORDER: dict[str, Constraints] = {}


@dataclass(frozen=True)
class Constraints:
    """Where a pass goes: `requires` must have run earlier (the pass reads what they produce, and
    running the pass alone runs them first); `after` / `before` only order it against passes that
    are present."""

    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()

    def earlier(self) -> tuple[str, ...]:
        return self.requires + self.after


def register_pass(name: str, *, requires: tuple[str, ...] = (), after: tuple[str, ...] = (), before: tuple[str, ...] = ()):
    """Register `fn` as the pass `name`; its place in the pipeline follows from the constraints
    (see `pipeline`), so a new pass is one module in ditto/passes/ and no other edit."""

    def wrap(fn: Pass) -> Pass:
        add_unique(PASSES, name, fn, f"pass {name!r}")
        fn.pass_name = name
        ORDER[name] = Constraints(tuple(requires), tuple(after), tuple(before))
        return fn

    return wrap


def pipeline() -> list[str]:
    """Every registered pass, in the one order its constraints allow.

    The constraints must fix the order completely: two passes with no declared order between
    them are an error naming both (order matters even in a fixed-point loop: it decides which
    pass sees a pattern first), as are a constraint naming an unknown pass and a cycle.
    """
    edges = _edges()
    order: list[str] = []
    remaining = set(PASSES)
    while remaining:
        ready = sorted(n for n in remaining if not any(a in remaining for a in edges[n]))
        if not ready:
            raise DittoError(f"the pass constraints form a cycle among {', '.join(sorted(remaining))}; "
                             "fix after=/requires=/before= in their @register_pass")
        if len(ready) > 1:
            raise DittoError(f"passes {ready[0]} and {ready[1]} have no declared order between them; add after= or "
                             f"before= to one of their @register_pass (placed after: {', '.join(order) or 'nothing'})")
        order.append(ready[0])
        remaining.discard(ready[0])
    return order


def required(name: str) -> list[str]:
    """`name` and every pass it requires (transitively), in pipeline order: what a test of it runs."""
    _check_known([name], "the pass to run")
    wanted, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in wanted:
            wanted.add(n)
            todo.extend(_constraints(n).requires)
    return [n for n in pipeline() if n in wanted]


def check_pass_list(names: list[str]) -> None:
    """Refuse a pass list that names an unknown pass, lacks a required one, or breaks the declared order."""
    _check_known(names, "the pass list")
    position = {n: i for i, n in enumerate(names)}
    edges = _edges()
    for name in names:
        for req in _constraints(name).requires:
            if position.get(req, len(names)) > position[name]:
                raise DittoError(f"pass {name} requires {req} to run before it; the pass list is {', '.join(names)}")
        for first in edges.get(name, ()):
            if first in position and position[first] > position[name]:
                raise DittoError(f"pass {first} must run before {name} (declared in their @register_pass); "
                                 f"the pass list is {', '.join(names)}")


def _edges() -> dict[str, set[str]]:
    """pass -> the passes that must come before it."""
    edges: dict[str, set[str]] = {name: set() for name in PASSES}
    for name in PASSES:
        c = _constraints(name)
        _check_known([*c.earlier(), *c.before], f"the constraints of pass {name}")
        edges[name] |= set(c.earlier())
        for later in c.before:
            edges[later].add(name)
    return edges


def _constraints(name: str) -> Constraints:
    return ORDER.get(name, Constraints())


def _check_known(names, where: str) -> None:
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise DittoError(f"{where} names pass {unknown[0]!r}, which is not registered; registered passes: "
                         f"{', '.join(sorted(PASSES))} (a pass registers with @register_pass in ditto/passes/)")


def run_passes(ctx: PassContext, names: list[str] | None = None, max_rounds: int = 10) -> list[tuple[str, int]]:
    """Run `names` (default: the whole pipeline) in order, again and again until a round changes
    nothing; the matches per pass. An error in a pass names the pass and the passes run before it."""
    names = pipeline() if names is None else list(names)
    check_pass_list(names)
    totals: dict[str, int] = {name: 0 for name in names}
    for round_ in range(1, max_rounds + 1):
        changed = False
        for i, name in enumerate(names):
            with _naming_the_pass(name, round_, names[:i]):
                matches = PASSES[name](ctx)
                if matches:
                    ctx.graph.lint()
            if matches:
                totals[name] += matches
                changed = True
        if not changed:
            break
    ctx.gm.recompile()
    return list(totals.items())


@contextmanager
def _naming_the_pass(name: str, round_: int, before: list[str]):
    where = f"round {round_}, after {', '.join(before)}" if before else f"round {round_}, first pass"
    try:
        yield
    except DittoError as e:  # the pass's own message: kept, and told which pass it came from
        if f"pass {name}" not in str(e) and e.args and isinstance(e.args[0], str):
            e.args = (f"pass {name} ({where}): {e.args[0]}", *e.args[1:])
        raise
    except Exception as e:  # a construct the pass did not foresee: say which pass, never a bare error
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise DittoError(
            f"pass {name} failed on this model with {type(e).__name__}: {first_line} ({where}); "
            "the model uses a construct ditto does not handle yet (run `ditto export MODEL --artifacts DIR` "
            "to see the graph)"
        ) from e
