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

from ditto import fsutil
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
    # Ctrl-C while TensorRT runs: a Python exception raised inside TensorRT's callbacks is
    # caught and logged by TensorRT, which then reports success with a plan missing a chunk.
    # So signals are only recorded while it builds: the progress monitor cancels the build at
    # its next step, the writer stops, and the signal is delivered once TensorRT has returned.
    with fsutil.deferred_interrupts() as received:
        size, error = _build(built, trt, config, plan_path, received, stop)
    if error is not None:
        raise error  # e.g. ENOSPC while writing the plan, which TensorRT also swallowed
    if not size:
        raise DittoError(
            "TensorRT failed to build the engine (its log above says why); rerun with DEBUG_ARTIFACTS_DIR "
            "set and read trt_network_def.py"
        )
    check_plan(plan_path, size)
    return size


def _build(built: BuiltNetwork, trt, config, plan_path: Path, received: list, stop: threading.Event):
    """(plan size or 0, what the writer raised) of one build, cancelled once `received` fills."""
    if hasattr(config, "progress_monitor") and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _cancel_monitor(trt, received)

    def release():
        while not stop.wait(RELEASE_INTERVAL_S):
            built.weights.release_pages()

    releaser = threading.Thread(target=release, name="ditto-release-weight-pages", daemon=True)
    releaser.start()
    error = None
    try:
        with open(plan_path, "wb") as f:
            if hasattr(built.builder, "build_serialized_network_to_stream"):
                writer = _file_writer(trt, f, received)
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
    return size, error


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


def _cancel_monitor(trt, received: list):
    """An IProgressMonitor that cancels the build once a signal was received."""

    class CancelOnSignal(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            pass

        def phase_finish(self, phase_name):
            pass

        def step_complete(self, phase_name, step):
            return not received  # False cancels the build

    return CancelOnSignal()


def _file_writer(trt, f, received: list):
    """An IStreamWriter of the given TensorRT module writing to the open file `f`."""

    class FileWriter(trt.IStreamWriter):
        def __init__(self):
            trt.IStreamWriter.__init__(self)
            self.written = 0
            self.error: BaseException | None = None  # TensorRT swallows exceptions raised here

        def write(self, data):
            if self.error is not None or received:
                return 0  # a failed or interrupted stream stops; 0 bytes tells TensorRT so
            try:
                n = f.write(data)
            except BaseException as e:  # KeyboardInterrupt (Ctrl-C lands here), ENOSPC, ...
                self.error = e
                return 0
            self.written += n
            return n

    return FileWriter()
