"""Run the mutation suite: `python -m tests.mutation [options]`.

For each mutant of tests/mutation/mutants.py: plant it in a temporary copy of this checkout
(the files git tracks plus untracked, not ignored ones), run pytest there under `nice` with a
time limit, put the file back. A mutant is

- killed: pytest failed (a test failed, or collection broke);
- timeout: pytest ran past the limit (counted as killed, listed on its own);
- survived: pytest passed: no test noticed the bug;
- stale: its anchor is not in the file (or not exactly once): the code moved on and the
  mutant needs updating; never counted as a survivor, always printed loudly;
- invalid: the mutated file does not compile, or pytest could not run the selection (exit 4:
  a node id that does not exist; exit 5: nothing collected): a broken mutant, not a test result.

Kill rate = (killed + timeout) / (killed + timeout + survived).

What runs per mutant: its targeted tests (default), the whole suite (`--full`, plain
`pytest` as CI runs it), or the default harness on one tiny model (`--harness tiny-llama`:
`pytest harness/regression.py --ditto-model=tiny-llama --ditto-backends=hf,fx,replay`).
Before the mutants, each distinct selection runs once unmutated and must pass (else the
results would mean nothing); `--no-baseline` skips that.

Each run gets a fresh engine cache (cached engines are keyed by model and options, not by
ditto's source, so a mutant must not reuse another's engines) and shares the tiny models,
which no mutant touches. Bytecode is not written, so no stale .pyc outlives a mutant.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed, timeout, survived, stale, invalid
    seconds: float = 0.0
    detail: str = ""


def anchor_problem(mutant: Mutant, root: Path = ROOT) -> str | None:
    """Why the mutant cannot be planted in `root` (None when its anchor is there exactly once)."""
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.path} does not exist"
    count = path.read_text().count(mutant.old)
    if count != 1:
        return f"anchor found {count} times in {mutant.path} (needs exactly 1): {mutant.old.strip()[:70]!r}"
    if mutant.old == mutant.new:
        return "new snippet equals the old one"
    return None


def selection(mutant: Mutant, args) -> list[str]:
    if args.full:
        return []
    if args.select:
        return shlex.split(args.select)
    if args.harness:
        return ["harness/regression.py", f"--ditto-model={args.harness}", f"--ditto-backends={args.backends}"]
    return list(mutant.tests)


def copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def run_pytest(tree: Path, work: Path, label: str, pytest_args: list[str], timeout: float) -> tuple[int | None, float, str]:
    """(exit code or None on timeout, seconds, last lines of output)."""
    cache = work / "cache" / label
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    (cache / "tiny").symlink_to(work / "tiny", target_is_directory=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DITTO_CACHE_DIR": str(cache),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    command = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *pytest_args]
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    except BaseException:  # interrupted: take the pytest run down with us
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    return code, time.monotonic() - start, "\n".join(lines[-3:])


def run_mutant(tree: Path, work: Path, mutant: Mutant, args) -> Outcome:
    problem = anchor_problem(mutant, tree)
    if problem:
        return Outcome(mutant, "stale", detail=problem)
    path = tree / mutant.path
    original = path.read_text()
    try:
        path.write_text(original.replace(mutant.old, mutant.new, 1))
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as e:
            return Outcome(mutant, "invalid", detail=f"does not compile: {e}")
        code, seconds, tail = run_pytest(tree, work, mutant.name, selection(mutant, args), args.timeout)
    finally:
        path.write_text(original)
    if code is None:
        return Outcome(mutant, "timeout", seconds, f"over {args.timeout:.0f} s")
    if code == 0:
        return Outcome(mutant, "survived", seconds, tail.splitlines()[-1] if tail else "")
    if code in (4, 5):  # usage error (a node id that does not exist) or nothing collected: not a test result
        return Outcome(mutant, "invalid", seconds, f"pytest exit {code} (bad selection?): {tail.splitlines()[-1] if tail else ''}")
    return Outcome(mutant, "killed", seconds, f"exit {code}: {tail.splitlines()[-1] if tail else ''}")


def check_selections(mutants: list[Mutant]) -> list[str]:
    """Test files named in targeted selections that do not exist (a typo would look like a kill)."""
    missing = set()
    for m in mutants:
        for arg in m.tests:
            if arg == "-k":
                missing.add(f"{m.name}: -k (it filters every file of the selection; name node ids instead)")
            if arg.startswith("tests/") and not (ROOT / arg.split("::")[0]).exists():
                missing.add(arg)
    return sorted(missing)


def report(outcomes: list[Outcome], mode: str, elapsed: float) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "timeout", "survived", "stale", "invalid")}
    scored = counts["killed"] + counts["timeout"] + counts["survived"]
    rate = (counts["killed"] + counts["timeout"]) / scored if scored else float("nan")
    lines = [
        f"mutation suite ({mode}): {len(outcomes)} mutants, {counts['killed']} killed, {counts['timeout']} timeout, "
        f"{counts['survived']} survived, {counts['stale']} stale, {counts['invalid']} invalid; "
        f"kill rate {rate:.1%} ({counts['killed'] + counts['timeout']}/{scored}); {elapsed / 60:.1f} min",
    ]
    areas: dict[str, list[Outcome]] = {}
    for o in outcomes:
        areas.setdefault(o.mutant.area, []).append(o)
    for label, flag in (("listed", False), ("unlisted", True)):
        done = [o for o in outcomes if o.mutant.unlisted == flag and o.status in ("killed", "timeout", "survived")]
        if done and len(done) != sum(o.status in ("killed", "timeout", "survived") for o in outcomes):
            dead = sum(o.status != "survived" for o in done)
            lines.append(f"  set {label:12s} {dead}/{len(done)} killed ({dead / len(done):.1%})")
    for area, items in areas.items():
        done = [o for o in items if o.status in ("killed", "timeout", "survived")]
        dead = sum(o.status != "survived" for o in done)
        lines.append(f"  {area:16s} {dead}/{len(done)} killed")
    for status in ("survived", "stale", "invalid", "timeout"):
        for o in outcomes:
            if o.status == status:
                lines.append(f"{status.upper():9s} {o.mutant.name} ({o.mutant.path}): {o.mutant.why}; {o.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these mutants (names or name prefixes)")
    parser.add_argument("--full", action="store_true", help="run the whole suite (plain pytest) per mutant")
    parser.add_argument("--harness", metavar="MODEL", help="run the default harness on one tiny model per mutant")
    parser.add_argument("--backends", default="hf,fx,replay", help="backends for --harness (default: hf,fx,replay)")
    parser.add_argument("--select", metavar="ARGS", help="pytest arguments to run per mutant instead of its targeted tests")
    parser.add_argument("--area", action="append", help="only mutants of this area (ops, passes, converters, ...)")
    parser.add_argument("--set", choices=("all", "listed", "unlisted"), default="all", dest="which",
                        help="the first 70 (listed), the second set of kinds issue 12 does not list (unlisted), or both")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--no-baseline", action="store_true", help="do not run the selections unmutated first")
    parser.add_argument("--list", action="store_true", help="list the mutants and whether their anchors hold, run nothing")
    parser.add_argument("--json", metavar="PATH", help="also write the outcomes as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the temporary tree when stopped

    mutants = [m for m in MUTANTS if not args.names or any(m.name.startswith(n) for n in args.names)]
    if args.area:
        mutants = [m for m in mutants if m.area in args.area]
    if args.which != "all":
        mutants = [m for m in mutants if m.unlisted == (args.which == "unlisted")]
    if not mutants:
        parser.error("no mutant matches")
    if args.list:
        for m in mutants:
            problem = anchor_problem(m)
            print(f"{'STALE ' if problem else ''}{m.name:40s} {m.area:16s} {m.why}" + (f"  [{problem}]" if problem else ""))
        return 1 if any(anchor_problem(m) for m in mutants) else 0
    missing = check_selections(mutants)
    if missing and not (args.full or args.harness or args.select):
        print(f"targeted selections name test files that do not exist: {', '.join(missing)}", file=sys.stderr)
        return 2
    mode = (f"pytest {args.select}" if args.select else "full suite" if args.full
            else f"harness {args.harness} {args.backends}" if args.harness else "targeted tests")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ditto-mutation-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        copy_tree(tree)
        (work / "tiny").mkdir()
        if not args.no_baseline:
            seen = []
            for m in mutants:
                sel = selection(m, args)
                if sel in seen or anchor_problem(m, tree):
                    continue
                seen.append(sel)
                code, seconds, tail = run_pytest(tree, work, "baseline", sel, args.timeout)
                print(f"baseline {' '.join(sel) or '(whole suite)'}: exit {code}, {seconds:.0f} s", flush=True)
                if code != 0:
                    print(f"the unmutated tree fails this selection; fix that first:\n{tail}", file=sys.stderr)
                    return 2
        outcomes = []
        for i, m in enumerate(mutants, 1):
            outcome = run_mutant(tree, work, m, args)
            outcomes.append(outcome)
            print(f"[{i}/{len(mutants)}] {outcome.status:8s} {m.name} ({outcome.seconds:.0f} s) {outcome.detail}", flush=True)
    text = report(outcomes, mode, time.monotonic() - start)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"name": o.mutant.name, "area": o.mutant.area, "unlisted": o.mutant.unlisted, "path": o.mutant.path,
              "status": o.status, "seconds": round(o.seconds, 1),
              "why": o.mutant.why, "detail": o.detail} for o in outcomes], indent=1) + "\n")
    stale = any(o.status in ("stale", "invalid") for o in outcomes)
    return 1 if stale or any(o.status == "survived" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
