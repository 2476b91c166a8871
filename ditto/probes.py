"""Probes: named-by-meaning points inside a model, resolved per backend.

`layers.{i}.attn` (attention block output), `layers.{i}.mlp` (MLP block output),
`layers.{i}.out` (decoder layer output), `final_norm`, and `logits`; in a mixture-of-experts
block also `layers.{i}.router` (the router's logits: the first output of the MLP's `gate` /
`router` child) and `layers.{i}.experts` (the routed experts' combined output). The decoder layers are
found structurally (the ModuleList with one entry per hidden layer); inside a layer the
attention and MLP blocks are the children that hold the attention computation and the
rest. HF runs use module hooks on those paths; the FX graph finds each module's output node
through the `nn_module_stack` export records on every node.
"""

from __future__ import annotations

import torch

from ditto.errors import DittoError

ATTENTION_HINTS = ("attn", "attention")
MLP_HINTS = ("mlp", "feed_forward", "ffn", "moe", "experts")
NORM_HINTS = ("norm", "ln_f", "final_layernorm")


def probe_modules(model: torch.nn.Module, num_layers: int) -> dict[str, str]:
    """probe name -> module path for an HF model (meta or real)."""
    layers_path, layers = _decoder_layers(model, num_layers)
    probes: dict[str, str] = {}
    for i in range(len(layers)):
        base = f"{layers_path}.{i}"
        children = dict(layers[i].named_children())
        attn = _child(children, ATTENTION_HINTS)
        mlp = _child(children, MLP_HINTS)
        if attn:
            probes[f"layers.{i}.attn"] = f"{base}.{attn}"
        if mlp:
            probes[f"layers.{i}.mlp"] = f"{base}.{mlp}"
            probes.update(_moe_probes(i, f"{base}.{mlp}", children[mlp]))
        probes[f"layers.{i}.out"] = base
    parent_path = layers_path.rsplit(".", 1)[0] if "." in layers_path else ""
    parent = model.get_submodule(parent_path) if parent_path else model
    norm = _child(dict(parent.named_children()), NORM_HINTS)
    if norm:
        probes["final_norm"] = f"{parent_path}.{norm}" if parent_path else norm
    return probes


def _moe_probes(i: int, path: str, mlp: torch.nn.Module) -> dict[str, str]:
    children = dict(mlp.named_children())
    experts = children.get("experts")
    if experts is None or isinstance(experts, torch.nn.ModuleList) and not len(experts):
        return {}
    probes = {f"layers.{i}.experts": f"{path}.experts"}
    router = next((name for name in ("router", "gate") if name in children), None)
    if router is not None:
        probes[f"layers.{i}.router"] = f"{path}.{router}"
    return probes


def all_probe_names(probes: dict[str, str]) -> list[str]:
    return list(probes) + ["logits"]


def _decoder_layers(model: torch.nn.Module, num_attention: int):
    """The ModuleList of decoder layers: as many as attention ops, else the longest list that
    holds the same number of attention ops per layer (DiffLlama: two per layer)."""
    lists = [(path, m) for path, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    for path, module in lists:
        if len(module) == num_attention:
            return path, module
    dividing = [(path, m) for path, m in lists if num_attention % len(m) == 0]
    if dividing:
        return max(dividing, key=lambda item: len(item[1]))
    raise DittoError(f"no list of decoder layers for {num_attention} attention ops found in {type(model).__name__}")


def _child(children: dict, hints: tuple[str, ...]) -> str | None:
    """The child named by a hint (exact name first, then substring) that holds weights."""
    weighted = {name: m for name, m in children.items() if any(True for _ in m.parameters())}
    for hint in hints:
        if hint in weighted:
            return hint
    for name in weighted:
        if any(h in name.lower() for h in hints):
            return name
    return None


def fx_probe_nodes(graph: torch.fx.Graph, probes: dict[str, str]) -> dict[str, torch.fx.Node]:
    """probe name -> the node whose value leaves that module (the last node inside it)."""
    last: dict[str, torch.fx.Node] = {}
    wanted = set(probes.values())
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for path, _ in stack.values():
            path = _normalise(path)
            if path in wanted and isinstance(node.meta.get("val"), torch.Tensor):
                last[path] = node
    found = {name: last[path] for name, path in probes.items() if path in last}
    missing = [name for name in probes if name not in found]
    if missing:
        raise DittoError(f"probes {missing} have no node in the FX graph (module paths {[probes[m] for m in missing]})")
    return found


def _normalise(path: str) -> str:
    # older exports spell paths as L['self'].model.layers[0]
    path = path.replace("L['self'].", "").replace("L__self__.", "")
    return path.replace("[", ".").replace("]", "")


def check_probes(requested: list[str], available: dict[str, str], model: str) -> list[str]:
    """The requested probes other than logits; unknown names are an error listing the known ones."""
    unknown = [p for p in requested if p != "logits" and p not in available]
    if unknown:
        raise DittoError(f"probes {unknown} do not exist in {model}; available: {', '.join(all_probe_names(available))}")
    return [p for p in requested if p != "logits"]


def program_probe_nodes(program, requested, model: str) -> dict[str, torch.fx.Node]:
    """The FX nodes of a program's probes, by probe name, in the order asked (logits left out:
    it is every backend's output anyway); unknown names are an error listing the known ones.
    The one probe lookup of the fx and replay backends and the builder."""
    names = check_probes(list(requested), program.probe_modules, model)
    if not names:
        return {}
    return fx_probe_nodes(program.graph_module.graph, {p: program.probe_modules[p] for p in names})
