"""`gather_last_token`: logits only for each sequence's last token (`last_token_ids - 1`), float32."""

from tests.passes._helpers import FLOAT32, check_pass, model_context


def case():
    ctx, feeds = model_context("tiny-llama")
    return dict(ctx=ctx, feeds=feeds, pass_name="gather_last_token", matches=1, tolerance=FLOAT32,
                expect=lambda logits: logits[0, -1:].float())  # one sequence: its last row (lm_head on fewer rows: float32 sums)


def test_logits_of_the_last_token_only():
    check_pass(**case())
