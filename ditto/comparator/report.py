"""The one formatter of comparison results: a compact table for people, a dict for machines."""

from __future__ import annotations

import dataclasses
import math

from ditto.comparator.results import DumpComparison, RunComparison, TensorComparison

Result = TensorComparison | DumpComparison | RunComparison

_HEADER = [
    "", "name", "shape", "dtype", "max_abs", "mean_abs", "max_rel", "cosine",
    "out_of_tol", "worst index", "A[worst]", "B[worst]", "nan A/B", "inf A/B", "atol/rtol",
]  # fmt: skip


def format_table(result: Result) -> str:
    """A readable table: one row per tensor, grouped by step, then a one-line verdict."""
    if isinstance(result, TensorComparison):
        return "\n".join(_align([_HEADER, _row(result)]))
    run = result if isinstance(result, RunComparison) else RunComparison(a="A", b="B", steps=[result])
    lines = [f"A: {run.a}", f"B: {run.b}"] if isinstance(result, RunComparison) else []
    for step in run.steps:
        lines.append(f"{step.label or 'dump'}: {'ok' if step.passed else 'FAIL'}")
        lines += ["  " + line for line in _align([_HEADER] + [_row(t) for t in step.tensors])]
        if step.only_in_a:
            lines.append(f"  FAIL only in A: {', '.join(step.only_in_a)}")
        if step.only_in_b:
            lines.append(f"  FAIL only in B: {', '.join(step.only_in_b)}")
    if run.steps_only_in_a:
        lines.append(f"FAIL steps only in A: {', '.join(run.steps_only_in_a)}")
    if run.steps_only_in_b:
        lines.append(f"FAIL steps only in B: {', '.join(run.steps_only_in_b)}")
    lines.append(_verdict(run))
    return "\n".join(lines)


def to_json(result: Result) -> dict:
    """Plain JSON-able dict; infinite statistics are the strings "inf"/"-inf" (JSON has no infinity)."""
    if isinstance(result, TensorComparison):
        out = {k: _json_value(v) for k, v in dataclasses.asdict(result).items()}
        out.update(shape_match=result.shape_match, dtype_match=result.dtype_match, passed=result.passed)
        return out
    if isinstance(result, DumpComparison):
        return {
            "label": result.label,
            "passed": result.passed,
            "tensors": [to_json(t) for t in result.tensors],
            "only_in_a": result.only_in_a,
            "only_in_b": result.only_in_b,
        }
    return {
        "a": result.a,
        "b": result.b,
        "passed": result.passed,
        "steps": [to_json(s) for s in result.steps],
        "steps_only_in_a": result.steps_only_in_a,
        "steps_only_in_b": result.steps_only_in_b,
    }


def failure_reason(t: TensorComparison) -> str:
    """Why a tensor failed, in one word ('' when it passed)."""
    if not t.shape_match:
        return "shape"
    if t.nan_a or t.nan_b:
        return "nan"
    if t.frac_out_of_tol:
        return "tol"
    return ""


def _row(t: TensorComparison) -> list[str]:
    reason = failure_reason(t)
    if t.nan_a or t.nan_b:  # the statistics skip NaN positions: showing 0 / 1.0 beside a NaN misleads
        t = dataclasses.replace(t, max_abs=math.nan, mean_abs=math.nan, max_rel=math.nan, cosine=math.nan)
    return [
        f"FAIL {reason}" if reason else "ok",
        t.name if t.name == t.name_b else f"{t.name} -> {t.name_b}",
        _shape(t.shape_a) if t.shape_match else f"{_shape(t.shape_a)} vs {_shape(t.shape_b)}",
        t.dtype_a if t.dtype_match else f"{t.dtype_a} vs {t.dtype_b}",
        _num(t.max_abs),
        _num(t.mean_abs),
        _num(t.max_rel),
        "-" if t.cosine is None else "nan" if math.isnan(t.cosine) else f"{t.cosine:.6f}",
        _fraction(t.frac_out_of_tol),
        "-" if t.worst_index is None else _shape(t.worst_index),
        _num(t.worst_a, ".6g"),
        _num(t.worst_b, ".6g"),
        f"{t.nan_a}/{t.nan_b}",
        f"{t.inf_a}/{t.inf_b}",
        "exact" if t.atol == t.rtol == 0 else f"{t.atol:.0e}/{t.rtol:.0e}",
    ]


def _verdict(run: RunComparison) -> str:
    tensors = [t for s in run.steps for t in s.tensors]
    failed = [f"{s.label}:{t.name}" if s.label else t.name for s in run.steps for t in s.tensors if not t.passed]
    one_sided = sum(len(s.only_in_a) + len(s.only_in_b) for s in run.steps)
    one_sided_steps = len(run.steps_only_in_a) + len(run.steps_only_in_b)
    if run.passed:
        return f"PASSED: {len(tensors)} tensors in {len(run.steps)} step(s) within tolerance"
    parts = [f"{len(failed)} of {len(tensors)} tensors failed"]
    if failed:
        parts[0] += f" ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''})"
    if one_sided:
        parts.append(f"{one_sided} names on one side only")
    if one_sided_steps:
        parts.append(f"{one_sided_steps} steps on one side only")
    return "FAILED: " + "; ".join(parts)


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _num(x: float | None, fmt: str = ".3e") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, fmt)


def _fraction(x: float | None) -> str:
    if x is None:
        return "-"
    if 0 < x < 1e-4:
        return "<0.01%"
    return f"{x:.2%}"


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "inf", "-inf", "nan"
    if isinstance(v, tuple):
        return list(v)
    return v
