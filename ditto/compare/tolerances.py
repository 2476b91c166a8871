"""Default tolerances per dtype: how far two backends may drift before a tensor fails.

An element passes when `a == b` or `|a - b| <= atol + rtol * |b|` (B is the reference, as
in `torch.isclose`). When the two sides have different dtypes (a float16 run against a
float32 run), each tolerance is the looser of the two sides' defaults.

| dtype          | atol    | rtol    | why |
| ---            | ---     | ---     | --- |
| float64        | 1e-7    | 1e-7    | eps 2.2e-16; 1e-7 absorbs reduction-order differences and still flags any real bug |
| float32        | 1e-4    | 1e-4    | eps 1.2e-7; dot products over thousands of terms summed in another order (other kernels, fused ops) drift by ~1e-5 |
| float16        | 1e-2    | 1e-2    | eps 9.8e-4 (10-bit mantissa); every stored intermediate rounds by up to 5e-4, a layer chains several |
| bfloat16       | 5e-2    | 5e-2    | eps 7.8e-3 (7-bit mantissa): the same few-ulp budget as float16 |
| float8_e4m3fn  | 1.25e-1 | 1.25e-1 | eps 0.125 (3-bit mantissa): one ulp |
| float8_e5m2    | 2.5e-1  | 2.5e-1  | eps 0.25 (2-bit mantissa): one ulp |
| ints, bool     | 0       | 0       | token ids, positions, lengths and masks are exact by meaning |

Adding a dtype is one line in DEFAULT_TOLERANCES.
"""

from __future__ import annotations

import torch

from ditto.errors import DittoError

# dtype -> (atol, rtol); reasons in the module docstring.
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float8_e4m3fn: (1.25e-1, 1.25e-1),
    torch.float8_e5m2: (2.5e-1, 2.5e-1),
}


def default_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) for one dtype: the table above, exact for integers and bool."""
    if dtype.is_complex:
        raise DittoError(f"complex tensors ({dtype}) cannot be compared; dump real and imaginary parts separately")
    if not dtype.is_floating_point:
        return 0.0, 0.0
    if dtype not in DEFAULT_TOLERANCES:
        raise DittoError(f"no default tolerance for {dtype}; pass --atol and --rtol")
    return DEFAULT_TOLERANCES[dtype]


def tolerance_for(a: torch.dtype, b: torch.dtype, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """The tolerances to compare an `a` tensor with a `b` tensor: explicit values win, else the looser default."""
    for dtype in (a, b):
        if dtype.is_complex:
            raise DittoError(f"complex tensors ({dtype}) cannot be compared; dump real and imaginary parts separately")
    if atol is None or rtol is None:
        (atol_a, rtol_a), (atol_b, rtol_b) = default_tolerance(a), default_tolerance(b)
        atol = max(atol_a, atol_b) if atol is None else atol
        rtol = max(rtol_a, rtol_b) if rtol is None else rtol
    atol, rtol = float(atol), float(rtol)
    if not (atol >= 0 and rtol >= 0):
        raise DittoError(f"tolerances must be non-negative numbers (atol={atol}, rtol={rtol})")
    return atol, rtol
