"""ditto.comparator: identical dumps are clean, a planted difference is found exactly, NaN never passes."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ditto.comparator import compare_dumps, compare_paths, compare_tensors, format_table, stats, to_json
from ditto.dumps import save_step, save_steps
from ditto.errors import DittoError

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
shapes = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**31 - 1)


def random_tensor(shape, dtype, seed, scale=10.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(-1000, 1000, shape, generator=gen).to(dtype)


def flat_to_index(flat: int, shape) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


@contextlib.contextmanager
def chunks_of_a_few_elements(enabled: bool = True, chunk: int = 5, block: int = 3):
    """Small tensors then cross many chunk boundaries (hypothesis needs a context, not a fixture)."""
    with pytest.MonkeyPatch.context() as mp:
        if enabled:
            mp.setattr(stats, "EAGER_CHUNK", chunk)
            mp.setattr(stats, "ARGMAX_BLOCK", block)
        yield


@pytest.fixture
def small_chunks():
    with chunks_of_a_few_elements():
        yield


# --- identical dumps --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    entries=st.lists(
        st.tuples(shapes, st.sampled_from(FLOATS + [torch.int32, torch.int64, torch.bool]), seeds),
        min_size=1,
        max_size=4,
    )
)
def test_identical_dumps_compare_clean(entries):
    a = {f"t{i}": random_tensor(shape, dtype, seed) for i, (shape, dtype, seed) in enumerate(entries)}
    b = {name: t.clone() for name, t in a.items()}
    result = compare_dumps(a, b)
    assert result.passed, format_table(result)
    assert not result.only_in_a and not result.only_in_b
    for t in result.tensors:
        assert t.max_abs == 0 and t.mean_abs == 0 and t.max_rel == 0 and t.frac_out_of_tol == 0
        assert t.worst_index is None
        assert t.cosine == pytest.approx(1.0, abs=1e-12)


# --- a planted difference ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from(FLOATS),
    seed=seeds,
    where=st.floats(0, 1, exclude_max=True),
    delta=st.floats(0.5, 1e3) | st.floats(-1e3, -0.5),
    chunked=st.booleans(),
)
def test_planted_difference_is_reported_at_its_index_with_its_size(shape, dtype, seed, where, delta, chunked):
    # Values within +-1: the planted delta (>= 0.5) is the only difference and above every tolerance.
    b = random_tensor(shape, dtype, seed, scale=0.3).clamp(-1, 1)
    a = b.clone()
    flat = int(where * a.numel())
    index = flat_to_index(flat, shape)
    a[index] = (a[index].double() + delta).to(dtype)
    planted = abs(a[index].double().item() - b[index].double().item())  # the delta after rounding to dtype

    with chunks_of_a_few_elements(chunked):
        r = compare_tensors(a, b)
    assert not r.passed
    assert r.worst_index == index
    assert r.max_abs == pytest.approx(planted, rel=1e-6)
    assert r.mean_abs == pytest.approx(planted / a.numel(), rel=1e-6)
    assert r.frac_out_of_tol == pytest.approx(1 / a.numel(), rel=1e-12)
    assert (r.worst_a, r.worst_b) == (a[index].item(), b[index].item())
    if b[index] != 0:
        assert r.max_rel == pytest.approx(planted / abs(b[index].double().item()), rel=1e-6)


@pytest.mark.parametrize("chunk, block", [(5, 3), (1000, 3), (1000, 1000)])  # ties across chunks, blocks, within
def test_ties_report_the_first_worst_element_in_row_major_order(chunk, block):
    b = torch.zeros(4, 6)
    a = b.clone()
    a[3, 1] = 2.0
    a[1, 4] = -2.0  # same magnitude, earlier in row-major order
    with chunks_of_a_few_elements(chunk=chunk, block=block):
        r = compare_tensors(a, b)
    assert r.worst_index == (1, 4)
    assert r.max_abs == 2.0


def test_known_statistics():
    a = torch.tensor([1.0, 2.0, 0.0, 4.0])
    b = torch.tensor([1.0, 2.5, 0.25, 0.0])
    r = compare_tensors(a, b, atol=0.3, rtol=0.0)
    assert r.max_abs == 4.0
    assert r.mean_abs == pytest.approx((0 + 0.5 + 0.25 + 4.0) / 4)
    assert r.max_rel == pytest.approx(1.0)  # 0.25 / 0.25 at index 2; index 3 (b == 0) is skipped
    assert r.frac_out_of_tol == pytest.approx(2 / 4)  # 0.5 and 4.0 exceed atol 0.3
    dot = 1 * 1 + 2 * 2.5
    assert r.cosine == pytest.approx(dot / (math.sqrt(1 + 4 + 16) * math.sqrt(1 + 6.25 + 0.0625)), rel=1e-12)


def test_cosine_of_orthogonal_opposite_and_zero_tensors():
    assert compare_tensors(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).cosine == pytest.approx(0.0)
    assert compare_tensors(torch.tensor([1.0, -2.0]), torch.tensor([-1.0, 2.0])).cosine == pytest.approx(-1.0)
    assert compare_tensors(torch.zeros(3), torch.zeros(3)).cosine == 1.0
    assert compare_tensors(torch.zeros(3), torch.ones(3)).cosine == 0.0


# --- tolerances -------------------------------------------------------------------------------


def test_default_tolerances_follow_the_dtype():
    b = torch.ones(8)
    assert compare_tensors(b + 5e-5, b).passed  # float32: 1e-4 + 1e-4 * 1
    assert not compare_tensors(b + 5e-4, b).passed
    b16 = torch.ones(8, dtype=torch.float16)
    assert compare_tensors(b16 + 0.0078125, b16).passed  # float16: 1e-2 + 1e-2 * 1
    assert not compare_tensors(b16 + 0.03125, b16).passed
    ids = torch.arange(8, dtype=torch.int32)
    assert compare_tensors(ids, ids.clone()).atol == 0
    changed = ids.clone()
    changed[5] += 1
    r = compare_tensors(changed, ids)
    assert not r.passed and r.worst_index == (5,) and r.max_abs == 1


def test_b_is_the_reference_for_rtol():
    r = compare_tensors(torch.tensor([1.0]), torch.tensor([2.0]), atol=0.0, rtol=0.5)
    assert r.passed  # |1 - 2| <= 0.5 * |2|
    r = compare_tensors(torch.tensor([2.0]), torch.tensor([1.0]), atol=0.0, rtol=0.5)
    assert not r.passed  # |2 - 1| > 0.5 * |1|


def test_different_dtypes_use_the_looser_tolerance_and_do_not_fail_by_themselves():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16)
    b = torch.tensor([1.0, 2.0, 3.004])
    r = compare_tensors(a, b)
    assert r.passed and not r.dtype_match
    assert (r.atol, r.rtol) == (pytest.approx(1e-2 * 3.004), 1e-2)  # float16's, atol times max |b|


def test_bad_tolerances_are_errors():
    with pytest.raises(DittoError, match="non-negative"):
        compare_tensors(torch.ones(2), torch.ones(2), atol=-1.0)
    with pytest.raises(DittoError, match="complex"):
        compare_tensors(torch.ones(2, dtype=torch.complex64), torch.ones(2, dtype=torch.complex64))


# --- NaN and Inf ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from(FLOATS),
    seed=seeds,
    positions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=4),
    side=st.sampled_from(["a", "b", "both"]),
    chunked=st.booleans(),
)
def test_nan_never_passes(shape, dtype, seed, positions, side, chunked):
    b = random_tensor(shape, dtype, seed)
    a = b.clone()
    flats = sorted({int(p * a.numel()) for p in positions})
    for flat in flats:
        for t in (a, b) if side == "both" else (a,) if side == "a" else (b,):
            t.view(-1)[flat] = math.nan
    # Huge tolerances: nothing but the NaNs can fail.
    with chunks_of_a_few_elements(chunked):
        r = compare_tensors(a, b, atol=1e30, rtol=1e30)
    assert not r.passed
    assert r.nan_a == (len(flats) if side != "b" else 0)
    assert r.nan_b == (len(flats) if side != "a" else 0)
    assert r.worst_index == flat_to_index(flats[0], shape)  # NaN ranks above every number
    assert r.frac_out_of_tol == pytest.approx(len(flats) / a.numel())
    assert r.max_abs == 0  # statistics skip the NaN positions; the rest is identical
    json.dumps(to_json(r), allow_nan=False)


def test_infinities(small_chunks):
    inf = math.inf
    b = torch.tensor([1.0, inf, -inf, 2.0, 3.0, 4.0, 5.0])
    same = compare_tensors(b.clone(), b)
    assert same.passed and same.inf_a == same.inf_b == 2 and same.max_abs == 0

    a = b.clone()
    a[5] = inf  # inf against a finite value
    r = compare_tensors(a, b, atol=1e30, rtol=1e30)
    assert not r.passed and r.worst_index == (5,) and r.max_abs == inf
    assert r.inf_a == 3 and r.inf_b == 2
    assert r.max_rel == 0  # relative error uses positions where both sides are finite
    assert to_json(r)["max_abs"] == "inf"
    json.dumps(to_json(r), allow_nan=False)

    a = b.clone()
    a[1] = -inf  # +inf against -inf
    assert not compare_tensors(a, b, atol=1e30, rtol=1e30).passed


# --- shapes, names, paths ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(shape_a=shapes, shape_b=shapes, seed=seeds)
def test_mismatched_shapes_are_reported_not_raised(shape_a, shape_b, seed):
    if shape_a == shape_b:
        shape_b = shape_b + (2,)
    a, b = random_tensor(shape_a, torch.float32, seed), random_tensor(shape_b, torch.float32, seed + 1)
    a.view(-1)[0] = math.nan
    r = compare_tensors(a, b, name="x")
    assert not r.passed and not r.shape_match
    assert r.max_abs is None and r.worst_index is None
    assert r.nan_a == 1 and r.nan_b == 0
    assert "FAIL shape" in format_table(r)
    assert to_json(r)["shape_match"] is False


def test_names_on_one_side_and_aliases():
    a = {"logits": torch.ones(3), "mm_default": torch.ones(2), "extra": torch.ones(1)}
    b = {"logits": torch.ones(3), "layers.0.attn.qkv": torch.ones(2), "missing": torch.ones(1)}
    r = compare_dumps(a, b)
    assert r.only_in_a == ["mm_default", "extra"] and r.only_in_b == ["layers.0.attn.qkv", "missing"]
    assert not r.passed  # a probe present on one side only is a difference
    r = compare_dumps(a, b, aliases={"mm_default": "layers.0.attn.qkv"})
    assert [(t.name, t.name_b) for t in r.tensors] == [("logits", "logits"), ("mm_default", "layers.0.attn.qkv")]
    assert r.only_in_a == ["extra"] and r.only_in_b == ["missing"]
    assert "mm_default -> layers.0.attn.qkv" in format_table(r)


def test_empty_tensors_compare_clean():
    r = compare_tensors(torch.zeros(0, 4), torch.zeros(0, 4))
    assert r.passed and r.frac_out_of_tol == 0 and r.worst_index is None


def test_compare_paths_files_and_folders(tmp_path):
    step = {"logits": torch.arange(6.0).reshape(2, 3), "input_ids": torch.arange(4, dtype=torch.int32)}
    save_steps(tmp_path / "a", [step, step, step], fmt="safetensors")
    changed = dict(step, logits=step["logits"] + torch.tensor([[0, 0, 0], [0, 1.0, 0]]))
    save_steps(tmp_path / "b", [step, changed], fmt="pt")  # other format, one step fewer

    r = compare_paths(tmp_path / "a", tmp_path / "b")
    assert [s.label for s in r.steps] == ["step0", "step1"]
    assert r.steps[0].passed and not r.steps[1].passed
    assert r.steps[1].tensors[0].worst_index == (1, 1)
    assert r.steps_only_in_a == ["step2"] and r.steps_only_in_b == []
    assert not r.passed
    table = format_table(r)
    assert "FAIL steps only in A: step2" in table and table.splitlines()[-1].startswith("FAILED")
    assert json.loads(json.dumps(to_json(r), allow_nan=False))["steps"][1]["tensors"][0]["worst_index"] == [1, 1]

    single = compare_paths(tmp_path / "a" / "step0.safetensors", tmp_path / "b" / "step0.pt")
    assert single.passed and len(single.steps) == 1
    assert format_table(single).splitlines()[-1].startswith("PASSED")


def test_compare_paths_bad_input(tmp_path):
    save_step(tmp_path / "step0.pt", {"x": torch.ones(1)})
    (tmp_path / "empty_a").mkdir()
    (tmp_path / "empty_b").mkdir()
    with pytest.raises(DittoError, match="does not exist"):
        compare_paths(tmp_path / "nope.pt", tmp_path / "step0.pt")
    with pytest.raises(DittoError, match="folder with a folder"):
        compare_paths(tmp_path, tmp_path / "step0.pt")
    with pytest.raises(DittoError, match="holds step dumps"):
        compare_paths(tmp_path / "empty_a", tmp_path / "empty_b")


# --- the compiled kernel ----------------------------------------------------------------------


def test_compiled_kernel_gives_the_eager_numbers(monkeypatch):
    """Big dumps run the fused compiled kernel: it must agree with the eager path (chunks, tail, NaN chunk)."""
    monkeypatch.setattr(stats, "COMPILED_CHUNK", 4096)
    n = 4096 * 5 + 123  # five full chunks and a tail (the tail runs eagerly)
    b = random_tensor((n,), torch.float32, 0, scale=1.0)
    a = b * (1 + 1e-6 * random_tensor((n,), torch.float32, 1, scale=1.0))
    a[4096 * 3 + 17] += 0.5  # the worst element, in the fourth chunk
    a[100] += 0.25
    for nan_at in (None, 4096 + 5):
        x = a.clone()
        if nan_at is not None:
            x[nan_at] = math.nan  # that chunk is recomputed by the exact path
        eager, compiled = compare_tensors(x, b, compiled=False), compare_tensors(x, b, compiled=True)
        assert compiled.worst_index == eager.worst_index == ((nan_at,) if nan_at else (4096 * 3 + 17,))
        for field in ("frac_out_of_tol", "nan_a", "nan_b", "inf_a", "inf_b"):
            assert getattr(compiled, field) == getattr(eager, field), field
        for field in ("max_abs", "mean_abs", "max_rel", "cosine"):
            assert getattr(compiled, field) == pytest.approx(getattr(eager, field), rel=1e-6), field
    assert not stats._compile_failed  # the kernel really was compiled, not replaced by the eager path


def test_without_a_compiler_the_eager_path_runs(monkeypatch):
    def broken():
        def kernel(*args):
            raise RuntimeError("no C++ compiler")

        return kernel

    monkeypatch.setattr(stats, "_compiled_kernel", broken)
    monkeypatch.setattr(stats, "_compile_failed", False)
    monkeypatch.setattr(stats, "COMPILED_CHUNK", 64)
    a, b = torch.zeros(200), torch.zeros(200)
    a[150] = 1.0
    with pytest.warns(UserWarning, match="comparing eagerly"):
        r = compare_tensors(a, b, compiled=True)
    assert r.worst_index == (150,) and r.max_abs == 1.0
