"""The mutation suite's planted bugs still fit the code: every anchor occurs exactly once in
its file and every targeted selection names test files that exist. A refactor that moves an
anchored snippet fails here, so the mutant is updated with the code instead of silently
dropping out of `python -m tests.mutation`."""

import pytest

from tests.mutation.__main__ import ROOT, anchor_problem, check_selections
from tests.mutation.mutants import AREAS, MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_anchor_is_in_its_file_exactly_once(mutant):
    assert anchor_problem(mutant) is None


def test_selections_exist_and_names_are_unique():
    assert check_selections(list(MUTANTS)) == []
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


def test_every_area_has_mutants():
    assert {area for _, area in AREAS} <= {m.area for m in MUTANTS}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_planted_file_still_compiles(mutant):
    text = (ROOT / mutant.path).read_text()
    compile(text.replace(mutant.old, mutant.new, 1), mutant.path, "exec")  # else it would be a broken mutant, not a bug
