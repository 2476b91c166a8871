"""Where each model parameter's values live in a checkpoint, by transformers' own conversion rules.

transformers 5 does not load checkpoints name for name: `conversion_mapping` gives each model
a list of weight transforms (`core_model_loading.WeightRenaming`: key renames;
`WeightConverter`: tensor merges/splits such as per-expert `experts.{i}.w1.weight` stacked
into one 3-D `experts.gate_up_proj`). `from_pretrained` applies them eagerly. Ditto applies
the same transform objects lazily: the key grouping is transformers' own `rename_source_key`,
and a merged parameter becomes a `Converted` weight source that runs the converter's
operations on its checkpoint tensors only when the weight is read. No per-model code.

transformers 4.5x has no conversion machinery; there the class attribute
`_checkpoint_conversion_mapping` (regex renames) is all there is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from ditto.models.weights import CheckpointTensor, Converted, WeightSource


def checkpoint_sources(model, index: dict[str, Path]) -> dict[str, WeightSource]:
    """Model parameter/buffer name -> where its values come from, for every name that some
    checkpoint key produces (names the checkpoint holds verbatim included)."""
    transforms = _transformers_transforms(model)
    if transforms is None:
        return _legacy_renames(model, index)
    return _converted_sources(model, index, transforms)


def _transformers_transforms(model):
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
    except ImportError:  # transformers 4.5x
        return None
    transforms = get_model_conversion_mapping(model)
    key_mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    if key_mapping:  # the 4.5x-style attribute still exists on a few 5.x classes
        from transformers.core_model_loading import WeightRenaming

        transforms = [WeightRenaming(k, v) for k, v in key_mapping.items()] + list(transforms)
    return transforms


def _converted_sources(model, index: dict[str, Path], transforms) -> dict[str, WeightSource]:
    from transformers.core_model_loading import WeightConverter, WeightRenaming, dot_natural_key, rename_source_key

    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    by_pattern = {pattern: c for c in converters for pattern in c.source_patterns}
    meta_state = model.state_dict()
    prefix = model.base_model_prefix
    sources: dict[str, WeightSource] = {}
    groups: dict[str, tuple] = {}  # first target name -> (converter, [(pattern, CheckpointTensor)])
    # transformers sorts keys this way before collecting, so experts stack in index order
    for key in sorted(index, key=dot_natural_key):
        target, pattern = rename_source_key(key, renamings, converters, prefix, meta_state)
        if target not in meta_state and key in meta_state:
            target, pattern = rename_source_key(key, [], [], prefix, meta_state)
        if target not in meta_state:
            continue  # a key the model does not use (transformers reports it as unexpected)
        tensor = CheckpointTensor(index[key], key)
        if pattern is None:
            sources[target] = tensor
            continue
        converter = by_pattern[pattern]
        groups.setdefault(target, (converter, []))[1].append((pattern, tensor))
    for first_target, (converter, parts) in groups.items():
        template = _blank_copy(converter)
        names = _target_names(first_target, template)
        shapes = tuple((n, tuple(meta_state[n].shape)) for n in names if n in meta_state)
        for name in names:
            sources[name] = Converted(template, tuple(parts), first_target, name, model.config, shapes)
    return sources


def _blank_copy(converter):
    """A copy of a converter without the tensors a previous load collected into it."""
    blank = copy.deepcopy(converter)
    blank.collected_tensors.clear()
    blank.layer_targets.clear()
    return blank


def _target_names(first_target: str, converter) -> list[str]:
    """Every parameter a converter produces (a split yields several): transformers names them
    by substituting each target pattern for the first in the first target's name."""
    first_pattern = converter.target_patterns[0]
    return [first_target.replace(first_pattern, pattern) for pattern in converter.target_patterns]


def _legacy_renames(model, index: dict[str, Path]) -> dict[str, WeightSource]:
    rules = list((getattr(model, "_checkpoint_conversion_mapping", None) or {}).items())
    sources: dict[str, WeightSource] = {}
    for key, file in index.items():
        name = key
        for pattern, replacement in rules:
            name = re.sub(pattern, replacement, name)
        sources[name] = CheckpointTensor(file, key)
    return sources


def run_converter(source: Converted):
    """Run transformers' conversion operations on the source's checkpoint tensors (read now)."""
    from ditto.models.weights import read_source

    converter = _blank_copy(source.converter)
    for pattern, tensor in source.parts:
        converter.add_tensor(source.first_target, tensor.key, pattern, lambda t=tensor: read_source(t))
    produced = converter.convert(source.first_target, model=_ShapesOnly(source.target_shapes), config=source.config)
    value = produced.get(source.target)
    if value is None:
        from ditto.errors import DittoError

        raise DittoError(
            f"transformers' conversion {type(source.converter).__name__}({source.converter.source_patterns} -> "
            f"{source.converter.target_patterns}) did not produce {source.target!r} (it produced {sorted(produced)}); "
            "check that the checkpoint matches config.json"
        )
    return value[0] if isinstance(value, list) else value


class _ShapesOnly:
    """What transformers' conversion operations ask of the model (`Split` sizes its chunks by
    `model.get_parameter(name).shape`), answered from the meta model's shapes, without a model."""

    def __init__(self, shapes):
        self.shapes = dict(shapes)

    def get_parameter(self, name: str):
        import torch

        if name not in self.shapes:
            raise AttributeError(f"the conversion asked for parameter {name!r}, which it does not produce")
        return torch.empty(self.shapes[name], device="meta")
