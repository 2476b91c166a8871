"""Engine cache: a second identical pytest run (warm cache) against the first (cold), side by side.

Runs `pytest` twice in a scratch project whose one test per model takes the `ditto_engine`
fixture, with the same fresh `--ditto-engine-cache`. The build-heavy part is that fixture's
setup, read from the junit XML (the test body is empty); the whole process's wall time is
shown beside it. One run each, as the issue asks.

The builder is ditto's (`ditto.builder`) when this checkout has it; otherwise `--builder export`
stands in: ditto's real pipeline up to the TensorRT network (`load_program`: load, export, all
passes, materialised weights) written to the engine folder, which is what the cache must
skip on a warm run.

    python bench/harness_cache.py [--models tiny-llama tiny-gpt2 ...] [--builder ditto|export]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

TEST = "def test_engine(ditto_engine):\n    assert any(ditto_engine.iterdir())\n"

# Both runs import the libraries before the first test, so the first test's time is its
# engine's, not the process's one-time imports.
WARM_IMPORTS = """
def pytest_sessionstart(session):
    import transformers.modeling_utils  # noqa: F401
    import ditto.pipeline  # noqa: F401
    import harness.session  # noqa: F401
"""

EXPORT_BUILDER = '''
from harness.engines import EngineBuilder, register_engine_builder


def export_build(model, folder, options):
    """ditto's pipeline up to the TensorRT network, written out: the stand-in for ditto.builder."""
    import torch
    from ditto.debug.artifacts import graph_table
    from ditto.pipeline import load_program

    program = load_program(str(model.directory), options["dtype"])
    gm = program.materialize("cpu")
    (folder / "graph.txt").write_text(graph_table(gm))
    torch.save({name: getattr(gm, name) for name in program.weights.names()}, folder / "weights.pt")


register_engine_builder("ditto", EngineBuilder(export_build))
'''


def run_once(project: Path, models: list[str], cache: Path) -> tuple[float, dict[str, float]]:
    junit = project / f"junit-{time.monotonic_ns()}.xml"
    args = [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "-p", "no:cacheprovider", "-q", "test_engine.py",
            f"--ditto-engine-cache={cache}", f"--junitxml={junit}", *[f"--ditto-model={m}" for m in models]]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=project, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"pytest failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    times = {case.get("name"): float(case.get("time")) for case in ET.parse(junit).iter("testcase")}
    return wall, times


def main() -> None:
    from ditto.models.tiny import TINY_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(TINY_MODELS))
    has_build = importlib.util.find_spec("ditto.builder") is not None
    parser.add_argument("--builder", choices=("ditto", "export"), default="ditto" if has_build else "export")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="harness-cache-bench-") as tmp:
        project, cache = Path(tmp) / "project", Path(tmp) / "engines"
        project.mkdir()
        (project / "test_engine.py").write_text(TEST)
        (project / "conftest.py").write_text(WARM_IMPORTS + (EXPORT_BUILDER if args.builder == "export" else ""))
        os.environ.setdefault("DITTO_CACHE_DIR", str(Path(tmp) / "ditto-cache"))
        run_once(project, args.models[:1], Path(tmp) / "warm-up")  # tiny models created, imports in page cache
        cold_wall, cold = run_once(project, args.models, cache)
        warm_wall, warm = run_once(project, args.models, cache)

    print(f"builder: {args.builder}; one cold run, then one warm run; seconds")
    print("| model | cold engine fixture | warm engine fixture | speed-up |")
    print("| --- | --- | --- | --- |")
    for name in cold:
        print(f"| {name.split('[', 1)[1].rstrip(']')} | {cold[name]:.2f} | {warm[name]:.3f} | "
              f"{cold[name] / warm[name]:.0f}x |")
    total_cold, total_warm = sum(cold.values()), sum(warm.values())
    print(f"| all engine fixtures | {total_cold:.2f} | {total_warm:.3f} | {total_cold / total_warm:.0f}x |")
    print(f"| whole pytest process | {cold_wall:.2f} | {warm_wall:.2f} | {cold_wall / warm_wall:.1f}x |")


if __name__ == "__main__":
    main()
