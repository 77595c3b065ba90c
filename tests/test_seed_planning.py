"""How many seeds per point would decide a claim: the smallest n at which the observed gap clears
the verdict rule's 2 standard errors, the spread staying as measured."""

from __future__ import annotations

import math

from reports.verdicts import INCONCLUSIVE, REPRODUCED, check_greater, estimate, seeds_to_decide


def test_the_count_is_the_first_n_whose_two_standard_errors_fall_below_the_gap():
    # the temperature study's moderate-vs-extreme claim: gap 0.47, se 0.35 with 3 seeds
    n = seeds_to_decide(-0.47, 0.35, 3)
    assert n == 7
    assert 2 * 0.35 * math.sqrt(3 / 7) < 0.47 < 2 * 0.35 * math.sqrt(3 / 6)


def test_no_count_without_a_spread_or_for_a_zero_gap():
    assert seeds_to_decide(1.0, math.nan, 3) is None
    assert seeds_to_decide(1.0, 0.5, 1) is None
    assert seeds_to_decide(0.0, 0.5, 3) is None
    assert seeds_to_decide(0.001, 0.5, 3) is None  # more than MAX_SEEDS: zero within noise


def test_an_inconclusive_verdict_says_it_and_a_decided_one_does_not():
    a, b = estimate("A", 40.5, 1.0, 3), estimate("B", 40.0, 1.0, 3)
    v = check_greater("A beats B", a, b)
    se = math.sqrt(2 / 3)
    assert v.verdict == INCONCLUSIVE and v.extra["seeds_to_decide"] == math.floor(3 * (2 * se / 0.5) ** 2) + 1
    assert f"about {v.extra['seeds_to_decide']} seeds per point would decide" in v.detail
    decided = check_greater("A beats B", estimate("A", 45.0, 1.0, 3), b)
    assert decided.verdict == REPRODUCED and "seeds_to_decide" not in decided.extra
    tied = check_greater("A beats B", estimate("A", 40.0, 1.0, 3), b)
    assert tied.extra["seeds_to_decide"] is None and "zero within noise" in tied.detail
