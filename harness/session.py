"""The harness for one pytest session: runs backends once per model, compares, records goldens.

Token forcing: `hf` runs first, greedy; its tokens are then fed to every backend at every
step, so all runs see the same token ids and one early difference cannot cascade. hf's own
greedy run is its forced run (it was fed exactly those tokens), so it is reused.

Verdicts (ditto.comparator.tolerances has the rules and their reasons): a float32 run compares
backends pairwise with the fixed rule. A float16/bfloat16 run also runs the oracle (hf in
float32, on `--ditto-oracle-device`, the same forced tokens) and judges every backend by its
distance from the oracle against hf's own noise, per probe and step (`X-vs-hf`).

When the oracle does not fit where the run does: `--ditto-oracle-device cpu` runs it in host
memory (float32 needs 4 bytes per parameter, twice the half-precision run, and the host's
speed: slow for large models, but only hf runs there, once per model and session). On another
GPU of the node, name it (`cuda:1`; under `pytest -n` each worker sees only its own GPU, so
use `cpu` there). Layer by layer (streaming each layer's float32 weights through one GPU, as
accelerate's disk/CPU offload does) is not implemented: it needs the hf backend to load with a
device map; `--ditto-oracle-device none` falls back to the fixed per-dtype bound instead.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import shlex
from pathlib import Path

import pytest
import torch

from ditto.comparator import RunComparison
from ditto.comparator.tolerances import CALIBRATED_DTYPES, CalibratedRule, NoiseBand, fixed_tolerance, noise_band
from ditto.errors import DittoError
from ditto.models.loader import DTYPES
from ditto.runtime.backend import StepDump, StepwiseRequest, available_backends, get_backend
from harness import goldens, reports
from harness.comparison import compare_runs, compared_names, failure_message, first_divergence, worst_by_name
from harness.models import ModelUnderTest, builtin_models
from harness.options import Settings
from harness.versions import golden_versions

REFERENCE = "hf"
# backends that run an engine directory the harness builds (harness.engines), one per model
ENGINE_BACKENDS = ("ditto", "trtllm")
ORACLE_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def tolerance_rule(settings: Settings):
    """The session's rule: explicit tolerances, else calibrated in half precision (with an oracle), else fixed."""
    dtype = DTYPES[settings.dtype]
    if settings.atol is not None or settings.rtol is not None:
        return fixed_tolerance(dtype, settings.atol, settings.rtol)
    if dtype in CALIBRATED_DTYPES and settings.oracle_device != "none":
        return CalibratedRule(dtype, oracle_dtype=ORACLE_DTYPES[settings.oracle_dtype])
    return fixed_tolerance(dtype)


class Harness:
    def __init__(self, settings: Settings, report_dir: Path):
        self.settings = settings
        self.report_dir = report_dir
        self.tolerance = tolerance_rule(settings)
        self.models = [ModelUnderTest(spec) for spec in settings.models or builtin_models()]
        self._requests: dict[str, StepwiseRequest] = {}
        self._runs: dict[tuple[str, str], list[StepDump]] = {}  # (model, backend or "oracle") -> run
        self._bands: dict[str, NoiseBand] = {}

    # --- what runs -------------------------------------------------------------------------

    @functools.cached_property
    def unavailable(self) -> dict[str, str | None]:
        return available_backends()

    @functools.cached_property
    def backends(self) -> list[str]:
        """Backends to run (checked by the plugin at configure time), the reference first."""
        names = self.settings.backends or list(self.unavailable)
        return sorted(dict.fromkeys(names), key=lambda n: (n != REFERENCE, n))

    @property
    def calibrated(self) -> bool:
        return isinstance(self.tolerance, CalibratedRule)

    def pairs(self) -> list[tuple[str, str]]:
        """(candidate, reference): every backend against hf, and every other pair (fixed rule); every
        backend but hf against hf, i.e. against the oracle within hf's noise (calibrated rule)."""
        if self.calibrated:
            return [(b, REFERENCE) for b in self.backends if b != REFERENCE]
        return [(b, a) for a, b in itertools.combinations(self.backends, 2)]

    def skip_if_unavailable(self, backend: str) -> None:
        reason = self.unavailable.get(backend)
        if reason:
            pytest.skip(f"backend {backend}: {reason}")

    def request(self, model: ModelUnderTest) -> StepwiseRequest:
        if model.spec not in self._requests:
            request = StepwiseRequest(
                model=model.spec,
                prompts=model.prompts,
                steps=self.settings.steps,
                dtype=DTYPES[self.settings.dtype],
                probes=[p for p in model.probes if p != "logits"],
                device=self.settings.device,
            )
            reference = get_backend(REFERENCE).run(request)
            request.forced_tokens = [d["logits"].argmax(-1).tolist() for d in reference[:-1]]
            self._runs[(model.spec, REFERENCE)] = reference
            self._requests[model.spec] = request
        return self._requests[model.spec]

    def run(self, model: ModelUnderTest, backend: str) -> list[StepDump]:
        """The backend's step dumps for the model (once per session), skipping if it cannot run here."""
        self.skip_if_unavailable(backend)
        key = (model.spec, backend)
        if key not in self._runs:
            request = self.request(model)
            if key not in self._runs:
                if backend in ENGINE_BACKENDS:
                    request = dataclasses.replace(request, engine_dir=str(self.engine_dir(model, backend)))
                self._runs[key] = get_backend(backend).run(request)
        return self._runs[key]

    def engine_dir(self, model: ModelUnderTest, builder: str) -> Path:
        """The cached engine of `builder` for the model (built once per content, options, versions);
        skips when this machine cannot build it."""
        import warnings

        import harness.trtllm  # noqa: F401  (registers the trtllm builder)
        from harness.engines import ENGINE_BUILDERS, build_engine, engine_options

        reason = ENGINE_BUILDERS[builder].unavailable_reason()
        if reason:
            pytest.skip(f"engine builder {builder}: {reason}")
        options = engine_options(model, self.settings.dtype, self.settings.steps, model.probes)
        result = build_engine(builder, model, self.settings.engine_cache, options)
        if result.problem:
            warnings.warn(f"engine cache entry {result.path.name} was rebuilt: {result.problem}", stacklevel=1)
        return result.path

    def oracle(self, model: ModelUnderTest) -> list[StepDump]:
        """hf in the oracle dtype on the oracle device, fed the run's forced tokens (once per session)."""
        key = (model.spec, "oracle")
        if key not in self._runs:
            request = dataclasses.replace(self.request(model), dtype=self.tolerance.oracle_dtype,
                                          device=self.settings.oracle_device)
            self._runs[key] = get_backend(REFERENCE).run(request)
        return self._runs[key]

    def band(self, model: ModelUnderTest, transform=None) -> NoiseBand:
        """The calibrated rule's band over the compared names; `transform` maps a run to what is compared."""
        transform = transform or (lambda dumps: _select(dumps, compared_names(model.probes)))
        return noise_band(transform(self.run(model, REFERENCE)), transform(self.oracle(model)), self.tolerance)

    def _pair_band(self, model: ModelUnderTest) -> NoiseBand:
        if model.spec not in self._bands:
            self._bands[model.spec] = self.band(model)
        return self._bands[model.spec]

    # --- checks ------------------------------------------------------------------------------

    def judge(self, model: ModelUnderTest, backend: str, dumps: list[StepDump]) -> RunComparison:
        """`dumps` (a run of `backend`) judged by the session's rule: against the oracle within hf's
        noise band (calibrated), or against hf (fixed)."""
        names = compared_names(model.probes)
        if self.calibrated:
            oracle = f"oracle (hf {self.settings.oracle_dtype})"
            return compare_runs(_select(dumps, names), _select(self.oracle(model), names), self._pair_band(model),
                                backend, oracle)
        return compare_runs(_select(dumps, names), _select(self.run(model, REFERENCE), names), self.tolerance,
                            backend, REFERENCE)

    def check_pair(self, model: ModelUnderTest, candidate: str, reference: str, properties: list) -> None:
        if self.calibrated:  # pairs() pairs every backend with hf: judged against the oracle
            run, band = self.judge(model, candidate, self.run(model, candidate)), self._pair_band(model)
        else:
            names = compared_names(model.probes)
            want = _select(self.run(model, reference), names)
            got = _select(self.run(model, candidate), names)
            run, band = compare_runs(got, want, self.tolerance, candidate, reference), None
        self._verdict(model, f"{candidate}-vs-{reference}", run, properties, {"kind": "pair"}, band)

    def check_golden(self, model: ModelUnderTest, backend: str, properties: list, nodeid: str) -> None:
        dumps = self.run(model, backend)
        names = compared_names(model.probes)
        folder = goldens.golden_path(self.settings.golden_dir, model.key, backend, self.settings.dtype)
        identity = self._identity(model)
        label = f"{backend}-vs-golden"
        if self.settings.update_golden:
            manifest = {**identity, **self._environment(), "backend": backend, "model": model.spec,
                        "num_steps": len(dumps), "probes": model.probes, "tolerance": self.tolerance.as_dict()}
            if self.calibrated:
                manifest["oracle_device"] = self.settings.oracle_device
            goldens.record(folder, manifest, goldens.golden_steps(dumps, names, identity["format"]))
            reports.write_event(self.report_dir, model.key, label, {"status": f"recorded {folder}"})
            return
        command = self._record_command(model, backend, nodeid)
        try:
            golden = goldens.load(folder)
        except DittoError as e:  # a damaged golden: say how to record it again
            reports.write_event(self.report_dir, model.key, label, {"status": "DAMAGED"})
            pytest.fail(f"{e}\nre-record it with:\n  {command}", pytrace=False)
        if golden is None:
            reports.write_event(self.report_dir, model.key, label, {"status": "MISSING"})
            pytest.fail(f"no golden for backend {backend} on {model.spec} at {folder}; record it with:\n  {command}",
                        pytrace=False)
        stale = goldens.stale_reasons(golden.manifest, identity)
        if stale:
            reports.write_event(self.report_dir, model.key, label, {"status": "STALE"})
            pytest.fail(f"golden {folder} is stale, not compared:\n  " + "\n  ".join(stale)
                        + f"\nre-record it with:\n  {command}", pytrace=False)
        elsewhere = goldens.environment_differences(golden.manifest, self._environment())
        def as_golden(runs):
            return goldens.golden_steps(runs, names, golden.manifest["format"], like=golden.steps)

        # calibrated: the golden, recorded by this backend on maybe another device, may differ from
        # this run by what hf's noise allows, measured on the same (fingerprinted) tensors
        tolerance = self.band(model, as_golden) if self.calibrated else self.tolerance
        run = compare_runs(as_golden(dumps), golden.steps, tolerance, backend, f"golden {folder}")
        meta = {"kind": "golden", "golden": str(folder), "recorded_elsewhere": elsewhere}
        note = ("golden recorded in another environment, compared by the same rule (harness/goldens.py says why):\n  "
                + "\n  ".join(elsewhere) + "\n") if elsewhere else ""
        self._verdict(model, label, run, properties, meta, tolerance if self.calibrated else None, note)

    def _verdict(self, model, label, run, properties, meta, band: NoiseBand | None = None, note: str = "") -> None:
        meta = {**meta, "model": model.spec, "dtype": self.settings.dtype, "tolerance": self.tolerance.as_dict()}
        if band is not None:
            meta["band_by_step"], meta["noise_by_step"] = band.allowed, band.noise  # floating names only
        report = reports.write_comparison(self.report_dir, model.key, label, run, meta)
        for name, t in worst_by_name(run).items():  # junit XML properties (record_property warns under xunit2)
            properties.extend([(f"max_abs:{name}", t.max_abs), (f"max_rel:{name}", t.max_rel)])
        if first_divergence(run) is not None:
            rule = f"rule: {self.tolerance.describe()}\n" if band is not None else ""
            pytest.fail(note + rule + failure_message(run, str(report)), pytrace=False)

    def _environment(self) -> dict:
        """Where this run's goldens are recorded (shown, not compared: harness/goldens.py)."""
        return {"versions": golden_versions(), "device": self.settings.device}

    def _identity(self, model: ModelUnderTest) -> dict:
        return {
            "model_hash": model.content_hash,
            "dtype": self.settings.dtype,
            "prompts": model.prompts,
            "steps": self.settings.steps,
            "format": goldens.choose_format(self.settings.golden_format, model.weight_bytes),
            "format_version": goldens.FORMAT_VERSION,
        }

    def _record_command(self, model: ModelUnderTest, backend: str, nodeid: str) -> str:
        s = self.settings
        args = ["pytest", nodeid, "--update-golden", f"--ditto-model={model.spec}", f"--ditto-backends={backend}",
                f"--ditto-dtype={s.dtype}", f"--ditto-steps={s.steps}", f"--golden-dir={_shown_path(s.golden_dir)}"]
        if s.golden_format != "auto":
            args.append(f"--golden-format={s.golden_format}")
        return shlex.join(args)


def _select(dumps: list[StepDump], names: list[str]) -> list[StepDump]:
    """The compared names of each step (a name a backend lacks shows up as missing in the comparison)."""
    return [{n: d[n] for n in names if n in d} for d in dumps]


def _shown_path(path: Path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)
