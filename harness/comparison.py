"""Two runs of one model compared step by step, probe by probe, shallowest probe first.

Built on ditto.comparator (one TensorComparison per step and name, so `format_table` and `to_json`
print the full result); this module applies a rule of ditto.comparator.tolerances (the fixed
rule, or the calibrated rule's noise band, per step and name), adds the order by depth, and
the verdict people read first: the first diverging probe, i.e. the earliest step that fails
and, inside it, the shallowest failing probe (token ids first, then layer 0's attention, MLP,
output, layer 1 ...). With token forcing every later difference may be a consequence of that
one, so that is where to look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ditto.comparator import DumpComparison, RunComparison, TensorComparison, compare_tensors
from harness.models import probe_depth

# inputs every backend must have been fed identically (token forcing)
FORCED_INPUTS = ("input_ids", "position_ids")


def compared_names(probes: list[str]) -> list[str]:
    return list(FORCED_INPUTS) + list(probes)


def name_depth(name: str) -> tuple:
    """Order of a dump name: forced inputs first, then probes by depth (fingerprint parts after their probe)."""
    if name in FORCED_INPUTS:
        return (-1, FORCED_INPUTS.index(name), 0)
    probe, _, part = name.partition("::")
    return (*probe_depth(probe), part)


def compare_runs(candidate: list[dict], reference: list[dict], tolerance, a: str, b: str) -> RunComparison:
    """`candidate` (A) against `reference` (B), both lists of step dumps holding the same names.

    `tolerance`: a FixedTolerance or a NoiseBand (ditto.comparator.tolerances), asked per step and name.
    """
    run = RunComparison(a=a, b=b)
    for i, (got, want) in enumerate(zip(candidate, reference)):
        step = DumpComparison(label=f"step{i}")
        for name in sorted(want, key=name_depth):
            if name not in got:
                step.only_in_b.append(name)
                continue
            step.tensors.append(_compare(got[name], want[name], tolerance, i, name))
        step.only_in_a = sorted((n for n in got if n not in want), key=name_depth)
        run.steps.append(step)
    run.steps_only_in_a = [f"step{i}" for i in range(len(reference), len(candidate))]
    run.steps_only_in_b = [f"step{i}" for i in range(len(candidate), len(reference))]
    return run


def _compare(a: torch.Tensor, b: torch.Tensor, tolerance, step: int, name: str) -> TensorComparison:
    if not (a.is_floating_point() or b.is_floating_point()):
        return compare_tensors(a, b, 0.0, 0.0, name=name)
    if a.shape != b.shape:
        return compare_tensors(a, b, 0.0, 0.0, name=name)  # fails on the shapes
    atol, rtol = tolerance.for_tensor(step, name, b)
    return compare_tensors(a, b, atol, rtol, name=name)


@dataclass
class Divergence:
    step: int
    name: str
    detail: str  # what failed, in words

    @property
    def layer(self) -> str:
        match = re.match(r"layers\.(\d+)\.", self.name)
        return f"layer {match.group(1)}" if match else self.name.partition("::")[0]


def first_divergence(run: RunComparison) -> Divergence | None:
    for i, step in enumerate(run.steps):
        for t in step.tensors:  # already in depth order
            if not t.passed:
                return Divergence(i, t.name, describe(t))
        if step.only_in_b:
            return Divergence(i, step.only_in_b[0], f"missing from {run.a}")
        if step.only_in_a:
            return Divergence(i, step.only_in_a[0], f"not in {run.b}")
    if run.steps_only_in_a or run.steps_only_in_b:
        extra = run.steps_only_in_a or run.steps_only_in_b
        return Divergence(len(run.steps), extra[0], f"{run.a} has {len(run.steps) + len(run.steps_only_in_a)} "
                          f"steps, {run.b} has {len(run.steps) + len(run.steps_only_in_b)}")
    return None


def worst_by_name(run: RunComparison) -> dict[str, TensorComparison]:
    """Per name, its worst step (failing first, then largest max abs error), in depth order."""
    worst: dict[str, TensorComparison] = {}
    for step in run.steps:
        for t in step.tensors:
            current = worst.get(t.name)
            if current is None or _badness(t) > _badness(current):
                worst[t.name] = t
    return dict(sorted(worst.items(), key=lambda kv: name_depth(kv[0])))


def _badness(t: TensorComparison) -> tuple:
    return (not t.passed, not t.shape_match, t.max_abs or 0.0)


def describe(t: TensorComparison) -> str:
    if not t.shape_match:
        return f"shapes differ: {list(t.shape_a)} here, {list(t.shape_b)} in the reference"
    text = f"max abs {_num(t.max_abs)}, max rel {_num(t.max_rel)} (atol {t.atol:.1e}, rtol {t.rtol:.1e})"
    if t.frac_out_of_tol:
        text += f", {t.frac_out_of_tol:.1%} out of tolerance"
    if t.nan_a or t.nan_b:
        text += f", NaN {t.nan_a} here / {t.nan_b} in the reference"
    return text


def failure_message(run: RunComparison, report: str) -> str:
    div = first_divergence(run)
    assert div is not None
    lines = [f"{run.a} diverges from {run.b}: first at {div.name} ({div.layer}, step {div.step}): {div.detail}"]
    failed = sum(1 for s in run.steps for t in s.tensors if not t.passed)
    total = sum(len(s.tensors) for s in run.steps)
    lines.append(f"{failed} of {total} (step, name) pairs fail. Worst per name:")
    for name, t in worst_by_name(run).items():
        lines.append(f"  {'FAIL' if not t.passed else 'ok  '} {name:<24} {describe(t)}")
    lines.append(f"full comparison: {report}")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3e}"
