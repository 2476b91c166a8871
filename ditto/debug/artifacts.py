"""Debug artifacts written when DEBUG_ARTIFACTS_DIR is set: `graph_module.py` and `graph.txt`.

`graph.txt` has one node per line: name, op, target, shapes, dtypes. Node names come from
export and the passes' fixed order, so they are stable from run to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ditto import fsutil


def artifacts_dir() -> Path | None:
    """$DEBUG_ARTIFACTS_DIR, checked writable up front (the artifacts come after long stages)."""
    value = os.environ.get("DEBUG_ARTIFACTS_DIR")
    if not value:
        return None
    path = Path(value)
    fsutil.check_output_dir(path, "DEBUG_ARTIFACTS_DIR")
    path.mkdir(parents=True, exist_ok=True)
    return path


def graph_table(gm: torch.fx.GraphModule) -> str:
    lines = []
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, (list, tuple)):
            shapes = ", ".join(_describe(v) for v in val)
        else:
            shapes = _describe(val)
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        if node.op == "call_function" and hasattr(node.target, "_schema"):
            target = str(node.target)
        lines.append(f"{node.name}\t{node.op}\t{target}\t{shapes}")
    return "\n".join(lines) + "\n"


def _describe(val) -> str:
    if isinstance(val, torch.Tensor):
        return f"{list(val.shape)} {str(val.dtype).removeprefix('torch.')}"
    return "-" if val is None else type(val).__name__


def write_graph_artifacts(program, folder: Path | None = None) -> Path | None:
    folder = folder or artifacts_dir()
    if folder is None:
        return None
    gm = program.graph_module
    fsutil.write_text(folder / "graph_module.py", gm.code)
    fsutil.write_text(folder / "graph.txt", graph_table(gm))
    log = "\n".join(f"{name}: {count}" for name, count in program.pass_log)
    fsutil.write_text(folder / "passes.txt", log + "\n")
    return folder
