"""ditto.dumps: both formats round-trip exactly, writes are atomic, bad files are named errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ditto.dumps import list_step_files, load_step, load_steps, save_step, save_steps
from ditto.errors import DittoError

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.int8, torch.bool]


def sample_dump() -> dict[str, torch.Tensor]:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "input_ids": torch.tensor([1, 5, 9], dtype=torch.int32),
        "logits": torch.randn(2, 7),
        "half": torch.randn(3, 2).half(),
        "bf16": torch.randn(5).bfloat16(),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "mask": torch.tensor([True, False]),
        "transposed": base.t(),  # not contiguous
        "row": base[2],  # a view into a bigger storage
        "row_again": base[2],  # shares memory with "row" (safetensors refuses that unless copied)
    }


def assert_same_dump(loaded, original):
    assert list(loaded) == list(original)
    for name, t in original.items():
        assert loaded[name].dtype == t.dtype, name
        assert loaded[name].shape == t.shape, name
        assert torch.equal(loaded[name], t), name


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_round_trip(tmp_path, fmt):
    dump = sample_dump()
    path = save_step(tmp_path / f"step0.{fmt}", dump)
    assert path == tmp_path / f"step0.{fmt}"
    assert_same_dump(load_step(path), dump)
    assert sorted(os.listdir(tmp_path)) == [f"step0.{fmt}"]  # no temp file left behind


@settings(max_examples=25, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.lists(st.integers(0, 5), max_size=3), st.sampled_from(DTYPES)), min_size=1, max_size=5
    ),
    fmt=st.sampled_from(["pt", "safetensors"]),
)
def test_round_trip_any_dtype_and_shape(tmp_path_factory, entries, fmt):
    dump = {f"t{i}": (torch.rand(shape, dtype=torch.float64) * 100).to(dtype) for i, (shape, dtype) in enumerate(entries)}
    path = save_step(tmp_path_factory.mktemp("d") / f"step0.{fmt}", dump)
    assert_same_dump(load_step(path), dump)


def test_a_view_is_saved_without_its_base_storage(tmp_path):
    big = torch.zeros(1_000_000)
    save_step(tmp_path / "step0.pt", {"x": big[:10]})
    assert (tmp_path / "step0.pt").stat().st_size < 100_000  # not the 4 MB base


def test_safetensors_are_memory_mapped(tmp_path):
    save_step(tmp_path / "step0.safetensors", {"x": torch.arange(1000.0)})
    x = load_step(tmp_path / "step0.safetensors")["x"]
    # A view of the mapped file: its memory is the file mapping, not a private copy.
    maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
    if not maps:
        pytest.skip("no /proc/self/maps on this platform")
    ptr = x.data_ptr()
    mapped_files = [
        line.split()[-1]
        for line in maps.splitlines()
        if int(line.split()[0].split("-")[0], 16) <= ptr < int(line.split()[0].split("-")[1], 16)
    ]
    assert mapped_files and mapped_files[0].endswith("step0.safetensors")


def test_steps_are_listed_in_step_order_either_format(tmp_path):
    dumps = [{"step": torch.tensor([i])} for i in range(12)]
    save_steps(tmp_path, dumps[:6], fmt="pt")
    for i in range(6, 12):
        save_step(tmp_path / f"step{i}.safetensors", dumps[i])
    (tmp_path / "notes.txt").write_text("not a step")
    (tmp_path / "step_x.pt").write_bytes(b"")
    assert [p.name for p in list_step_files(tmp_path)][:3] == ["step0.pt", "step1.pt", "step2.pt"]
    assert list_step_files(tmp_path)[-1].name == "step11.safetensors"  # 11 after 2, not after 1
    assert [int(d["step"]) for d in load_steps(tmp_path)] == list(range(12))


def test_folder_errors(tmp_path):
    with pytest.raises(DittoError, match="no dump folder"):
        list_step_files(tmp_path / "missing")
    with pytest.raises(DittoError, match="holds no step dumps"):
        load_steps(tmp_path)
    save_step(tmp_path / "step0.pt", {"x": torch.ones(1)})
    save_step(tmp_path / "step0.safetensors", {"x": torch.ones(1)})
    with pytest.raises(DittoError, match="step 0 twice"):
        list_step_files(tmp_path)
    with pytest.raises(DittoError, match="unknown step dump format"):
        save_steps(tmp_path, [{}], fmt="npy")


def test_save_rejects_what_is_not_a_dump(tmp_path):
    with pytest.raises(DittoError, match=r"must end in \.pt or \.safetensors"):
        save_step(tmp_path / "step0.npy", {"x": torch.ones(1)})
    with pytest.raises(DittoError, match="entry 'x' is list"):
        save_step(tmp_path / "step0.pt", {"x": [1, 2]})
    with pytest.raises(DittoError, match="dict of tensors"):
        save_step(tmp_path / "step0.pt", [torch.ones(1)])
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = save_step(tmp_path / "step0.pt", {"x": torch.ones(2)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_step(path, {"x": torch.zeros(2)})
    assert os.listdir(tmp_path) == ["step0.pt"]
    assert torch.equal(load_step(path)["x"], torch.ones(2))


def test_load_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DittoError, match=r"no step dump at .*missing\.pt"):
        load_step(tmp_path / "missing.pt")
    with pytest.raises(DittoError, match=r"must end in \.pt or \.safetensors"):
        load_step(tmp_path / "step0.npz")

    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(DittoError, match=r"list\.pt is not a step dump: .* found list"):
        load_step(tmp_path / "list.pt")
    torch.save({"a": {"b": torch.ones(1)}}, tmp_path / "nested.pt")
    with pytest.raises(DittoError, match=r"nested\.pt is not a step dump: .*entry 'a' of type dict"):
        load_step(tmp_path / "nested.pt")

    (tmp_path / "garbage.pt").write_bytes(b"this is not a pickle")
    with pytest.raises(DittoError, match=r"cannot read step dump .*garbage\.pt"):
        load_step(tmp_path / "garbage.pt")
    good = save_step(tmp_path / "good.safetensors", {"x": torch.ones(100)})
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:60])
    with pytest.raises(DittoError, match=r"cannot read step dump .*cut\.safetensors"):
        load_step(tmp_path / "cut.safetensors")
    good_pt = save_step(tmp_path / "good.pt", {"x": torch.ones(100)})
    (tmp_path / "cut.pt").write_bytes(good_pt.read_bytes()[:300])
    with pytest.raises(DittoError, match=r"cannot read step dump .*cut\.pt"):
        load_step(tmp_path / "cut.pt")


class _Marker:
    """Unpickling this with a full pickle loader would create a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_with_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": _Marker(str(marker))}, f, protocol=2)
    with pytest.raises(DittoError, match=r"evil\.pt: it is not a torch\.save file of plain tensors"):
        load_step(tmp_path / "evil.pt")
    assert not marker.exists()
