"""Every tolerance in ditto and why: the one table for `ditto compare`, the harness and the tests.

Two rules. B is always the reference side; "scale" is a tensor's largest magnitude.

## Fixed rule: float32 and wider runs, `ditto compare`, explicit tolerances

An element passes when `|a - b| <= atol * max(1, max |b|) + rtol * |b|`. The atol is scaled by
the tensor's largest magnitude because rounding errors grow with the size of the values a
layer carries, not with each single element: an element near zero sits next to elements of 10
or more, and its error comes from the same matmuls. Explicit tolerances (`--atol`,
`--ditto-atol`) are taken as given, unscaled (`torch.isclose`'s rule). Between two dtypes (a
float16 dump against a float32 one) each default is the looser side's.

| dtype          | atol    | rtol    | why |
| ---            | ---     | ---     | --- |
| float64        | 1e-7    | 1e-7    | eps 2.2e-16; absorbs reduction-order differences, flags any real bug |
| float32        | 1e-4    | 1e-4    | (1) |
| float16        | 1e-2    | 1e-2    | (2) eps 9.8e-4; measured worst 3.6e-3 x scale at 2 layers (tiny-gemma) |
| bfloat16       | 5e-2    | 5e-2    | (2) eps 7.8e-3; measured worst 1.8e-2 x scale at 2 layers (tiny-gemma) |
| float8_e4m3fn  | 1.25e-1 | 1.25e-1 | eps 0.125 (3-bit mantissa): one ulp |
| float8_e5m2    | 2.5e-1  | 2.5e-1  | eps 0.25 (2-bit mantissa): one ulp |
| ints, bool     | 0       | 0       | token ids, positions, lengths and masks are exact by meaning |

(1) Both sides compute in float32 and differ only in summation order and fusion: measured
worst 1.6e-5 absolute at scale 17 (tiny-gemma, fx vs hf), ~1e-6 of the scale, and it stays
there at depth (the error does not compound the way half-precision rounding does).
(2) Only where no oracle runs (`ditto compare`, `--ditto-oracle-device none`): at depth no
fixed half-precision bound holds (fx vs hf on a Qwen2.5-1.5B shape in bfloat16: 0.137 of the
scale at layer 27, with no bug).

## Calibrated rule: float16 and bfloat16 runs of a model (the harness's default there)

Half-precision rounding compounds with depth: on a 28-layer Qwen2.5-1.5B shape in bfloat16,
Hugging Face's own run is 4.6e-2 of the scale off its float32 run at layer 27, while on a
2-layer model it is 2e-3. So a half-precision run also gets an oracle, the same model in
float32 (Hugging Face eager, the same forced tokens), and the noise of the reference
implementation is measured in the run itself: per probe and step, `noise = max |hf - oracle|`
with hf run in the run dtype. Each backend X is then judged by its own distance from the
oracle:

    max |X - oracle|  <=  min(FACTOR * noise + FLOOR_ULPS * eps(dtype) * scale,  CEILING * scale)

with scale = max |oracle| of that probe and step.

- FACTOR 4: a correct backend computes the same function with the same number format and
  rounds at other points (fused kernels, float32 attention), so its error is of the size of
  hf's: measured worst ratio 1.6 (fx, 24-layer Llama and Qwen2 shapes, bfloat16, every probe
  and step), 1.0 at layer 27 of the Qwen2.5-1.5B shape (issue 10). The planted attention
  bugs (wrong RoPE base, swapped K/V, wrong GQA head map, off-by-one mask) measure 16x to
  300x at the first probe after them (tests/compare/test_verdicts_at_depth.py), so 4 keeps 2.5x
  headroom on both sides.
- FLOOR 2 ulps of the scale: where hf happens to round well (tiny tensors, a lucky step) the
  noise can be near zero while a correct backend that rounds its output once more is off by
  an ulp of the largest value; a bug hidden under 2 ulps is below what half precision can
  show at all.
- CEILING half the scale: if hf itself breaks down in the run dtype (float16 overflow, NaN),
  its noise would allow anything; no backend passes more than 50% off the oracle, and a NaN
  or infinite noise counts as the ceiling.

Because each backend is judged against the oracle, two backends are never compared directly
in half precision: every backend gets one verdict, `X-vs-hf`. float32 runs keep the fixed rule:
there the sides agree to ~1e-6 of the scale at any depth, so a fixed 1e-4 both holds and
catches every bug in tests/pipeline/test_broken_passes_caught.py by orders of magnitude; an oracle would
double the run time to gain nothing.

Adding a dtype is one line in FIXED_TOLERANCES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ditto.errors import DittoError

# dtype -> (atol, rtol); reasons in the module docstring.
FIXED_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float8_e4m3fn: (1.25e-1, 1.25e-1),
    torch.float8_e5m2: (2.5e-1, 2.5e-1),
}

CALIBRATED_DTYPES = (torch.float16, torch.bfloat16)  # run dtypes that get an oracle by default
FACTOR = 4.0
FLOOR_ULPS = 2.0
CEILING = 0.5
ORACLE_DTYPE = torch.float32

_MAX_CHUNK = 1 << 20  # elements per step of `max_magnitude` (no full-size temporary for big dumps)


def _check_real(dtype: torch.dtype) -> None:
    if dtype.is_complex:
        raise DittoError(f"complex tensors ({dtype}) cannot be compared; dump real and imaginary parts separately")


def default_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) of the fixed rule for one dtype, exact for integers and bool."""
    _check_real(dtype)
    if not dtype.is_floating_point:
        return 0.0, 0.0
    if dtype not in FIXED_TOLERANCES:
        raise DittoError(f"no default tolerance for {dtype}; pass --atol and --rtol")
    return FIXED_TOLERANCES[dtype]


def max_magnitude(t: torch.Tensor) -> float:
    """max |t| over the finite elements (0 for an empty tensor), in chunks."""
    flat, best = t.reshape(-1), 0.0
    for lo in range(0, flat.numel(), _MAX_CHUNK):
        chunk = flat[lo : lo + _MAX_CHUNK].double().abs()
        chunk = chunk[torch.isfinite(chunk)]
        if chunk.numel():
            best = max(best, chunk.max().item())
    return best


@dataclass(frozen=True)
class FixedTolerance:
    """The fixed rule: `atol` (times max(1, max |b|) when `scaled`) + `rtol` * |b|."""

    atol: float
    rtol: float
    scaled: bool = True

    def __post_init__(self):
        if not (self.atol >= 0 and self.rtol >= 0):
            raise DittoError(f"tolerances must be non-negative numbers (atol={self.atol}, rtol={self.rtol})")

    def absolute(self, reference: torch.Tensor) -> tuple[float, float]:
        """(atol, rtol) to apply elementwise against this reference tensor."""
        if not self.scaled:
            return self.atol, self.rtol
        if not reference.is_floating_point():
            return 0.0, 0.0  # ids, positions, lengths: exact by meaning
        return self.atol * max(1.0, max_magnitude(reference)), self.rtol

    def for_tensor(self, step: int, name: str, reference: torch.Tensor) -> tuple[float, float]:
        return self.absolute(reference)

    def as_dict(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol} if self.scaled else {"atol": self.atol, "rtol": self.rtol,
                                                                             "scaled": False}


def fixed_tolerance(dtype: torch.dtype, atol: float | None = None, rtol: float | None = None,
                    other: torch.dtype | None = None) -> FixedTolerance:
    """The fixed rule for `dtype` (and `other`, the looser side wins); explicit values are absolute."""
    for d in (dtype, other):
        if d is not None:
            _check_real(d)
    if atol is not None and rtol is not None:
        return FixedTolerance(float(atol), float(rtol), scaled=False)
    defaults = [default_tolerance(d) for d in (dtype, other) if d is not None]
    default_atol, default_rtol = max(a for a, _ in defaults), max(r for _, r in defaults)
    if atol is None and rtol is None:
        return FixedTolerance(default_atol, default_rtol)
    # one side given: it means what it says; the other keeps its default, unscaled alike
    return FixedTolerance(float(default_atol if atol is None else atol), float(default_rtol if rtol is None else rtol),
                          scaled=False)


@dataclass(frozen=True)
class CalibratedRule:
    """The calibrated rule's numbers (see the module docstring for the reasons)."""

    dtype: torch.dtype  # the run dtype (its eps sets the floor)
    factor: float = FACTOR
    floor_ulps: float = FLOOR_ULPS
    ceiling: float = CEILING
    oracle_dtype: torch.dtype = ORACLE_DTYPE

    def allowed(self, noise: float, scale: float) -> float:
        """Largest |X - oracle| allowed for one probe and step, given hf's noise and the oracle's scale."""
        cap = self.ceiling * scale
        if not math.isfinite(noise):
            return cap
        return min(self.factor * noise + self.floor_ulps * torch.finfo(self.dtype).eps * scale, cap)

    def as_dict(self) -> dict:
        return {"rule": "calibrated", "factor": self.factor, "floor_ulps": self.floor_ulps, "ceiling": self.ceiling,
                "dtype": _name(self.dtype), "oracle_dtype": _name(self.oracle_dtype)}

    def describe(self) -> str:
        return (f"each probe and step within min({self.factor:g} x |hf {_name(self.dtype)} - oracle| + "
                f"{self.floor_ulps:g} ulp x max|oracle|, {self.ceiling:g} x max|oracle|) of the oracle "
                f"(hf in {_name(self.oracle_dtype)})")


@dataclass
class NoiseBand:
    """The calibrated rule applied to one run: per step and name, hf's noise and the error allowed."""

    rule: CalibratedRule
    noise: list[dict[str, float]]
    allowed: list[dict[str, float]]

    def for_tensor(self, step: int, name: str, reference: torch.Tensor) -> tuple[float, float]:
        if not reference.is_floating_point():
            return 0.0, 0.0
        try:
            return self.allowed[step][name], 0.0
        except (IndexError, KeyError):
            raise DittoError(f"no noise band for {name} at step {step}: the oracle and hf runs lack it") from None

    def as_dict(self) -> dict:
        return self.rule.as_dict()


def noise_band(reference: list[dict[str, torch.Tensor]], oracle: list[dict[str, torch.Tensor]],
               rule: CalibratedRule) -> NoiseBand:
    """The band around `oracle` from `reference` (hf in the run dtype), for every floating name of every step."""
    if len(reference) != len(oracle):
        raise DittoError(f"the oracle has {len(oracle)} steps, the reference {len(reference)}; both must run the "
                         "same request")
    noise, allowed = [], []
    for step, (ref, orc) in enumerate(zip(reference, oracle)):
        step_noise, step_allowed = {}, {}
        for name, want in orc.items():
            if not want.is_floating_point():
                continue
            if name not in ref or ref[name].shape != want.shape:
                raise DittoError(f"oracle and reference disagree on {name} at step {step}; both must run the same "
                                 "request")
            if not torch.isfinite(want).all():
                raise DittoError(f"the oracle ({_name(rule.oracle_dtype)}) has NaN/Inf in {name} at step {step}; "
                                 "the model itself is broken at that precision")
            diff = (ref[name].double() - want.double()).abs()
            n = math.inf if diff.isnan().any() else (diff.max().item() if diff.numel() else 0.0)
            step_noise[name] = n
            step_allowed[name] = rule.allowed(n, max_magnitude(want))
        noise.append(step_noise)
        allowed.append(step_allowed)
    return NoiseBand(rule, noise, allowed)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
