"""The regression module the ditto plugin runs for every model under test.

- `test_backends_agree[<model>-<a>-vs-<b>]`: every backend against `hf`, and every other pair,
  on the same forced tokens; fails naming the first diverging probe (step, layer).
- `test_matches_golden[<model>-<backend>]`: each backend against its committed golden
  (`--update-golden` records instead).

A backend this machine cannot run is skipped with its reason.
"""


def test_backends_agree(ditto_harness, ditto_model, ditto_pair, request):
    candidate, reference = ditto_pair
    ditto_harness.check_pair(ditto_model, candidate, reference, request.node.user_properties)


def test_matches_golden(golden, ditto_backend):
    golden.check(ditto_backend)
