"""Helpers for parity tests: run two backends on the same forced tokens and measure errors."""

from __future__ import annotations

import os

import torch

from ditto.runtime.backend import StepwiseRequest, get_backend

# batch of 3 ragged prompts (lengths 5, 2, 9), as the issue asks
PROMPTS = [[5, 9, 23, 7, 100], [3, 4], [17, 18, 19, 20, 21, 22, 23, 24, 25]]
PROBES = ["layers.0.attn", "layers.0.mlp", "layers.1.out", "final_norm"]

# Max abs error allowed on logits/probes, relative to the reference's largest magnitude
# (floor 1). float32: both sides compute in float32; only summation order differs, so errors
# are ~1e-6 — the bound is 1e-4. float16 (eps 9.8e-4) and bfloat16 (eps 7.8e-3): the
# two sides round at different points (HF casts after every op, ditto's attention keeps
# scores and softmax in float32 in one kernel), which costs a few eps of the largest value
# after two layers; measured worst 2e-3 (fp16) and 1.6e-2 (bf16) of max |logit| on the tiny
# models, so the bounds leave ~4x headroom.
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}


# DITTO_TEST_DEVICE=cuda runs the torch backends of these tests on a GPU (CI: cpu)
DEVICE = os.environ.get("DITTO_TEST_DEVICE", "cpu")


def forced_request(model: str, dtype=torch.float32, steps: int = 8, probes=PROBES) -> StepwiseRequest:
    """The request with HF's own greedy tokens forced on every backend."""
    request = StepwiseRequest(model=model, prompts=PROMPTS, steps=steps, dtype=dtype, probes=list(probes), device=DEVICE)
    reference = get_backend("hf").run(request)
    request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
    return request


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
