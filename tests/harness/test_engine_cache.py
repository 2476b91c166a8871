"""The engine cache on its own: one build per key, across processes; corrupt and half-built entries."""

import json
import multiprocessing
import os

import pytest

from harness import engine_cache
from harness.engine_cache import RECORD, get_or_build, verify


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    """Each test sees the cache as a new process would (no entries verified yet)."""
    monkeypatch.setattr(engine_cache, "_VERIFIED", set())


def counting_builder(log):
    def build(folder):
        with open(log, "a") as f:
            f.write("built\n")
        (folder / "rank0.engine").write_bytes(b"\x01" * 4096)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text("{}")

    return build


def builds(log) -> int:
    return len(open(log).read().splitlines()) if os.path.exists(log) else 0


def test_builds_once_then_reuses(tmp_path):
    log = tmp_path / "log"
    first = get_or_build(tmp_path / "cache", "m", {"a": 1}, counting_builder(log))
    assert first.built and first.problem is None
    assert (first.path / "rank0.engine").stat().st_size == 4096
    record = json.loads((first.path / RECORD).read_text())
    assert record["inputs"] == {"a": 1} and set(record["files"]) == {"rank0.engine", "sub/config.json"}
    engine_cache._VERIFIED.clear()  # as in a later session
    second = get_or_build(tmp_path / "cache", "m", {"a": 1}, counting_builder(log))
    assert not second.built and second.path == first.path and builds(log) == 1
    other = get_or_build(tmp_path / "cache", "m", {"a": 2}, counting_builder(log))
    assert other.built and other.path != first.path and builds(log) == 2


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda e: (e / "rank0.engine").write_bytes(b"\x01" * 100), "rank0.engine has 100 bytes, 4096 recorded"),
        (lambda e: (e / "rank0.engine").write_bytes(b"\x02" * 4096), "rank0.engine does not match its recorded sha256"),
        (lambda e: (e / "sub" / "config.json").unlink(), "sub/config.json is missing"),
        (lambda e: (e / RECORD).write_text('{"files": '), "its record ditto-cache.json is unreadable"),
    ],
)
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, damage, problem):
    log = tmp_path / "log"
    entry = get_or_build(tmp_path / "cache", "m", {}, counting_builder(log)).path
    damage(entry)
    assert verify(entry).startswith(problem)
    engine_cache._VERIFIED.clear()
    again = get_or_build(tmp_path / "cache", "m", {}, counting_builder(log))
    assert again.built and again.problem.startswith(problem) and builds(log) == 2
    assert verify(again.path) is None


def test_failed_build_leaves_nothing_and_the_next_build_works(tmp_path):
    def broken(folder):
        (folder / "rank0.engine").write_bytes(b"half")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        get_or_build(tmp_path / "cache", "m", {}, broken)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")) == []
    assert get_or_build(tmp_path / "cache", "m", {}, counting_builder(tmp_path / "log")).built


def test_leftover_of_a_killed_build_is_removed(tmp_path):
    cache = tmp_path / "cache"
    entry_name = f"m-{engine_cache.cache_key({})}"
    leftover = cache / f".{entry_name}.abc123"
    leftover.mkdir(parents=True)
    (leftover / "rank0.engine").write_bytes(b"half")
    get_or_build(cache, "m", {}, counting_builder(tmp_path / "log"))
    assert not leftover.exists()


def _build_in_process(cache, log, barrier):
    barrier.wait()  # both processes ask for the entry at the same moment
    import time

    def slow(folder):
        time.sleep(0.5)
        counting_builder(log)(folder)

    get_or_build(cache, "m", {"k": 1}, slow)


def test_two_processes_build_one_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_build_in_process, args=(tmp_path / "cache", tmp_path / "log", barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert builds(tmp_path / "log") == 1
