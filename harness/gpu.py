"""One GPU per pytest-xdist worker: `gw<N>` sees GPU N (mod the GPUs present) as its only GPU.

Runs in each worker's pytest_configure, before anything initialises CUDA (CUDA reads
CUDA_VISIBLE_DEVICES once, at initialisation). The worker id comes from the worker's config
(`config.workerinput["workerid"]`), not from the PYTEST_XDIST_WORKER variable: a pytest run
started inside a worker (pytester, a subprocess) inherits that variable without being a worker.
GPUs are counted without CUDA: the NVIDIA driver lists one folder per GPU under
/proc/driver/nvidia/gpus. An existing CUDA_VISIBLE_DEVICES is respected: workers share out
the GPUs it lists.
"""

from __future__ import annotations

import os
from pathlib import Path

DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


def count_gpus(driver_gpus: Path = DRIVER_GPUS) -> int:
    try:
        return sum(1 for _ in driver_gpus.iterdir())
    except OSError:
        return 0


def worker_id(config) -> str | None:
    """`gw<N>` in an xdist worker's own session, else None."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if workerinput else None


def assign_gpu(worker: str | None, environ=os.environ, gpu_count: int | None = None) -> str | None:
    """Set CUDA_VISIBLE_DEVICES for xdist worker `worker` (None: not a worker); returns the GPU chosen, or None."""
    worker = worker or ""
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
    else:
        ids = [str(i) for i in range(count_gpus() if gpu_count is None else gpu_count)]
    if not ids:
        return None
    chosen = ids[int(worker[2:]) % len(ids)]
    environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen
