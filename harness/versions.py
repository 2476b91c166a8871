"""Versions of the software that produced an engine or a golden."""

from __future__ import annotations


def full_versions() -> dict[str, str]:
    """Exact versions: a cached engine is reused only by the very same software."""
    import torch
    import transformers

    import ditto

    return {"ditto": ditto.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def golden_versions() -> dict[str, str]:
    """What a golden depends on: ditto's version and torch/transformers major.minor.

    Patch releases do not change numerics on purpose; minor releases may (new kernels, new
    model code), so a golden from another minor release is stale.
    """
    return {name: _major_minor(v) if name != "ditto" else v for name, v in full_versions().items()}


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])
