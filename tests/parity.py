"""Helpers for parity tests: run two backends on the same forced tokens and judge or measure errors.

Every bound comes from ditto.comparator.tolerances (the project's one tolerance module):
`verdict` applies its rule as the harness does (fixed against hf in float32; in float16 and
bfloat16 against the float32 oracle within hf's own noise band), `worst_errors` measures
max |a - b| / max(1, max |b|), which the fixed rule bounds by its atol (plus rtol, which only
loosens it), so `worst_errors(...) <= bound(dtype)` is the fixed rule or stricter.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ditto.comparator import RunComparison
from ditto.comparator.tolerances import (
    CALIBRATED_DTYPES,
    FIXED_TOLERANCES,
    ORACLE_DTYPE,
    CalibratedRule,
    fixed_tolerance,
    noise_band,
)
from ditto.runtime.backend import StepwiseRequest, get_backend
from harness.comparison import compare_runs, compared_names, failure_message, first_divergence

# batch of 3 ragged prompts (lengths 5, 2, 9), as the issue asks
PROMPTS = [[5, 9, 23, 7, 100], [3, 4], [17, 18, 19, 20, 21, 22, 23, 24, 25]]
PROBES = ["layers.0.attn", "layers.0.mlp", "layers.1.out", "final_norm"]

# DITTO_TEST_DEVICE=cuda runs the torch backends of these tests on a GPU (CI: cpu)
DEVICE = os.environ.get("DITTO_TEST_DEVICE", "cpu")


def bound(dtype: torch.dtype) -> float:
    """The fixed rule's atol for `dtype`: the most worst_errors() may report."""
    return FIXED_TOLERANCES[dtype][0]


FLOAT32_BOUND = bound(torch.float32)


def forced_request(model: str, dtype=torch.float32, steps: int = 8, probes=PROBES) -> StepwiseRequest:
    """The request with HF's own greedy tokens forced on every backend."""
    request = StepwiseRequest(model=model, prompts=PROMPTS, steps=steps, dtype=dtype, probes=list(probes), device=DEVICE)
    reference = get_backend("hf").run(request)
    request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
    return request


def verdict(request: StepwiseRequest, reference: list[dict], got: list[dict], name: str = "fx") -> RunComparison:
    """`got` judged by the project's default rule for the request's dtype; `reference` is hf's run of it."""
    names = compared_names(list(request.probes) + ["logits"])
    reference, got = _select(reference, names), _select(got, names)
    if request.dtype in CALIBRATED_DTYPES:
        oracle = _select(get_backend("hf").run(dataclasses.replace(request, dtype=ORACLE_DTYPE)), names)
        return compare_runs(got, oracle, noise_band(reference, oracle, CalibratedRule(request.dtype)), name, "oracle")
    return compare_runs(got, reference, fixed_tolerance(request.dtype), name, "hf")


def assert_passes(run: RunComparison) -> None:
    assert first_divergence(run) is None, failure_message(run, "(not written)")


def worst_errors(reference: list[dict], other: list[dict]) -> dict[str, float]:
    """name -> max over steps of max abs error / max(1, max |reference|)."""
    errors: dict[str, float] = {}
    assert len(reference) == len(other)
    for ref, got in zip(reference, other):
        for name, value in ref.items():
            if not value.is_floating_point():
                continue
            assert got[name].shape == value.shape, (name, got[name].shape, value.shape)
            scale = max(1.0, value.float().abs().max().item())
            error = (got[name].float() - value.float()).abs().max().item() / scale
            errors[name] = max(errors.get(name, 0.0), error)
    return errors


def materialized(program):
    """The program with its weights on the test device, ready for run_program."""
    from ditto.runtime.fx import place_on_device

    program.materialize(DEVICE)
    place_on_device(program.graph_module, DEVICE)
    return program


def _select(dumps: list[dict], names: list[str]) -> list[dict]:
    return [{n: d[n] for n in names if n in d} for d in dumps]
