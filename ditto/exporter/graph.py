"""Turn an ExportedProgram into ditto's graph: user inputs as placeholders, weights as get_attr.

Lifted parameter/buffer/constant placeholders become `get_attr` nodes named after the
module path (dots -> underscores) and recorded in a lazy `WeightTable` that says where each
one's values come from: a safetensors file (parameters; tied names resolved through the
model's shared parameters), or memory (buffers and constants, which are not in checkpoints).
"""

from __future__ import annotations

import re

import torch
from torch.export.graph_signature import InputKind

from ditto.errors import DittoError
from ditto.models.loader import LoadedModel
from ditto.models.weights import InMemoryTensor, WeightSource, WeightSpec, WeightTable


def attr_name(fqn: str) -> str:
    return re.sub(r"\W", "_", fqn)


def to_graph_module(ep: torch.export.ExportedProgram, loaded: LoadedModel) -> tuple[torch.fx.GraphModule, WeightTable]:
    gm = torch.fx.GraphModule(torch.nn.Module(), ep.graph_module.graph)
    graph = gm.graph
    weights = WeightTable()
    kinds = {spec.arg.name: spec for spec in ep.graph_signature.input_specs}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    first_op = next(n for n in graph.nodes if n.op != "placeholder")
    for node in placeholders:
        spec = kinds[node.name]
        if spec.kind == InputKind.USER_INPUT:
            if not node.users:
                graph.erase_node(node)  # use_cache=False and other constant flags
            continue
        fqn = spec.target
        name = attr_name(fqn)
        val = node.meta["val"]
        # a persistent buffer the checkpoint holds (DeepSeek-V3's e_score_correction_bias) is read
        # from it, as from_pretrained does; computed buffers (RoPE frequencies) keep their value
        if spec.kind == InputKind.BUFFER and fqn in loaded.buffers and fqn not in loaded.sources:
            source = InMemoryTensor(loaded.buffers[fqn])
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            constant = ep.constants[fqn]
            if not isinstance(constant, torch.Tensor) or constant.device.type == "meta":
                raise DittoError(f"export produced a constant {fqn!r} without a value; it cannot be converted")
            source = InMemoryTensor(constant.detach().clone())
        else:
            source = _checkpoint_source(fqn, loaded)
        weights.add(name, WeightSpec(tuple(val.shape), val.dtype, source))
        gm.register_buffer(name, torch.empty(val.shape, dtype=val.dtype, device="meta"))
        with graph.inserting_before(first_op):
            new = graph.get_attr(name)
        new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        new.name = name
    gm.recompile()
    return gm, weights


def _checkpoint_source(fqn: str, loaded: LoadedModel) -> WeightSource:
    for candidate in [fqn, *loaded.aliases.get(fqn, [])]:
        if candidate in loaded.sources:
            return loaded.sources[candidate]
    raise DittoError(
        f"parameter {fqn!r} is not in the checkpoint files of {loaded.directory}; the safetensors do not match "
        "the model that config.json describes (re-save with save_pretrained, or check the transformers version)"
    )
