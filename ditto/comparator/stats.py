"""Elementwise statistics of two same-shape tensors, in bounded memory.

Both tensors are walked in flat chunks (mmapped dumps are paged in chunk by chunk, never
copied whole). Per chunk one function, `_finite_stats`, computes every statistic at once:
elementwise in float32 for float inputs of at most 32 bits (their difference is exact or
off by one float32 rounding, 6e-8 relative) and float64 otherwise; every sum accumulates in
float64. It assumes finite values, and says when that was wrong: its sums of squares come
out non-finite. Such a chunk is recomputed by `_exact_stats`, eager float64 with the NaN/Inf
rules:

- a NaN on either side is out of tolerance, even facing a NaN (NaN never passes);
- equal infinities are equal (difference 0); any other infinity is out of tolerance;
- max/mean abs skip positions with a NaN (an infinity shows as an infinite max); max rel and
  cosine use positions where both sides are finite (max rel also skips b == 0);
- the worst element is the largest |a - b| with NaN ranked above everything, first in
  row-major order on ties; none when nothing differs.

Integers and bool are compared as float64: exact up to 2**53 (ids, positions and lengths are
far below).

Speed (bench/compare_bandwidth.py on a 2-core CPU machine, two 2 GiB float32 dumps): eagerly
`_finite_stats` is ~25 torch ops per chunk, ~1.3 GB/s of input. With `compiled=True` it runs
through `torch.compile`: one fused vectorised loop, 20-30 GB/s, but compiling costs ~3 s once
per process and dtype pair with torch's disk cache warm (~9 s cold). Callers ask for it from
COMPILE_MIN_NUMEL elements, where the eager time has grown to that cost. Without a working
compiler the eager path runs, with a warning.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import torch

# Elements per eager step. Measured: 16K is ~1.5 GB/s, 64K is 3x slower (temporaries above
# malloc's mmap threshold fault in fresh pages every op; ops above torch's 32K grain go
# multi-threaded and stall when other processes hold the cores).
EAGER_CHUNK = 1 << 14
COMPILED_CHUNK = 1 << 20  # elements per compiled step (the kernel is specialised to it); measured best here
ARGMAX_BLOCK = 1 << 16  # elements per step of the search for the worst element
COMPILE_MIN_NUMEL = 1 << 29  # 512M elements (2 GiB of float32 per side): eager ~3 s, as long as compiling


@dataclass
class ElementStats:
    """Sums and extremes over all elements; TensorComparison turns them into the reported numbers."""

    n_out: int = 0  # elements out of tolerance
    sum_abs: float = 0.0  # sum of |a - b| over positions without NaN
    n_abs: int = 0  # number of those positions
    max_abs: float = 0.0
    max_rel: float = 0.0
    ab: float = 0.0  # dot products over positions where both sides are finite (cosine)
    aa: float = 0.0
    bb: float = 0.0
    nan_a: int = 0
    nan_b: int = 0
    inf_a: int = 0
    inf_b: int = 0
    worst_rank: float = 0.0  # |a - b| of the worst element, inf for NaN
    worst_flat: int | None = None  # its flat index


def elementwise_stats(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float, compiled: bool) -> ElementStats:
    """Statistics of `a` against `b` (same shape), chunk by chunk; `compiled`: see the module docstring."""
    af, bf = a.reshape(-1), b.reshape(-1)
    n = af.numel()
    chunk = COMPILED_CHUNK if compiled else EAGER_CHUNK
    tols = (torch.tensor(atol, dtype=torch.float64), torch.tensor(rtol, dtype=torch.float64))
    acc = ElementStats()
    worst_lo, worst_exact = None, False  # the chunk holding the worst element, searched once at the end
    for lo in range(0, n, chunk):
        x, y = af[lo : lo + chunk], bf[lo : lo + chunk]
        if compiled and x.numel() == chunk:  # the tail chunk would need a second compilation
            part = _run_compiled(x, y, *tols)
        else:
            part = _finite_stats(x, y, *tols)
        n_out, sum_abs, max_abs, max_rel, ab, aa, bb = part.tolist()
        exact = not (math.isfinite(aa) and math.isfinite(bb))
        if exact:
            n_out, sum_abs, n_abs, max_abs, rank, max_rel, ab, aa, bb, nan_a, nan_b, inf_a, inf_b = (
                _exact_stats(x, y, atol, rtol).tolist()
            )
        else:
            nan_a = nan_b = inf_a = inf_b = 0
            n_abs, rank = x.numel(), max_abs
        acc.n_out += int(n_out)
        acc.sum_abs += sum_abs
        acc.n_abs += int(n_abs)
        acc.max_abs = max(acc.max_abs, max_abs)
        acc.max_rel = max(acc.max_rel, max_rel)
        acc.ab, acc.aa, acc.bb = acc.ab + ab, acc.aa + aa, acc.bb + bb
        acc.nan_a, acc.nan_b = acc.nan_a + int(nan_a), acc.nan_b + int(nan_b)
        acc.inf_a, acc.inf_b = acc.inf_a + int(inf_a), acc.inf_b + int(inf_b)
        if rank > acc.worst_rank:  # strictly: the first worst element in row-major order wins
            acc.worst_rank, worst_lo, worst_exact = rank, lo, exact
    if worst_lo is not None:
        x, y = af[worst_lo : worst_lo + chunk], bf[worst_lo : worst_lo + chunk]
        if worst_exact:
            offset = torch.argmax(_rank(x.double(), y.double()))
        else:
            offset = _argmax_abs_diff(x, y)
        acc.worst_flat = worst_lo + int(offset)
    return acc


def _argmax_abs_diff(x: torch.Tensor, y: torch.Tensor) -> int:
    """Flat index of the largest |x - y| (first on ties), in the arithmetic of `_finite_stats`.

    Walks cache-sized blocks: eager ops on a whole chunk fault in fresh pages for every
    temporary and cost more than the compiled kernel's pass over that chunk.
    """
    ct = _compute_dtype(x, y)
    best, best_index = -1.0, 0
    for lo in range(0, x.numel(), ARGMAX_BLOCK):
        value, index = (x[lo : lo + ARGMAX_BLOCK].to(ct) - y[lo : lo + ARGMAX_BLOCK].to(ct)).abs_().max(0)
        if value.item() > best:
            best, best_index = value.item(), lo + int(index)
    return best_index


def count_nonfinite(t: torch.Tensor) -> tuple[int, int]:
    """(NaN count, Inf count) of one tensor, chunk by chunk (for tensors with no partner)."""
    flat = t.reshape(-1)
    if not t.dtype.is_floating_point:
        return 0, 0
    nan = inf = 0
    for lo in range(0, flat.numel(), EAGER_CHUNK):
        x = flat[lo : lo + EAGER_CHUNK]
        nan += int(x.isnan().sum())
        inf += int(x.isinf().sum())
    return nan, inf


def _compute_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    narrow = all(t.dtype.is_floating_point and t.element_size() <= 4 for t in (a, b))
    return torch.float32 if narrow else torch.float64


def _finite_stats(a: torch.Tensor, b: torch.Tensor, atol: torch.Tensor, rtol: torch.Tensor) -> torch.Tensor:
    """[n_out, sum_abs, max_abs, max_rel, ab, aa, bb] of one chunk; right only if all values are finite."""
    ct = _compute_dtype(a, b)
    x, y = a.to(ct), b.to(ct)
    d = (x - y).abs()
    y_abs = y.abs()
    n_out = (d > atol.to(ct) + rtol.to(ct) * y_abs).sum(dtype=torch.int32)  # int32: half the vector work of int64
    rel = torch.where(y_abs > 0, d / y_abs, 0.0)
    x64, y64 = x.double(), y.double()
    return torch.stack(
        [
            n_out.double(),
            d.double().sum(),
            d.max().double(),
            rel.max().double(),
            (x64 * y64).sum(),
            (x64 * x64).sum(),
            (y64 * y64).sum(),
        ]
    )


def _rank(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x - y| with equal infinities at 0 and NaN (either side) at +inf: what 'worst' means."""
    d = torch.where(x == y, 0.0, (x - y).abs())
    return torch.where(x.isnan() | y.isnan(), math.inf, d)


def _exact_stats(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    """[n_out, sum_abs, n_abs, max_abs, worst_rank, max_rel, ab, aa, bb, nan_a, nan_b, inf_a, inf_b]
    of one non-empty chunk, with the NaN/Inf rules of the module docstring."""
    x, y = a.double(), b.double()
    nan_x, nan_y = x.isnan(), y.isnan()
    no_nan = ~(nan_x | nan_y)
    finite = x.isfinite() & y.isfinite()
    rank = _rank(x, y)
    d = torch.where(no_nan, rank, 0.0)
    y_abs = y.abs()
    within = (x == y) | (finite & (d <= atol + rtol * y_abs))
    rel = torch.where(finite & (y_abs > 0), d / y_abs, 0.0)
    x0, y0 = torch.where(finite, x, 0.0), torch.where(finite, y, 0.0)
    return torch.stack(
        [
            (~within).sum().double(),
            d.sum(),
            no_nan.sum().double(),
            d.max(),
            rank.max(),
            rel.max(),
            (x0 * y0).sum(),
            (x0 * x0).sum(),
            (y0 * y0).sum(),
            nan_x.sum().double(),
            nan_y.sum().double(),
            x.isinf().sum().double(),
            y.isinf().sum().double(),
        ]
    )


@functools.cache
def _compiled_kernel():
    return torch.compile(_finite_stats, dynamic=False)


_compile_failed = False


def _run_compiled(x, y, atol, rtol) -> torch.Tensor:
    """`_finite_stats` compiled; eager (with one warning) where this machine cannot compile."""
    global _compile_failed
    if not _compile_failed:
        try:
            return _compiled_kernel()(x, y, atol, rtol)
        except Exception as e:  # no C++ compiler, unsupported platform: the eager path gives the same numbers
            _compile_failed = True
            warnings.warn(f"ditto compare: torch.compile failed ({type(e).__name__}: {e}); comparing eagerly, slower", stacklevel=2)
    return _finite_stats(x, y, atol, rtol)
