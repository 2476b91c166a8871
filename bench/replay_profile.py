"""Where a replay step spends its time and memory, per TensorRT layer kind.

    python bench/replay_profile.py --tiny            # a narrow Llama, anywhere (CPU: a few seconds)
    python bench/replay_profile.py --layers 8        # the Llama-3.1-8B shape at 8 layers (GPU)

Builds the replay backend's network and plan for a random bfloat16 Llama-shaped model, runs a
request (batch, prompt, steps as given) through the `replay` backend once to warm up (upload
the constants), then runs it again with every layer timed (a device sync after each layer, so
the per-layer numbers add up to more than an unsynced step) and prints per layer kind: count
per decode step, total ms per decode step, mean us per layer; and the largest allocations
alive at the step's peak (on CUDA: the layers whose outputs were alive when the memory peaked).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from decode_step_time import create_model, llama_config

    import ditto.replay.network as network
    from ditto.runtime.backend import StepwiseRequest, get_backend

    device = args.device
    config = llama_config(args.layers, args.tiny)
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=gen).tolist()
    stats = collections.defaultdict(lambda: [0, 0.0])  # kind -> [count, seconds] over decode steps
    state = {"profile": False, "step": 0}
    original = network.ReplayPlan.run

    def timed(self, inputs):
        if not state["profile"]:
            return original(self, inputs)
        state["step"] += 1
        if state["step"] == 1:  # the context step: not counted
            return original(self, inputs)
        self._timer = _Timer(self, device, stats)
        try:
            return original(self, inputs)
        finally:
            self._timer = None

    network.ReplayPlan.run = timed
    init = network.ReplayPlan.__init__

    def split(self, *a, **k):  # shape arithmetic on the host even when the device is the CPU
        k.setdefault("host_shapes", True)
        init(self, *a, **k)

    network.ReplayPlan.__init__ = split
    with tempfile.TemporaryDirectory() as folder:
        create_model(config, folder, device, torch.bfloat16)
        backend = get_backend("replay")
        request = StepwiseRequest(model=folder, prompts=prompts, steps=args.steps, dtype=torch.bfloat16, device=device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            print(f"allocated before the replay backend loads: {before / 2**30:.2f} GiB", flush=True)
        start = time.perf_counter()
        backend.run(request)
        print(f"warm-up run (build + upload): {time.perf_counter() - start:.1f} s", flush=True)
        if device.startswith("cuda"):
            print(f"first run: peak {(torch.cuda.max_memory_allocated() - before) / 2**30:.2f} GiB above that, "
                  f"{(torch.cuda.memory_allocated() - before) / 2**30:.2f} GiB still allocated after it", flush=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        backend.run(request)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        plain = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - base if device.startswith("cuda") else 0
        state["profile"] = True
        backend.run(request)
        plan = backend.last_plan
    steps = args.steps
    total = sum(s for _, s in stats.values())
    print(f"plan: {len(plan.steps)} layers, {sum(1 for s in plan.steps if s.device.type == 'cpu')} on the host; "
          f"kept {plan.kept_bytes() / 2**30:.2f} GiB; unprofiled run {plain:.2f} s ({steps} steps + context); "
          f"peak above the kept constants {peak / 2**30:.2f} GiB")
    print(f"profiled: {total / steps * 1e3:.1f} ms per decode step (synced per layer)")
    print("| kind | layers / step | ms / step | us / layer |")
    print("| --- | --- | --- | --- |")
    for kind, (count, seconds) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        print(f"| {kind} | {count / steps:.0f} | {seconds / steps * 1e3:.2f} | {seconds / count * 1e6:.0f} |")
    if MEMORY:
        print("largest allocations by one layer (MiB, kind, layer):")
        for grew, kind, name in sorted(MEMORY, key=lambda m: -m[0])[:15]:
            print(f"  {grew / 2**20:.1f} {kind} {name}")


MEMORY: list = []  # (bytes allocated by a layer, kind, name) over the profiled run


class _Timer:
    def __init__(self, plan, device, stats):
        self.plan = plan
        self.cuda = device.startswith("cuda")
        self.last = torch.cuda.memory_allocated() if self.cuda else 0
        self.top = (0, "", "")
        self.grew = MEMORY
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.stats = stats

    def __call__(self, step, fn):
        host = step.device.type == "cpu" and (not step.outs or step.outs[0][0] in self.plan.host)
        kind = f"{step.kind} ({'host' if host else 'device'})"
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        entry = self.stats[kind]
        entry[0] += 1
        entry[1] += time.perf_counter() - start
        if self.cuda:
            now = torch.cuda.memory_allocated()
            self.grew.append((now - self.last, step.kind, step.layer.name))
            self.last = now
            if now > self.top[0]:
                self.top = (now, step.kind, step.layer.name)
        return out


if __name__ == "__main__":
    main()
