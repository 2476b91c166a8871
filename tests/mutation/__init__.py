"""The project's mutation suite: planted bugs that the tests must catch.

`python -m tests.mutation` plants each bug of `tests/mutation/mutants.py` (a maintainer's
slip: a swapped index, a dropped branch, a wrong default, an off-by-one, a flipped sign, a
wrong dim), one at a time, in a temporary copy of this checkout, runs tests there with a
time limit and reports the kill rate and the survivors. See `python -m tests.mutation -h`
and `tests/mutation/__main__.py`; the recorded results are in bench/RESULTS.md. A second set,
`tests/mutation/unlisted.py` (kinds issue 12 does not list, written after the first 70), is
part of `MUTANTS`; `--set listed|unlisted` runs one set.

A mutant is (name, file, old snippet, new snippet, why, targeted tests). Its old snippet
must occur exactly once in its file: a mutant whose anchor is gone (the code moved on) is
reported as stale, never as a survivor, and `tests/mutation/test_anchors.py` fails while
any anchor is stale or ambiguous, so a refactor updates the mutants with the code.
"""
