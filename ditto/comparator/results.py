"""What a comparison found, as plain data (printed by ditto.comparator.report)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TensorComparison:
    """One tensor of A against its partner in B. Statistics are None when shapes differ."""

    name: str
    name_b: str  # the partner's name in B (differs from `name` under an alias)
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    atol: float
    rtol: float
    nan_a: int
    nan_b: int
    inf_a: int
    inf_b: int
    max_abs: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None  # max |a - b| / |b| over finite positions with b != 0
    cosine: float | None = None
    frac_out_of_tol: float | None = None
    worst_index: tuple[int, ...] | None = None  # None when nothing differs
    worst_a: float | None = None  # the two values at worst_index
    worst_b: float | None = None

    @property
    def shape_match(self) -> bool:
        return self.shape_a == self.shape_b

    @property
    def dtype_match(self) -> bool:
        return self.dtype_a == self.dtype_b

    @property
    def passed(self) -> bool:
        # A NaN on either side counts as out of tolerance (ditto.comparator.stats), so it fails here.
        return self.shape_match and self.frac_out_of_tol == 0


@dataclass
class DumpComparison:
    """One step: every name present on both sides, and the names present on one side only."""

    label: str
    tensors: list[TensorComparison] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return _all_passed(self.tensors, self.only_in_a, self.only_in_b)


@dataclass
class RunComparison:
    """Two step files (one step) or two dump folders (steps paired by index)."""

    a: str
    b: str
    steps: list[DumpComparison] = field(default_factory=list)
    steps_only_in_a: list[str] = field(default_factory=list)
    steps_only_in_b: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return _all_passed(self.steps, self.steps_only_in_a, self.steps_only_in_b)


def _all_passed(paired, only_in_a, only_in_b) -> bool:
    """Every paired comparison passed and nothing is on one side only."""
    return all(c.passed for c in paired) and not only_in_a and not only_in_b
