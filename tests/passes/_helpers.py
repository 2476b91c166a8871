"""Run ONE pass (plus the passes it declares it requires) on a small graph and check it.

The shape of TensorRT-LLM AutoDeploy's `_run_fusion_test`: build a graph, run the transform,
assert how many places it matched, and run the graph before and after on the same inputs: the
numbers must agree within the stated tolerance.

Two ways to get a graph:
- `module_context(module, *inputs)`: a tiny `nn.Module` exported with `torch.export`, its
  parameters and buffers becoming weights as in ditto's pipeline (for the passes that rewrite
  plain ATen graphs);
- `model_context(name)`: one of ditto's built-in tiny HF models through ditto's own export (for
  the passes that need an HF model's inputs: `input_ids`, `position_ids`, its config).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from types import SimpleNamespace

import torch

from ditto.exporter.export import export_model
from ditto.exporter.graph import to_graph_module
from ditto.models.loader import LoadedModel, load_model
from ditto.models.weights import InMemoryTensor
from ditto.passes.manager import PassContext, required, run_passes
from ditto.runtime.fx import place_on_device
from ditto.runtime.paged_cache import PagedKVCache

# tolerances: a pass rewrites structure, not arithmetic, except where it reorders float sums
# (a fused projection, a real-valued complex product, the gpt_attention kernel): float32 there
EXACT = dict(rtol=0.0, atol=0.0)
FLOAT32 = dict(rtol=1e-5, atol=1e-5)


def module_context(module: torch.nn.Module, *inputs: torch.Tensor) -> tuple[PassContext, dict]:
    """A pass context on `module` exported with real weights; the feeds by placeholder name."""
    module = module.eval()
    exported = torch.export.export(module, tuple(inputs))
    loaded = LoadedModel(
        model=module,
        config=SimpleNamespace(),
        directory=Path("."),
        dtype=torch.float32,
        buffers={name: b.detach().clone() for name, b in module.named_buffers()},
        sources={name: InMemoryTensor(p.detach().clone()) for name, p in module.named_parameters()},
    )
    gm, weights = to_graph_module(exported, loaded)
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return PassContext(gm, weights, loaded), dict(zip(names, inputs))


def model_context(name: str, num_tokens: int = 6, seed: int = 0) -> tuple[PassContext, dict]:
    """A pass context on a built-in tiny model (ditto's export), fed HF's packed row of tokens.

    The export ran on the meta device: its graph runs on the CPU once `remove_export_artifacts`
    dropped the device arguments and checks, so that pass prepares the graph here (its own test
    uses `module_context`); the pass under test then runs on the prepared graph.
    """
    gm, weights, loaded = _exported(name)
    ctx = PassContext(copy.deepcopy(gm), copy.deepcopy(weights), loaded)
    run_passes(ctx, ["remove_export_artifacts"])
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, loaded.config.vocab_size, (1, num_tokens), generator=generator)
    return ctx, {"input_ids": ids, "position_ids": torch.arange(num_tokens)[None]}


@functools.cache
def _exported(name: str):
    loaded = load_model(name)
    gm, weights = to_graph_module(export_model(loaded), loaded)
    return gm, weights, loaded


def engine_feeds(ctx: PassContext, feeds: dict) -> tuple[dict, PagedKVCache]:
    """The engine inputs of one context step of the one sequence in `feeds` (close the cache after)."""
    tokens = feeds["input_ids"].reshape(-1).tolist()
    max_seq_len = len(tokens) + 1
    if ctx.attention:
        cache = PagedKVCache(ctx.attention, max_seq_len, 1, ctx.loaded.dtype)
    else:  # no attention op reads the cache; the inputs only have to exist
        cache = PagedKVCache.for_engine(1, 1, 8, ctx.tokens_per_block, max_seq_len, 1, ctx.loaded.dtype)
    return cache.step_inputs([tokens], [0], [len(tokens)], is_context=True), cache


def run_graph(ctx: PassContext, feeds: dict):
    """Run a copy of the context's graph with its real weights; its first output."""
    gm = copy.deepcopy(ctx.gm)
    for name in ctx.weights.names():
        setattr(gm, name, ctx.weights.load(name))
    place_on_device(gm, "cpu")  # factory ops exported on the meta device
    args = [feeds[n.name] for n in gm.graph.nodes if n.op == "placeholder"]
    with torch.no_grad():
        out = gm(*args)
    return out[0] if isinstance(out, (tuple, list)) else out


def check_pass(
    ctx: PassContext,
    feeds: dict,
    pass_name: str,
    matches: int,
    tolerance: dict,
    *,
    expect=lambda before: before,
) -> dict[str, int]:
    """Run `pass_name` (and what it requires) on `ctx`; assert its match count and that the graph
    computes `expect(output before)` within `tolerance`. The match counts of every pass run."""
    before = run_graph(ctx, feeds)
    log = dict(run_passes(ctx, required(pass_name)))
    assert log[pass_name] == matches, f"{pass_name} matched {log[pass_name]} places, expected {matches} ({log})"
    cache = None
    if ctx.engine_inputs:
        feeds, cache = engine_feeds(ctx, feeds)  # the graph now takes the engine's inputs
    try:
        after = run_graph(ctx, feeds)
    finally:
        if cache is not None:
            cache.close()
    torch.testing.assert_close(after, expect(before), **tolerance)
    return log
