"""The harness for one pytest session: runs backends once per model, compares, records goldens.

Token forcing: `hf` runs first, greedy; its tokens are then fed to every backend at every
step, so all runs see the same token ids and one early difference cannot cascade. hf's own
greedy run is its forced run (it was fed exactly those tokens), so it is reused.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import shlex
from pathlib import Path

import pytest

from ditto.errors import DittoError
from ditto.models.loader import DTYPES
from ditto.runtime.backend import StepDump, StepwiseRequest, available_backends, get_backend

from harness import goldens, reports
from harness.comparison import compare_runs, compared_names, failure_message, first_divergence, worst_by_name
from harness.models import ModelUnderTest, builtin_models
from harness.options import Settings
from harness.tolerances import tolerance_for
from harness.versions import golden_versions

REFERENCE = "hf"
# backends that run an engine directory the harness builds (harness.engines), one per model
ENGINE_BACKENDS = ("ditto", "trtllm")


class Harness:
    def __init__(self, settings: Settings, report_dir: Path):
        self.settings = settings
        self.report_dir = report_dir
        self.tolerance = tolerance_for(settings.dtype, settings.atol, settings.rtol)
        self.models = [ModelUnderTest(spec) for spec in settings.models or builtin_models()]
        self._requests: dict[str, StepwiseRequest] = {}
        self._runs: dict[tuple[str, str], list[StepDump]] = {}

    # --- what runs -------------------------------------------------------------------------

    @functools.cached_property
    def unavailable(self) -> dict[str, str | None]:
        return available_backends()

    @functools.cached_property
    def backends(self) -> list[str]:
        """Backends to run (checked by the plugin at configure time), the reference first."""
        names = self.settings.backends or list(self.unavailable)
        return sorted(dict.fromkeys(names), key=lambda n: (n != REFERENCE, n))

    def pairs(self) -> list[tuple[str, str]]:
        """(candidate, reference): every backend against hf, and every other pair."""
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

    # --- checks ------------------------------------------------------------------------------

    def check_pair(self, model: ModelUnderTest, candidate: str, reference: str, properties: list) -> None:
        names = compared_names(model.probes)
        want = _select(self.run(model, reference), names)
        got = _select(self.run(model, candidate), names)
        self._verdict(model, f"{candidate}-vs-{reference}", compare_runs(got, want, self.tolerance, candidate, reference),
                      properties, {"kind": "pair"})

    def check_golden(self, model: ModelUnderTest, backend: str, properties: list, nodeid: str) -> None:
        dumps = self.run(model, backend)
        names = compared_names(model.probes)
        folder = goldens.golden_path(self.settings.golden_dir, model.key, backend, self.settings.dtype)
        identity = self._identity(model)
        label = f"{backend}-vs-golden"
        if self.settings.update_golden:
            manifest = {**identity, "backend": backend, "model": model.spec, "device": self.settings.device,
                        "num_steps": len(dumps), "probes": model.probes, "tolerance": self.tolerance.as_dict()}
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
        got = goldens.golden_steps(dumps, names, golden.manifest["format"], like=golden.steps)
        run = compare_runs(got, golden.steps, self.tolerance, backend, f"golden {folder}")
        self._verdict(model, label, run, properties, {"kind": "golden", "golden": str(folder)})

    def _verdict(self, model, label, run, properties, meta) -> None:
        meta = {**meta, "model": model.spec, "dtype": self.settings.dtype, "tolerance": self.tolerance.as_dict()}
        report = reports.write_comparison(self.report_dir, model.key, label, run, meta)
        for name, t in worst_by_name(run).items():  # junit XML properties (record_property warns under xunit2)
            properties.extend([(f"max_abs:{name}", t.max_abs), (f"max_rel:{name}", t.max_rel)])
        if first_divergence(run) is not None:
            pytest.fail(failure_message(run, str(report)), pytrace=False)

    def _identity(self, model: ModelUnderTest) -> dict:
        return {
            "model_hash": model.content_hash,
            "dtype": self.settings.dtype,
            "versions": golden_versions(),
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
