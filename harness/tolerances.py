"""How far a probe may drift between two backends, per dtype, and why.

An element passes when `|a - b| <= atol * scale + rtol * |b|` (b: the reference), where `scale`
is `max(1, max |b|)` over the whole probe tensor. The scale is there because rounding errors
grow with the size of the values a layer carries, not with the size of each single element: a
hidden-state element near zero sits next to elements of 10 or more, and its error comes from
the same matmuls. The numbers are ditto.compare's per-dtype defaults; only `atol` is scaled.

| dtype    | atol (x scale) | rtol | why |
| ---      | ---  | ---  | --- |
| float32  | 1e-4 | 1e-4 | both sides compute in float32 and differ only in summation order and fusion; measured worst 1.6e-5 absolute at scale 17 (tiny-gemma, fx vs hf), about 1e-6 of the scale |
| float16  | 1e-2 | 1e-2 | the sides round at different points (HF after every op, ditto's attention in float32 in one kernel); measured worst needs 3.6e-3 x scale (tiny-gemma layers.1.mlp), ~3x headroom |
| bfloat16 | 5e-2 | 5e-2 | 3 fewer mantissa bits than float16 (eps 7.8e-3); measured worst needs 1.8e-2 x scale (tiny-gemma layers.1.out), ~3x headroom |

Integer tensors (token ids, positions) must be equal. `--ditto-atol` / `--ditto-rtol` override.
Adding a dtype is one line in TOLERANCES.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}


@dataclass(frozen=True)
class Tolerance:
    atol: float  # multiplied by max(1, max |reference|) per tensor
    rtol: float

    def as_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


def tolerance_for(dtype: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    default_atol, default_rtol = TOLERANCES[dtype]
    return Tolerance(default_atol if atol is None else atol, default_rtol if rtol is None else rtol)
