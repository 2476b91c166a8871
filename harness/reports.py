"""Reports: a JSON + text file per comparison, a PNG per model, the end-of-session summary.

Every comparison writes `<report dir>/<model key>/<label>.json` (ditto.comparator's JSON plus
the verdict and a per-step error table; under the calibrated rule also hf's noise and the
error allowed, per step and probe) and `<label>.txt` (ditto.comparator's table). The PNG
and the summary are made from those files, so they also work under `pytest -n N`, where
the comparisons ran in other processes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ditto import fsutil
from ditto.comparator import RunComparison, format_table, to_json
from harness.comparison import FORCED_INPUTS, first_divergence, name_depth

EVENT_SUFFIX = ".json"


def _atomic_write(path: Path, text: str) -> None:
    fsutil.write_text(path, text)


def write_comparison(report_dir: Path, model_key: str, label: str, run: RunComparison, meta: dict) -> Path:
    """Write the full comparison; returns the text report's path (the one a failure message names)."""
    folder = report_dir / model_key
    div = first_divergence(run)
    errors = [{t.name: t.max_abs for t in step.tensors if t.name not in FORCED_INPUTS} for step in run.steps]
    record = {
        **meta,
        "label": label,
        "a": run.a,
        "b": run.b,
        "passed": div is None,
        "first_divergence": None if div is None else {"step": div.step, "name": div.name, "detail": div.detail},
        "max_abs_by_step": errors,
        "comparison": to_json(run),
    }
    text_path = folder / f"{label}.txt"
    _atomic_write(text_path, format_table(run) + "\n")
    _atomic_write(folder / f"{label}{EVENT_SUFFIX}", json.dumps(record, indent=1, default=str) + "\n")
    return text_path


def write_event(report_dir: Path, model_key: str, label: str, meta: dict) -> None:
    """A result without a comparison (a golden recorded, a stale golden) for the summary."""
    _atomic_write(report_dir / model_key / f"{label}{EVENT_SUFFIX}", json.dumps({**meta, "label": label}) + "\n")


def report_files(report_dir: Path) -> list[Path]:
    """The files this module writes into a report folder (and nothing else a user keeps there)."""
    found = [p for suffix in (EVENT_SUFFIX, ".txt") for p in report_dir.glob(f"*/*-vs-*{suffix}")]
    return found + [p for p in report_dir.glob("*.png") if (report_dir / p.stem).is_dir()]


def read_records(report_dir: Path) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for path in sorted(report_dir.glob(f"*/*-vs-*{EVENT_SUFFIX}")):
        try:
            records.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def plot_models(report_dir: Path) -> list[Path]:
    """One PNG per model: max abs error against probe depth, a panel per comparison, a line per step.

    Under the calibrated rule the panel also shows hf's noise against the oracle (grey band, its
    largest over steps) and the error allowed (dashed, its smallest over steps: a point under it
    passes at every step).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for model_key, records in read_records(report_dir).items():
        runs = [r for r in records if r.get("max_abs_by_step")]
        if not runs:
            continue
        fig, axes = plt.subplots(len(runs), 1, figsize=(9, 3.4 * len(runs)), squeeze=False)
        fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.25 / len(runs), bottom=0.45 / len(runs), hspace=0.9)
        for ax, r in zip(axes[:, 0], runs):
            names = sorted({n for step in r["max_abs_by_step"] for n in step}, key=name_depth)
            for i, step in enumerate(r["max_abs_by_step"]):
                ys = [max(step.get(n) or 0.0, 1e-12) if step.get(n) is not None else math.nan for n in names]
                ax.plot(range(len(names)), ys, marker=".", label=f"step {i}", alpha=0.8)
            if r.get("band_by_step"):
                noise = [_over_steps(max, r["noise_by_step"], n) for n in names]
                allowed = [_over_steps(min, r["band_by_step"], n) for n in names]
                ax.fill_between(range(len(names)), 1e-12, noise, color="grey", alpha=0.3, label="hf noise")
                ax.plot(range(len(names)), allowed, "k--", linewidth=1, label="allowed")
                ax.set_ylim(bottom=max(1e-12, min((v for v in noise if v > 0), default=1e-12) / 100))
            ax.set_yscale("log")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
            ax.set_ylabel("max abs error" + (" vs oracle" if r.get("band_by_step") else ""))
            ax.set_title(f"{model_key}: {r['label']} ({'ok' if r['passed'] else 'FAIL'})", fontsize=9)
            ax.legend(fontsize=6, ncol=6)
        path = report_dir / f"{model_key}.png"
        with fsutil.atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _over_steps(pick, per_step: list[dict], name: str) -> float:
    values = [s[name] for s in per_step if s.get(name) is not None]
    return max(pick(values), 1e-12) if values else math.nan


def headroom(record: dict) -> float | None:
    """Largest error / allowed over every probe and step (calibrated rule), None without a band."""
    band = record.get("band_by_step")
    if not band:
        return None
    ratios = [err / band[i][n] if band[i].get(n) else math.inf
              for i, step in enumerate(record["max_abs_by_step"]) for n, err in step.items()
              if err is not None and i < len(band) and n in band[i]]
    return max(ratios, default=None)


def summary_lines(report_dir: Path) -> list[str]:
    """One line per model: each comparison's verdict and worst logits error, or what happened."""
    lines = []
    for model_key, records in read_records(report_dir).items():
        parts = []
        for r in sorted(records, key=lambda r: r["label"]):
            if "max_abs_by_step" in r:
                logits = [s.get("logits") for s in r["max_abs_by_step"] if s.get("logits") is not None]
                worst = f"logits {max(logits):.1e}" if logits else ""
                ratio = headroom(r)
                if ratio is not None:
                    worst += f", worst {ratio:.2f} of allowed"
                if r["passed"]:
                    parts.append(f"{r['label']} ok {worst}".rstrip())
                else:
                    d = r["first_divergence"]
                    parts.append(f"{r['label']} FAIL at {d['name']} step {d['step']}")
            else:
                parts.append(f"{r['label']} {r.get('status', '?')}")
        lines.append(f"{model_key}: " + " | ".join(parts))
    return lines

