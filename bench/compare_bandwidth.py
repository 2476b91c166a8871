"""Benchmark: `ditto compare` on two ~2 GiB safetensors dumps vs this machine's memory read bandwidth.

    python bench/compare_bandwidth.py [--size-gib 2] [--tensors 16] [--threads N] [--eager]

A child process writes dump A (float32 tensors [rows, 4096]) and dump B = A + 1e-6 relative
noise (every tensor passes) into a temp folder, removed at the end; the child keeps their
generation out of this process's peak RSS. This process then, side by side:

1. times `compare_paths(A, B)`: a first run, which includes compiling the fused kernel
   (seconds, once per process; torch caches it on disk), then the steady state (best of 3);
   `--eager` keeps the eager path instead, for comparison;
2. reads its peak RSS (`ru_maxrss`) right after, against the two files' size;
3. measures read bandwidth: `torch.sum` over a 1 GiB array in memory (best of 5) and over
   the two mmapped dump files.

Throughput counts the bytes of both files. Targets: compare throughput >= 0.5x the memory read
bandwidth; peak RSS <= 1.2x the two files' size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from ditto.comparator import compare_paths, stats
from ditto.dumps import load_step, save_step

HIDDEN = 4096


def write_dumps(folder: str, size_gib: float, tensors: int) -> None:
    """Write A/step0.safetensors and B/step0.safetensors, each ~size_gib GiB (runs in a child)."""
    rows = int(size_gib * 2**30 / 4 / HIDDEN / tensors)
    gen = torch.Generator().manual_seed(0)
    a = {f"layers.{i}.out": torch.randn(rows, HIDDEN, generator=gen) for i in range(tensors)}
    save_step(Path(folder) / "A" / "step0.safetensors", a)
    for t in a.values():  # in place: B = A * (1 + 1e-6 noise), well within float32 tolerance
        t.mul_(1 + 1e-6 * torch.randn(t.shape, generator=gen))
    save_step(Path(folder) / "B" / "step0.safetensors", a)


def read_bandwidth_gbs(tensors: list[torch.Tensor], repeats: int) -> float:
    """Bytes of `tensors` per second of summing them all, best of `repeats`."""
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for t in tensors:
            t.sum()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0, help="size of each dump file (default 2)")
    parser.add_argument("--tensors", type=int, default=16, help="tensors per dump (default 16)")
    parser.add_argument("--threads", type=int, help="torch threads for every measurement (default: torch's)")
    parser.add_argument("--eager", action="store_true", help="never use the compiled kernel")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.eager:
        stats.COMPILE_MIN_NUMEL = 2**62

    with tempfile.TemporaryDirectory(prefix="ditto-compare-bench-") as folder:
        child = multiprocessing.get_context("spawn").Process(
            target=write_dumps, args=(folder, args.size_gib, args.tensors)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"writing the dumps failed (exit {child.exitcode})")
        file_a, file_b = Path(folder) / "A" / "step0.safetensors", Path(folder) / "B" / "step0.safetensors"
        files_bytes = file_a.stat().st_size + file_b.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        times = []
        for _ in range(4):
            start = time.perf_counter()
            result = compare_paths(file_a, file_b)
            times.append(time.perf_counter() - start)
            assert result.passed, "B = A + 1e-6 relative noise must pass at float32 tolerance"
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        dump_a, dump_b = load_step(file_a), load_step(file_b)
        mmap_bw = read_bandwidth_gbs(list(dump_a.values()) + list(dump_b.values()), repeats=3)
        del dump_a, dump_b
        memory_bw = read_bandwidth_gbs([torch.ones(2**28)], repeats=5)

    first_gbs, steady_gbs = files_bytes / times[0] / 1e9, files_bytes / min(times[1:]) / 1e9
    print(
        f"threads: {torch.get_num_threads()}; {'eager' if args.eager else 'compiled kernel'}; "
        f"load average {os.getloadavg()[0]:.2f}; files: 2 x {files_bytes / 2 / 2**30:.2f} GiB, {args.tensors} tensors each"
    )
    print(f"read bandwidth: {memory_bw:.1f} GB/s (1 GiB in memory), {mmap_bw:.1f} GB/s (the two mmapped files)")
    first = "first run" if args.eager else "first run (includes compiling the kernel)"
    print(f"compare, {first}: {times[0]:.2f} s = {first_gbs:.1f} GB/s")
    print(f"compare, steady state (best of 3): {min(times[1:]):.2f} s = {steady_gbs:.1f} GB/s")
    print(f"ratio compare / memory read bandwidth: steady {steady_gbs / memory_bw:.2f}, first run {first_gbs / memory_bw:.2f} (target >= 0.5)")
    print(
        f"peak RSS: {peak_rss / 2**30:.2f} GiB = {peak_rss / files_bytes:.2f}x the two files "
        f"(before comparing: {rss_before / 2**30:.2f} GiB; target <= 1.2x)"
    )


if __name__ == "__main__":
    main()
