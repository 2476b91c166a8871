"""Goldens: one backend's step dumps for one model, recorded once and compared on every run.

Layout: `<golden dir>/<model key>/<dtype>/<backend>/manifest.json` + `step{i}.safetensors` (the
dtype in the path: recording float16 never overwrites the float32 golden). A golden
holds the compared names only (input_ids, position_ids, the probes, logits), not a backend's
private engine inputs, so it survives harmless changes to how a backend feeds its engine.

The manifest records what produced it. A golden whose model, dtype, prompts, steps or format
differ from this run is stale: reported with what differs, never compared. The model is its
content hash (`harness.models.content_hash`: config.json without `transformers_version` (for a
built-in tiny model its recipe instead, `ditto.models.tiny.recipe_identity`: transformers
versions write one config in other layouts), and every byte of the weight files for models up
to 1 GiB, so all tiny models): the weights' fingerprint. The built-in tiny models are seeded by ditto; if another torch drew other random
weights, the hash would differ and the golden would be stale, as it should be.

Where it was recorded (device; ditto, torch and transformers versions) is the golden's
environment, not its identity: a golden recorded with torch 2.13 on the CPU is compared with
a run of torch 2.11 on a GPU, by the session's own rule (the fixed per-dtype rule in float32,
the calibrated band in half precision: `ditto.compare.tolerances`), and a failure names both
environments. Why that bound holds across environments: another torch, transformers or device
changes kernels, i.e. the summation order and fusion of the same float32 arithmetic, which is
exactly the difference the rule already absorbs between two backends on one machine (fx and
hf run different kernels and agree to ~1e-6 of the scale, the bound is 1e-4). Not yet measured
across environments (the committed goldens, torch 2.13 on the CPU, against torch 2.11 on an
H200: `pytest harness/regression.py -k golden` there; issue 10, bench/RESULTS.md). The tokens cannot part ways: every backend is fed hf's greedy
tokens of this run (token forcing); only a near-tie in hf's argmax that flips between
environments would make `input_ids` differ, and that fails naming the step, as it should (the
golden must then be re-recorded in one environment). Making a new ditto version stale would
defeat the golden's purpose: it is there to catch ditto's own numerics changing.

Two formats. `full`: the tensors as dumped. `fingerprint` (for large models, where full
dumps would be GBs): per probe `<probe>::stats` (mean, std, min, max, mean |x|: all on the scale of the values,
so the tolerance rule applies to them as to the values),
`<probe>::slice` (a few tokens x evenly spaced features), and for logits the top-k ids
(`logits::topk_index`, from the run that recorded) with the values there (`logits::topk_value`);
a new run is fingerprinted at the golden's top-k ids, so near-ties cannot reorder them.

Recording is atomic and locked (ditto.fsutil): the steps are written into a temp folder
beside the golden, which replaces the old golden in one exchange only once complete, under a
file lock, so two `--update-golden` runs (xdist workers, two terminals) take turns instead
of mixing their steps. An interrupted `--update-golden` leaves the old golden (or none) and a
temp folder that the next writer removes once its process is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ditto import fsutil
from ditto.dumps import load_step, save_step
from ditto.errors import DittoError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
TOPK = 16
SLICE_TOKENS = 3  # first, middle and last token of the step
SLICE_FEATURES = 32
FINGERPRINT_ABOVE_BYTES = 1 << 30  # `auto`: fingerprints for models with more weight bytes than this
# What must match for a golden to be compared (manifest key -> how it is named in messages)
IDENTITY = {
    "model_hash": "model content hash",
    "dtype": "dtype",
    "prompts": "prompts",
    "steps": "steps",
    "format": "golden format",
    "format_version": "golden file format",
}
# Where a golden was recorded: shown when it differs from this run, never a reason not to compare
ENVIRONMENT = {"versions": "versions", "device": "device"}


@dataclass
class Golden:
    manifest: dict
    steps: list[dict[str, torch.Tensor]]


def golden_path(root: Path, model_key: str, backend: str, dtype: str) -> Path:
    return root / model_key / dtype / backend


def record(folder: Path, manifest: dict, steps: list[dict[str, torch.Tensor]]) -> None:
    """Write a golden atomically, one writer at a time: temp folder first, then one exchange."""
    with fsutil.locked(folder), fsutil.atomic_dir(folder, replace=True) as tmp:
        for i, dump in enumerate(steps):
            save_step(tmp / f"step{i}.safetensors", dump)
        fsutil.write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def load(folder: Path) -> Golden | None:
    """The golden in `folder`, None when there is none; a damaged golden is an error.

    Read under the writers' lock, so that a golden replaced meanwhile is never read half old,
    half new; without one (a read-only checkout) it is read as is.
    """
    if not folder.parent.is_dir():
        return None
    try:
        lock = fsutil.locked(folder)
        lock.acquire()
    except OSError:
        return _load(folder)
    try:
        return _load(folder)
    finally:
        lock.release()


def _load(folder: Path) -> Golden | None:
    if not (folder / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except ValueError as e:
        raise DittoError(f"golden manifest {folder / MANIFEST} is not valid JSON ({e}); re-record the golden") from None
    steps = []
    for i in range(int(manifest.get("num_steps", -1))):
        path = folder / f"step{i}.safetensors"
        if not path.is_file():
            raise DittoError(f"golden {folder} lacks {path.name} that its manifest promises; re-record the golden")
        steps.append(load_step(path))
    return Golden(manifest, steps)


def stale_reasons(manifest: dict, expected: dict) -> list[str]:
    """What differs between the golden's manifest and this run ([] when it may be compared)."""
    return [
        f"{label}: golden {manifest.get(key)!r}, this run {expected[key]!r}"
        for key, label in IDENTITY.items()
        if manifest.get(key) != expected[key]
    ]


def environment_differences(manifest: dict, environment: dict) -> list[str]:
    """Where the golden's recording environment differs from this run's ([] when it does not)."""
    return [
        f"{label}: golden {manifest.get(key)!r}, this run {environment[key]!r}"
        for key, label in ENVIRONMENT.items()
        if manifest.get(key) != environment[key]
    ]


def choose_format(requested: str, weight_bytes: int) -> str:
    if requested != "auto":
        return requested
    return "fingerprint" if weight_bytes > FINGERPRINT_ABOVE_BYTES else "full"


def golden_steps(dumps: list[dict], names: list[str], fmt: str, like: list[dict] | None = None) -> list[dict]:
    """The tensors a golden keeps (or that are compared with one) for each step."""
    out = []
    for i, dump in enumerate(dumps):
        kept = {name: dump[name] for name in names if name in dump}
        if fmt == "fingerprint":
            kept = fingerprint(kept, like[i] if like and i < len(like) else None)
        out.append(kept)
    return out


def fingerprint(dump: dict[str, torch.Tensor], like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Compact stand-ins for a step's tensors; integer tensors (ids, positions) are kept whole."""
    out: dict[str, torch.Tensor] = {}
    for name, t in dump.items():
        if not t.is_floating_point():
            out[name] = t
            continue
        x = t.float()
        flat = x.reshape(-1)
        std = flat.std() if flat.numel() > 1 else flat.new_zeros(())
        out[f"{name}::stats"] = torch.stack([flat.mean(), std, flat.min(), flat.max(), flat.abs().mean()])
        rows = x.reshape(-1, x.shape[-1]) if x.dim() > 0 else x.reshape(1, 1)
        tokens = torch.linspace(0, rows.shape[0] - 1, min(SLICE_TOKENS, rows.shape[0])).round().long()
        features = torch.linspace(0, rows.shape[1] - 1, min(SLICE_FEATURES, rows.shape[1])).round().long()
        out[f"{name}::slice"] = rows[tokens][:, features].contiguous()
        if name == "logits":
            key = f"{name}::topk_index"
            index = like[key] if like is not None and key in like else rows.topk(min(TOPK, rows.shape[1])).indices
            if index.shape[0] != rows.shape[0] or int(index.max()) >= rows.shape[1]:
                raise DittoError(f"logits have shape {tuple(rows.shape)} but the golden's top-k ids are for "
                                 f"{index.shape[0]} sequences; the golden was recorded for another batch or vocab")
            out[key] = index
            out[f"{name}::topk_value"] = rows.gather(1, index)
    return out
