"""Step dumps: the one file format every backend writes, one flat `{name: tensor}` per step.

Two formats, chosen by the file suffix:

- `step{i}.pt`: `torch.save` of a plain dict of CPU tensors, as the seed's `run.py --debug_mode`
  writes it. Read only with `torch.load(..., weights_only=True)`, so a dump can never run code.
- `step{i}.safetensors`: no pickle at all, and read memory-mapped, so comparing two multi-GiB
  dumps does not copy them into memory.

Writes are atomic (temp file in the same folder, then rename): a crashed run never leaves a
half-written step that a later compare would read as a real one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import torch

from ditto import fsutil
from ditto.errors import DittoError

StepDump = dict[str, torch.Tensor]

FORMATS = {"pt": ".pt", "safetensors": ".safetensors"}
ORDER_KEY = "ditto.names"  # safetensors metadata: the dump's names in order
_STEP_FILE = re.compile(r"^step(\d+)\.(pt|safetensors)$")


def save_step(path: str | os.PathLike, dump: StepDump) -> Path:
    """Write one step dump atomically; the format follows the suffix (`.pt` or `.safetensors`)."""
    path = Path(path)
    suffix = _suffix(path)
    tensors = _plain_tensors(dump, path)
    with fsutil.atomic_file(path) as f:  # a crash never leaves a half-written step
        if suffix == ".pt":
            # through memory: torch's zip writer turns a full disk into "unexpected pos", not ENOSPC
            buffer = io.BytesIO()
            torch.save(tensors, buffer)
            f.write(buffer.getbuffer())
        else:
            from safetensors.torch import save_file

            # safetensors sorts names; the metadata keeps the dump's order (inputs, logits, probes).
            # It writes to a path, so it writes the temp file by name; atomic_file syncs and renames it.
            try:
                save_file(tensors, f.name, metadata={ORDER_KEY: json.dumps(list(tensors))})
            except Exception as e:  # its I/O errors are strings ("... (os error 28)"): make them OSErrors
                found = re.search(r"\(os error (\d+)\)", str(e))
                if found is None:
                    raise
                code = int(found.group(1))
                raise OSError(code, os.strerror(code), str(path)) from e
    return path


def load_step(path: str | os.PathLike) -> StepDump:
    """Read one step dump; `.safetensors` tensors are memory-mapped views of the file."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise DittoError(f"no step dump at {path}: the file does not exist; check the path")
    try:
        if suffix == ".pt":
            # mmap needs the zip format that torch.save writes by default; older files load whole.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        else:
            obj = _load_safetensors(path)
    except Exception as e:  # every way a file can be corrupt ends here, named
        raise DittoError(f"cannot read step dump {path}: {_load_problem(e)}") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise DittoError(
            f"{path} is not a step dump: expected a flat {{name: tensor}} dict, found {_describe(obj)}; "
            "write dumps with ditto.dumps.save_step"
        )
    return obj


def save_steps(folder: str | os.PathLike, dumps: list[StepDump], fmt: str = "pt") -> list[Path]:
    """Write `step0`, `step1`, ... into `folder` in format `fmt` (`pt` or `safetensors`), as one set.

    The steps of an earlier run in `folder` are replaced, never kept beside the new ones (a
    later compare would pair them): a folder of step dumps alone is swapped whole; in a
    folder holding other files too, the new steps are moved in and the old removed with
    Ctrl-C held off, so no mix of two runs is ever left.
    """
    if fmt not in FORMATS:
        raise DittoError(f"unknown step dump format {fmt!r}; use one of: {', '.join(FORMATS)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DittoError(f"dump folder {folder} is a file; remove it or choose another --output-dir")
    names = [f"step{i}{FORMATS[fmt]}" for i in range(len(dumps))]
    only_steps = not folder.exists() or all(_STEP_FILE.match(p.name) for p in folder.iterdir())
    with fsutil.atomic_dir(folder, replace=True) if only_steps else _staged_beside(folder) as staging:
        for name, dump in zip(names, dumps):
            save_step(staging / name, dump)
        if not only_steps:
            with fsutil.deferred_interrupts():
                for old in list_step_files(folder):
                    if old.name not in names:
                        old.unlink()
                for name in names:
                    os.replace(staging / name, folder / name)
    return [folder / name for name in names]


@contextlib.contextmanager
def _staged_beside(folder: Path):
    """A staging folder beside `folder` that is removed at the end (its files were moved out)."""
    staging = fsutil.temp_path(folder)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def list_step_files(folder: str | os.PathLike) -> list[Path]:
    """The `step{i}.pt` / `step{i}.safetensors` files of a folder, by step index."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DittoError(f"no dump folder at {folder}: it does not exist or is not a folder")
    by_step: dict[int, Path] = {}
    for p in folder.iterdir():
        m = _STEP_FILE.match(p.name)
        if not m:
            continue
        step = int(m.group(1))
        if step in by_step:
            raise DittoError(f"{folder} holds step {step} twice ({by_step[step].name}, {p.name}); remove one")
        by_step[step] = p
    return [by_step[s] for s in sorted(by_step)]


def load_steps(folder: str | os.PathLike) -> list[StepDump]:
    """Every step dump of a folder, in step order."""
    files = list_step_files(folder)
    if not files:
        raise DittoError(f"{folder} holds no step dumps (step0.pt or step0.safetensors, ...)")
    return [load_step(p) for p in files]


def _load_safetensors(path: Path) -> StepDump:
    """Memory-mapped tensors, in the order the writer gave them when it recorded one."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        names = list(f.keys())
        recorded = json.loads((f.metadata() or {}).get(ORDER_KEY, "[]"))
        if sorted(recorded) == sorted(names):
            names = recorded
        return {name: f.get_tensor(name) for name in names}


def _suffix(path: Path) -> str:
    if path.suffix not in FORMATS.values():
        raise DittoError(f"{path}: a step dump file must end in .pt or .safetensors")
    return path.suffix


def _plain_tensors(dump: StepDump, path: Path) -> StepDump:
    """Contiguous CPU tensors that each own their storage.

    A view would make torch.save write its whole base storage, and safetensors refuses
    tensors that share memory, so views are copied.
    """
    if not isinstance(dump, dict):
        raise DittoError(f"cannot write {path}: a step dump is a dict of tensors, got {type(dump).__name__}")
    out: StepDump = {}
    seen_storages: set[int] = set()
    for name, t in dump.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise DittoError(
                f"cannot write {path}: entry {name!r} is {type(t).__name__}; a step dump maps str names to tensors"
            )
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen_storages or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen_storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _load_problem(e: Exception) -> str:
    """The useful line of a loader's error (torch's weights-only refusal is a page long)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].split(". Please")[0]
        return (
            f"it is not a torch.save file of plain tensors ({detail}); "
            "step dumps are loaded with weights_only=True and never run pickled code"
        )
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else 'unreadable'}; the file is corrupt or not a step dump"


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str) or not isinstance(v, torch.Tensor):
                return f"entry {k!r} of type {type(v).__name__}"
    return type(obj).__name__
