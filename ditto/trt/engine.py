"""Run TensorRT's builder on a built network, keeping the process near one copy of the weights.

The serialized plan is as large as the weights, so it is streamed to a file
(`build_serialized_network_to_stream`, TensorRT >= 10.11 and TensorRT-RTX) instead of being
held in memory next to the builder's own copy of the weights; TensorRT versions without it
fall back to an in-memory plan written to the same file. While the builder runs, a thread
keeps dropping the pages of our file-backed weights (`WeightStore.release_pages`), so the
builder's copy is the only one resident.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ditto.errors import DittoError
from ditto.trt.network import BuiltNetwork

RELEASE_INTERVAL_S = 0.005
PLAN_HEAD_BYTES = 64  # a TensorRT plan starts with a non-zero header


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
    error = None
    try:
        with open(plan_path, "wb") as f:
            if hasattr(built.builder, "build_serialized_network_to_stream"):
                writer = _file_writer(trt, f)
                ok = built.builder.build_serialized_network_to_stream(built.network, config, writer)
                size = writer.written if ok else 0
                error = writer.error
            else:
                plan = built.builder.build_serialized_network(built.network, config)
                size = f.write(memoryview(plan)) if plan is not None else 0
                del plan
            f.flush()
            os.fsync(f.fileno())
    finally:
        stop.set()
        releaser.join()
    if error is not None:
        # TensorRT catches what the writer raises, logs it and may still report success: re-raise
        # it here, so that a Ctrl-C is an interrupt and a full disk is an error, not a short plan.
        raise error
    if not size:
        raise DittoError(
            "TensorRT failed to build the engine (its log above says why); rerun with DEBUG_ARTIFACTS_DIR "
            "set and read trt_network_def.py"
        )
    check_plan(plan_path, size)
    return size


def check_plan(plan_path: Path, size: int) -> None:
    """The plan on disk is the size the builder produced and does not start with a hole."""
    on_disk = os.path.getsize(plan_path)
    if on_disk != size:
        raise DittoError(f"the engine plan {plan_path} has {on_disk} bytes, the builder wrote {size}; "
                         "the disk may be full or the file was changed: free space and rebuild")
    with open(plan_path, "rb") as f:
        head = f.read(PLAN_HEAD_BYTES)
    if not head.strip(b"\0"):
        raise DittoError(f"the engine plan {plan_path} starts with {len(head)} zero bytes, not a TensorRT plan; "
                         "a write was lost: rebuild")


def _file_writer(trt, f):
    """An IStreamWriter of the given TensorRT module writing to the open file `f`."""

    class FileWriter(trt.IStreamWriter):
        def __init__(self):
            trt.IStreamWriter.__init__(self)
            self.written = 0
            self.error: BaseException | None = None  # TensorRT swallows exceptions raised here

        def write(self, data):
            if self.error is not None:
                return 0  # a failed stream stays failed; 0 bytes tells TensorRT to stop
            try:
                n = f.write(data)
            except BaseException as e:  # KeyboardInterrupt (Ctrl-C lands here), ENOSPC, ...
                self.error = e
                return 0
            self.written += n
            return n

    return FileWriter()
