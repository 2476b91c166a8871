"""Run TensorRT's builder on a built network, keeping the process near one copy of the weights.

The serialized plan is as large as the weights, so it is streamed to a file
(`build_serialized_network_to_stream`, TensorRT >= 10.11 and TensorRT-RTX) instead of being
held in memory next to the builder's own copy of the weights; TensorRT versions without it
fall back to an in-memory plan written to the same file. While the builder runs, a thread
keeps dropping the pages of our file-backed weights (`WeightStore.release_pages`), so the
builder's copy is the only one resident.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ditto.errors import DittoError
from ditto.trt.network import BuiltNetwork

RELEASE_INTERVAL_S = 0.005


def build_engine(built: BuiltNetwork, trt, plan_path: Path) -> int:
    """Build `built` with its optimization profile into `plan_path`; returns the plan's size."""
    config = built.builder.create_builder_config()
    profile = built.builder.create_optimization_profile()
    for name, (lo, opt, hi) in built.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    stop = threading.Event()

    def release():
        while not stop.wait(RELEASE_INTERVAL_S):
            built.weights.release_pages()

    releaser = threading.Thread(target=release, name="ditto-release-weight-pages", daemon=True)
    releaser.start()
    try:
        with open(plan_path, "wb") as f:
            if hasattr(built.builder, "build_serialized_network_to_stream"):
                writer = _file_writer(trt, f)
                ok = built.builder.build_serialized_network_to_stream(built.network, config, writer)
                size = writer.written if ok else 0
            else:
                plan = built.builder.build_serialized_network(built.network, config)
                size = f.write(memoryview(plan)) if plan is not None else 0
                del plan
    finally:
        stop.set()
        releaser.join()
    if not size:
        raise DittoError(
            "TensorRT failed to build the engine (its log above says why); rerun with DEBUG_ARTIFACTS_DIR "
            "set and read trt_network_def.py"
        )
    return size


def _file_writer(trt, f):
    """An IStreamWriter of the given TensorRT module writing to the open file `f`."""

    class FileWriter(trt.IStreamWriter):
        def __init__(self):
            trt.IStreamWriter.__init__(self)
            self.written = 0

        def write(self, data):
            n = f.write(data)
            self.written += n
            return n

    return FileWriter()
