"""Compare step dumps tensor by tensor; results are data, printed by one formatter.

`compare_tensors` -> TensorComparison (one name), `compare_dumps` -> DumpComparison (one
step), `compare_paths` -> RunComparison (two step files, or two folders step by step),
`compare_runs` -> RunComparison (two lists of step dumps in memory).
`format_table` and `to_json` (ditto.comparator.report) turn any of them into text or JSON.

What fails: a tensor fails when its shapes differ, when either side holds a NaN, or when any
element is out of tolerance (`|a - b| > atol + rtol * |b|`, B is the reference; by default
the fixed rule of ditto.comparator.tolerances, whose atol is scaled by max(1, max |b|)).
Different dtypes alone do not fail: a float16 run compared with a float32 run is the point;
they are shown and the looser tolerance applies. A dump fails when any tensor fails or a
name is only on one side (a missing probe is a difference; pair renamed ones with
`aliases`). A run fails when any step fails or a step is only on one side.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ditto.comparator import stats
from ditto.comparator.report import format_table, to_json
from ditto.comparator.results import DumpComparison, RunComparison, TensorComparison
from ditto.comparator.stats import count_nonfinite, elementwise_stats
from ditto.comparator.tolerances import FIXED_TOLERANCES, default_tolerance, fixed_tolerance
from ditto.dumps import list_step_files, load_step
from ditto.errors import DittoError

__all__ = [
    "DumpComparison",
    "FIXED_TOLERANCES",
    "RunComparison",
    "TensorComparison",
    "compare_dumps",
    "compare_paths",
    "compare_tensors",
    "default_tolerance",
    "fixed_tolerance",
    "format_table",
    "to_json",
]


def compare_tensors(
    a: torch.Tensor,
    b: torch.Tensor,
    atol: float | None = None,
    rtol: float | None = None,
    name: str = "",
    name_b: str | None = None,
    compiled: bool | None = None,
) -> TensorComparison:
    """Compare `a` with the reference `b`; tolerances default to the fixed rule for their dtypes.

    `compiled`: run the fused compiled kernel (ditto.comparator.stats); None decides by size.
    """
    for side, t in (("A", a), ("B", b)):
        if not isinstance(t, torch.Tensor):
            raise DittoError(f"{name or 'compare'}: side {side} is {type(t).__name__}, not a tensor")
    atol, rtol = fixed_tolerance(b.dtype, atol, rtol, other=a.dtype).absolute(b)
    result = TensorComparison(
        name=name,
        name_b=name if name_b is None else name_b,
        shape_a=tuple(a.shape),
        shape_b=tuple(b.shape),
        dtype_a=str(a.dtype).removeprefix("torch."),
        dtype_b=str(b.dtype).removeprefix("torch."),
        atol=atol,
        rtol=rtol,
        nan_a=0,
        nan_b=0,
        inf_a=0,
        inf_b=0,
    )
    if not result.shape_match:
        (result.nan_a, result.inf_a), (result.nan_b, result.inf_b) = count_nonfinite(a), count_nonfinite(b)
        return result
    if compiled is None:
        compiled = a.numel() >= stats.COMPILE_MIN_NUMEL
    e = elementwise_stats(a, b, atol, rtol, compiled)
    if not a.dtype.is_floating_point and not b.dtype.is_floating_point:
        _exact_integers(e, a, b)
    result.nan_a, result.nan_b, result.inf_a, result.inf_b = e.nan_a, e.nan_b, e.inf_a, e.inf_b
    result.max_abs = e.max_abs
    result.mean_abs = e.sum_abs / e.n_abs if e.n_abs else 0.0
    result.max_rel = e.max_rel
    result.cosine = _cosine(e.ab, e.aa, e.bb)
    result.frac_out_of_tol = e.n_out / a.numel() if a.numel() else 0.0
    if e.worst_flat is not None:
        result.worst_index = _unravel(e.worst_flat, result.shape_a)
        result.worst_a = a.reshape(-1)[e.worst_flat].item()
        result.worst_b = b.reshape(-1)[e.worst_flat].item()
    return result


def compare_dumps(
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    atol: float | None = None,
    rtol: float | None = None,
    aliases: dict[str, str] | None = None,
    label: str = "",
) -> DumpComparison:
    """Compare every name of `a` with the same name of `b` (or `aliases[name]`), in `a`'s order."""
    aliases = aliases or {}
    result = DumpComparison(label=label)
    pairs = []
    for name in a:
        name_b = aliases.get(name, name)
        if name_b in b:
            pairs.append((name, name_b))
        else:
            result.only_in_a.append(name)
    paired_b = {name_b for _, name_b in pairs}
    result.only_in_b = [name for name in b if name not in paired_b]
    # Compiling the kernel costs seconds once; worth it when the whole dump is large.
    compiled = sum(a[n].numel() for n, _ in pairs) >= stats.COMPILE_MIN_NUMEL
    for name, name_b in pairs:
        result.tensors.append(compare_tensors(a[name], b[name_b], atol, rtol, name, name_b, compiled))
    return result


def compare_paths(
    a: str | os.PathLike,
    b: str | os.PathLike,
    atol: float | None = None,
    rtol: float | None = None,
    aliases: dict[str, str] | None = None,
) -> RunComparison:
    """Compare two step files, or two dump folders step by step (step{i} with step{i})."""
    a, b = Path(a), Path(b)
    for p in (a, b):
        if not p.exists():
            raise DittoError(f"{p} does not exist; give two step files (step0.pt) or two dump folders")
    if a.is_dir() != b.is_dir():
        raise DittoError(f"compare a file with a file or a folder with a folder; got {a} and {b}")
    result = RunComparison(a=str(a), b=str(b))
    if not a.is_dir():
        label = a.name if a.name == b.name else f"{a.name} | {b.name}"
        result.steps.append(compare_dumps(load_step(a), load_step(b), atol, rtol, aliases, label=label))
        return result
    files_a = {p.stem: p for p in list_step_files(a)}
    files_b = {p.stem: p for p in list_step_files(b)}
    if not files_a and not files_b:
        raise DittoError(f"neither {a} nor {b} holds step dumps (step0.pt or step0.safetensors, ...)")
    for step, pa in files_a.items():
        if step in files_b:
            result.steps.append(compare_dumps(load_step(pa), load_step(files_b[step]), atol, rtol, aliases, label=step))
    result.steps_only_in_a = [s for s in files_a if s not in files_b]
    result.steps_only_in_b = [s for s in files_b if s not in files_a]
    return result


def compare_runs(
    a: list[dict[str, torch.Tensor]],
    b: list[dict[str, torch.Tensor]],
    atol: float | None = None,
    rtol: float | None = None,
    aliases: dict[str, str] | None = None,
) -> RunComparison:
    """Compare two runs held in memory (lists of step dumps), step i with step i."""
    result = RunComparison(a="a", b="b")
    for i, (dump_a, dump_b) in enumerate(zip(a, b)):
        result.steps.append(compare_dumps(dump_a, dump_b, atol, rtol, aliases, label=f"step{i}"))
    result.steps_only_in_a = [f"step{i}" for i in range(len(b), len(a))]
    result.steps_only_in_b = [f"step{i}" for i in range(len(a), len(b))]
    return result


def _exact_integers(e, a: torch.Tensor, b: torch.Tensor) -> None:
    """Integers compared in int64, not float64 (which merges neighbours above 2**53)."""
    x, y = a.reshape(-1).long(), b.reshape(-1).long()
    differs = x != y
    e.n_out = int(differs.sum())
    if e.n_out:
        d = (x - y).abs()
        e.max_abs = max(e.max_abs, float(d.max()))
        e.worst_flat = int(torch.argmax(d))
        e.sum_abs = float(d.double().sum())


def _cosine(ab: float, aa: float, bb: float) -> float:
    """Cosine similarity; two all-zero sides are identical (1), one all-zero side is unrelated (0)."""
    if aa == 0 and bb == 0:
        return 1.0
    if aa == 0 or bb == 0:
        return 0.0
    return max(-1.0, min(1.0, ab / (math.sqrt(aa) * math.sqrt(bb))))


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))
