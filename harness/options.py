"""The harness's options: one table, each entry both a command-line flag and an ini key.

The command line wins over the ini file (`[tool.pytest.ini_options]` in pyproject.toml,
pytest.ini, ...), which wins over the default. Adding an option is one `Option(...)` line in
OPTIONS plus its use in `Settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

DTYPE_CHOICES = ("float32", "float16", "bfloat16")
ORACLE_DTYPE_CHOICES = ("float32", "float64")
GOLDEN_FORMATS = ("auto", "full", "fingerprint")


@dataclass(frozen=True)
class Option:
    dest: str  # also the ini key
    flag: str
    help: str
    kind: str = "str"  # str | int | float | bool | list | path
    choices: tuple[str, ...] | None = None


OPTIONS = [
    Option("ditto_models", "--ditto-model", "model to test: a Hugging Face directory, a hub id in the local "
           "cache or a built-in tiny name; repeatable (default: every built-in tiny model)", "list"),
    Option("ditto_backends", "--ditto-backends", "comma-separated backends to run (default: every registered "
           "backend; those this machine cannot run are skipped with the reason)", "list"),
    Option("ditto_dtype", "--ditto-dtype", "dtype the models run in (default: float32)", choices=DTYPE_CHOICES),
    Option("ditto_device", "--ditto-device", "torch device the torch backends run on (default: cuda when "
           "available, else cpu)"),
    Option("ditto_steps", "--ditto-steps", "generation steps after the context step (default: 8)", "int"),
    Option("ditto_engine_cache", "--ditto-engine-cache", "folder of cached engines (default: "
           "$DITTO_CACHE_DIR/engines, ~/.cache/ditto/engines)", "path"),
    Option("golden_dir", "--golden-dir", "folder of goldens (default: <rootdir>/golden)", "path"),
    Option("update_golden", "--update-golden", "record goldens from this run instead of comparing", "bool"),
    Option("golden_format", "--golden-format", "full tensors or compact fingerprints (default: auto, "
           "fingerprints for models over 1 GiB of weights)", choices=GOLDEN_FORMATS),
    Option("ditto_atol", "--ditto-atol", "absolute tolerance for every probe, instead of the default rule "
           "(ditto/comparator/tolerances.py: fixed per dtype in float32, calibrated against an oracle in half precision)",
           "float"),
    Option("ditto_rtol", "--ditto-rtol", "relative tolerance for every probe, instead of the default rule", "float"),
    Option("ditto_oracle_device", "--ditto-oracle-device", "where the float32 oracle of a float16/bfloat16 run "
           "runs (default: --ditto-device; `cpu` when the model does not fit twice on the GPU; `none`: no oracle, "
           "the fixed per-dtype bound)"),
    Option("ditto_oracle_dtype", "--ditto-oracle-dtype", "dtype of the oracle (default: float32)",
           choices=ORACLE_DTYPE_CHOICES),
    Option("ditto_report_dir", "--ditto-report-dir", "folder for comparison reports and plots (default: "
           "ditto-report under pytest's basetemp)", "path"),
]

_INI_TYPES = {"bool": "bool", "list": "args"}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("ditto", "ditto regression harness")
    for opt in OPTIONS:
        kwargs: dict = {"dest": opt.dest, "help": opt.help}
        if opt.kind == "bool":
            kwargs.update(action="store_true", default=None)
        elif opt.kind == "list":
            kwargs.update(action="append", default=None)
        else:
            kwargs.update(default=None, choices=opt.choices)
        group.addoption(opt.flag, **kwargs)
        parser.addini(opt.dest, opt.help, type=_INI_TYPES.get(opt.kind, "string"), default=None)


@dataclass
class Settings:
    models: list[str]  # empty: every built-in tiny model
    backends: list[str] | None  # None: every registered backend
    dtype: str
    device: str
    steps: int
    engine_cache: Path
    golden_dir: Path
    update_golden: bool
    golden_format: str
    atol: float | None
    rtol: float | None
    oracle_device: str  # "none": no oracle (half-precision runs fall back to the fixed rule)
    oracle_dtype: str
    report_dir: Path | None  # None: under pytest's basetemp (decided once the session starts)


def read_settings(config: pytest.Config) -> Settings:
    """Every option resolved: command line, then ini, then default. Bad values are usage errors."""
    values = {opt.dest: _value(config, opt) for opt in OPTIONS}
    from ditto.models.tiny import cache_root

    steps = values["ditto_steps"]
    if steps is not None and steps < 0:
        raise pytest.UsageError(f"--ditto-steps must be 0 or more, got {steps}")
    if values["ditto_device"] is not None:
        _check_device(values["ditto_device"])
    device = values["ditto_device"] or _default_device()
    return Settings(
        models=values["ditto_models"] or [],
        backends=values["ditto_backends"] or None,
        dtype=values["ditto_dtype"] or "float32",
        device=device,
        steps=8 if steps is None else steps,
        engine_cache=values["ditto_engine_cache"] or cache_root() / "engines",
        golden_dir=values["golden_dir"] or config.rootpath / "golden",
        update_golden=bool(values["update_golden"]),
        golden_format=values["golden_format"] or "auto",
        atol=values["ditto_atol"],
        rtol=values["ditto_rtol"],
        oracle_device=values["ditto_oracle_device"] or device,
        oracle_dtype=values["ditto_oracle_dtype"] or "float32",
        report_dir=values["ditto_report_dir"],
    )


def _value(config: pytest.Config, opt: Option):
    raw = config.getoption(opt.dest)
    base = config.invocation_params.dir
    if raw is None:
        raw = config.getini(opt.dest)
        base = config.inipath.parent if config.inipath else config.rootpath
        if raw in (None, "", []):
            return None
    if opt.kind == "bool":
        return bool(raw)
    if opt.kind == "list":
        # repeated flags and comma-separated values both work: --ditto-backends hf,fx --ditto-backends replay
        items = raw if isinstance(raw, list) else [raw]
        return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if opt.kind == "path":
        return base / Path(os.path.expanduser(str(raw)))
    if opt.kind in ("int", "float"):
        try:
            return int(raw) if opt.kind == "int" else float(raw)
        except ValueError:
            raise pytest.UsageError(f"{opt.flag} (ini {opt.dest}) must be a number, got {raw!r}") from None
    if opt.choices and raw not in opt.choices:
        raise pytest.UsageError(f"{opt.flag} (ini {opt.dest}): {raw!r} is not one of {', '.join(opt.choices)}")
    return str(raw)


def _check_device(device: str) -> None:
    from ditto.errors import DittoError
    from ditto.runtime.request import check_device

    try:
        check_device(device, "--ditto-device")
    except DittoError as e:
        raise pytest.UsageError(str(e)) from None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
