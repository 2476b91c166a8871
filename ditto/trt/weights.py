"""Network weights backed by files, so that a build holds about one copy of them: TensorRT's.

TensorRT's builder copies every constant while it builds (measured: its copy grows to the
weights' size in the first part of `build_serialized_network`), and our copy only has to stay
readable until the build ends. So no weight lives in this process's anonymous memory:

- a weight stored unchanged in a safetensors checkpoint (same dtype and shape) is a view of a
  copy-on-write map of that file (never written, so the pages stay the file's);
- every other weight (fused QKV / gate-up, dtype casts, tables computed in memory) is computed
  once, written to a staging file (beside the engine directory) and mapped from there.

While the builder runs, `release_pages()` drops the mapped pages from this process (madvise
DONTNEED): a page TensorRT touches again is read back from the page cache, so correctness
never depends on when pages are dropped. Without a staging folder, computed weights stay in
memory (`build_network` for replay and tests).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import torch

from ditto import fsutil
from ditto.errors import DittoError
from ditto.models.weights import CheckpointTensor, WeightTable

# safetensors dtype names
_ST_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}
_ALIGN = 256  # bytes; staged weights start at this alignment


class WeightStore:
    """name -> tensor for the network's constants, file-backed (see the module docstring)."""

    def __init__(self, table: WeightTable, staging_dir: str | os.PathLike | None = None) -> None:
        self._table = table
        self._staging_dir = Path(staging_dir) if staging_dir is not None else None
        self._maps: list[mmap.mmap] = []
        self._files: dict[Path, tuple[mmap.mmap, dict, int]] = {}  # checkpoint -> (map, header, data start)
        self._staged: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._staging_path: Path | None = None
        self.mapped_bytes = 0  # bytes served from checkpoint maps
        self.staged_bytes = 0  # bytes computed and written to the staging file (or kept in memory)

    # ---- lookups --------------------------------------------------------------------------
    def tensor(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """Weight `name` in `dtype`: a view of a mapped file where possible."""
        view = self._checkpoint_view(name, dtype)
        if view is not None:
            self.mapped_bytes += view.nbytes
            return view
        key = (name, dtype)
        if key not in self._staged:
            self.stage({name: dtype})
        return self._staged[key]

    def stage(self, wanted: dict[str, torch.dtype]) -> None:
        """Compute every weight of `wanted` that no checkpoint map serves, and write them out once."""
        todo = {n: d for n, d in wanted.items() if (n, d) not in self._staged and self._checkpoint_view(n, d) is None}
        if not todo:
            return
        if self._staging_dir is None:
            for name, dtype in todo.items():
                tensor = self._table.load(name).to(dtype).contiguous()
                self._staged[(name, dtype)] = tensor
                self.staged_bytes += tensor.nbytes
            return
        layout, size = {}, 0
        for name, dtype in todo.items():
            spec = self._table.spec(name)
            numel = 1
            for d in spec.shape:
                numel *= int(d)
            layout[name] = (size, numel)
            size += -(-max(numel * dtype.itemsize, 1) // _ALIGN) * _ALIGN
        self._staging_dir.mkdir(parents=True, exist_ok=True)
        path = fsutil.temp_path(self._staging_dir / "ditto-weights")  # a crash leaves a name the sweep knows
        try:
            with open(path, "wb") as f:
                f.truncate(size)
                for name, dtype in todo.items():
                    tensor = self._table.load(name).to(dtype).contiguous()
                    f.seek(layout[name][0])
                    f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
                    del tensor
            mapped = self._map(path)
        finally:
            os.unlink(path)  # the map keeps the data; nothing is left on disk after close()
        for name, dtype in todo.items():
            offset, numel = layout[name]
            shape = tuple(int(d) for d in self._table.spec(name).shape)
            view = torch.frombuffer(mapped, dtype=dtype, count=numel, offset=offset) if numel else torch.empty(0, dtype=dtype)
            self._staged[(name, dtype)] = view.reshape(shape)
            self.staged_bytes += numel * dtype.itemsize

    def _checkpoint_view(self, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        spec = self._table.spec(name)
        source = spec.source
        if not isinstance(source, CheckpointTensor) or not str(source.file).endswith(".safetensors"):
            return None
        mapped, header, start = self._checkpoint(Path(source.file))
        entry = header.get(source.key)
        if entry is None or _ST_DTYPES.get(entry["dtype"]) != dtype or tuple(entry["shape"]) != tuple(spec.shape):
            return None
        begin, end = entry["data_offsets"]
        if (start + begin) % dtype.itemsize or end - begin != _numel(spec.shape) * dtype.itemsize:
            return None
        if end == begin:
            return None
        view = torch.frombuffer(mapped, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        return view.reshape(tuple(int(d) for d in spec.shape))

    def _checkpoint(self, path: Path):
        if path not in self._files:
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            header.pop("__metadata__", None)
            end = 8 + length + max((int(e["data_offsets"][1]) for e in header.values()), default=0)
            size = path.stat().st_size
            if size < end:  # a map past the end of a file is a SIGBUS on first touch, not an error
                raise DittoError(f"{path} is truncated: its header promises {end} bytes, the file has {size}; "
                                 "re-download or re-save the model")
            self._files[path] = (self._map(path), header, 8 + length)
        return self._files[path]

    def _map(self, path: Path) -> mmap.mmap:
        with open(path, "rb") as f:
            # copy-on-write: a writable buffer for torch.frombuffer; never written, so pages stay the file's
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self._maps.append(mapped)
        return mapped

    # ---- memory -----------------------------------------------------------------------------
    def release_pages(self) -> None:
        """Drop this process's resident pages of every map (re-read on the next touch)."""
        for mapped in self._maps:
            if not mapped.closed:
                mapped.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Forget the tensors and maps (the build is over).

        The maps are not closed here: tensors made by `torch.frombuffer` keep a reference to
        their map but hold no buffer export, so `mmap.close()` would unmap memory they still
        view (a crash on the next read, e.g. pytest printing a failed build's locals). Each map
        is unmapped when its last tensor is freed.
        """
        self._staged.clear()
        self._maps.clear()
        self._files.clear()


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
