"""The sequential rule of ``run --until-decided``: its t distribution, its stated error rate on
simulated null data at the spread the cpu studies measured, and how it judges a claim look by look."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.looks import first_seeds, matching_points
from reports.sequential import SequentialRule, beta_inc, judge_by_looks, t_quantile, t_sf
from reports.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict, check_greater, estimate, mean_of

REPO = Path(__file__).resolve().parent.parent

# two-sided critical values from a printed t table (e.g. NIST/SEMATECH e-Handbook, table 1.4.2.3)
T_TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 10, 2.228), (0.975, 30, 2.042),
           (0.995, 2, 9.925), (0.995, 10, 3.169), (0.9995, 5, 6.869), (0.95, 3, 2.353), (0.99, 20, 2.528)]


@pytest.mark.parametrize("p,df,value", T_TABLE)
def test_t_quantiles_match_a_printed_table(p, df, value):
    assert t_quantile(p, df) == pytest.approx(value, abs=6e-4)
    assert t_sf(t_quantile(p, df), df) == pytest.approx(1 - p, rel=1e-9)


def test_incomplete_beta_on_closed_forms_and_the_t_distribution_at_its_limits():
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert beta_inc(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert beta_inc(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-14)
        assert beta_inc(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-14)
    assert beta_inc(4.2, 4.2, 0.5) == pytest.approx(0.5, abs=1e-14)
    assert t_sf(0.0, 3) == pytest.approx(0.5)
    assert t_sf(1.0, 1) == pytest.approx(0.25)  # Cauchy: 1/2 - atan(1)/pi
    assert t_sf(-2.0, 7) == pytest.approx(1 - t_sf(2.0, 7))
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)  # the normal limit
    for t in (0.3, 1.0, 4.0):  # df 2 in closed form: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2
        assert t_sf(t, 2) == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, rel=1e-12)
    assert t_quantile(0.975, 3) < t_quantile(0.975, 2.5) < t_quantile(0.975, 2)  # fractional df (Welch)


def test_t_distribution_agrees_with_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (0.8, 1.0, 2.0, 3.7, 9.0, 41.0):
        for t in (0.05, 0.7, 2.0, 4.5, 12.0):
            assert t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-15)


# ----------------------------------------------------------------- the stated error rate
def measured_spread() -> float:
    """Seed std pooled over the points of the committed cpu colour-strength study (linear top-1)."""
    df = pd.read_csv(REPO / "results/cpu/color_strength/tables/trials.csv")
    done = df[df["status"] == "finished"].groupby(["augment.color.strength", "augment.ops"])["linear_top1"]
    var, n = done.var(ddof=1), done.count()
    return float(math.sqrt((var * (n - 1)).sum() / (n - 1).sum()))


def simulate(rule: SequentialRule, sims: int, sigma: float, delta: float = 0.0, cells: tuple[int, int] = (1, 1),
             seed: int = 0) -> float:
    """The fraction of simulated studies in which the claim "A beats B" is decided (either way):
    A is the mean of ``cells[0]`` points, B of ``cells[1]``, every point N(40 + delta for A, sigma)."""
    rng = np.random.default_rng(seed)
    decided = 0
    for _ in range(sims):
        data = rng.normal(40.0, sigma, size=(sum(cells), rule.max_seeds))
        data[: cells[0]] += delta

        def verdicts(n: int, data: np.ndarray = data) -> list[Verdict]:
            parts = [estimate(f"p{i}", row[:n].mean(), row[:n].std(ddof=1), n) for i, row in enumerate(data)]
            return [check_greater("A beats B", mean_of("A", parts[: cells[0]]), mean_of("B", parts[cells[0]:]))]

        decided += judge_by_looks(rule, verdicts)[0].verdict != INCONCLUSIVE
    return decided / sims


def naive_rate(looks: int, first: int, sims: int, sigma: float, seed: int = 1) -> float:
    """Adding seeds until the fixed 2-standard-error rule decides: what the sequential rule replaces."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        a, b = rng.normal(0, sigma, (2, first + looks - 1))
        for n in range(first, first + looks):
            se = math.sqrt(a[:n].var(ddof=1) / n + b[:n].var(ddof=1) / n)
            if abs(a[:n].mean() - b[:n].mean()) > 2 * se:
                hits += 1
                break
    return hits / sims


@pytest.mark.parametrize("first,most,cells", [(3, 8, (1, 1)), (2, 8, (2, 3)), (3, 3, (1, 1))])
def test_false_decisions_on_null_data_stay_within_the_stated_rate(first, most, cells):
    """No true difference, the spread measured at the cpu scale: the rule decides (wrongly) in at
    most alpha of the simulated studies, over all its looks, within the simulation's error."""
    sigma = measured_spread()
    assert 0.2 < sigma < 2.0  # the committed study's seed std, in points (0.77 when written)
    rule = SequentialRule.up_to(first, most, alpha=0.05)
    sims = 2000
    rate = simulate(rule, sims, sigma, cells=cells)
    assert rate <= rule.alpha + 3 * math.sqrt(rule.alpha * (1 - rule.alpha) / sims)


def test_the_null_simulation_can_fail_a_rule_that_peeks():
    """The same simulation on the fixed 2-SE rule applied after every added seed: far above 5%."""
    assert naive_rate(looks=6, first=3, sims=2000, sigma=measured_spread()) > 0.15


def test_a_real_difference_is_decided_and_its_direction_is_right():
    sigma = measured_spread()
    rule = SequentialRule.up_to(3, 8)
    assert simulate(rule, 300, sigma, delta=3 * sigma) > 0.9
    flipped = judge_by_looks(rule, lambda n: [check_greater(
        "A beats B", estimate("A", 38.0, sigma, n), estimate("B", 40.0, sigma, n))])[0]
    assert flipped.verdict == NOT_REPRODUCED and "reversed" in flipped.detail


# ----------------------------------------------------------------- looks, by hand
def claim(n: int, diff: float, se_per_seed: float = 1.0, seeds: int | None = None) -> Verdict:
    """A verdict of "A beats B" at ``n`` seeds: A - B = diff, each side's std se_per_seed."""
    k = n if seeds is None else seeds
    return check_greater("A beats B", estimate("A", 40.0 + diff, se_per_seed, k), estimate("B", 40.0, se_per_seed, k))


def test_a_claim_is_decided_at_its_first_deciding_look_and_later_seeds_do_not_reopen_it():
    rule = SequentialRule.up_to(3, 6)  # 4 looks at 0.0125 each
    diffs = {3: 0.5, 4: 4.0, 5: 0.1, 6: 0.1}  # look 2 decides; looks 3-4 (more seeds for other claims) would not
    v = judge_by_looks(rule, lambda n: [claim(n, diffs[n])])[0]
    assert v.verdict == REPRODUCED and v.extra["sequential"]["look"] == 2 and v.seeds == 4
    assert "decided at look 2 of 4 (n=4 seeds)" in v.detail
    assert v.extra["sequential"]["threshold"] == pytest.approx(t_quantile(1 - 0.0125 / 2, v.df))


def test_an_undecided_claim_stays_at_the_last_look_its_points_reached():
    rule = SequentialRule.up_to(2, 5)
    # its points got a third seed, never a fourth: looks 3-4 did not happen for it
    v = judge_by_looks(rule, lambda n: [claim(n, 0.3, seeds=min(n, 3))])[0]
    assert v.verdict == INCONCLUSIVE and v.extra["sequential"]["look"] == 2 and v.seeds == 3
    need = v.extra["seeds_to_decide"]
    assert need is not None and need > 3
    gap, se, df = v.difference, v.se, v.df
    assert rule.decides(gap, se * math.sqrt(3 / need), df / 2 * (need - 1))
    assert not rule.decides(gap, se * math.sqrt(3 / (need - 1)), df / 2 * (need - 2))


def test_one_look_at_the_study_s_own_seeds_is_a_plain_welch_t_test():
    rule = SequentialRule.up_to(3, 3)
    assert rule.looks == 1 and rule.level == 0.05
    v = judge_by_looks(rule, lambda n: [claim(n, 2.0)])[0]
    # Welch: both sides std 1 with 3 seeds: se = sqrt(2/3), df = 4
    assert v.df == pytest.approx(4.0) and v.se == pytest.approx(math.sqrt(2 / 3))
    assert (v.verdict == REPRODUCED) == (2.0 / math.sqrt(2 / 3) > t_quantile(0.975, 4))


def test_a_rule_for_fewer_seeds_than_the_study_has_is_refused():
    with pytest.raises(ValueError, match="fewer than the study's own 3"):
        SequentialRule.up_to(3, 2)
    with pytest.raises(ValueError, match="alpha"):
        SequentialRule(alpha=1.5)


def test_each_point_keeps_its_lowest_seeds_and_a_claim_s_cells_find_their_points():
    df = pd.DataFrame({"augment.color.strength": [0.5] * 4 + [1.0] * 3, "augment.ops": ["crop+color"] * 7,
                       "seed": [0, 1, 2, 3, 0, 2, 1], "status": ["finished"] * 7})
    kept = first_seeds(df, 2)
    assert sorted(kept[kept["augment.color.strength"] == 0.5]["seed"]) == [0, 1]
    assert sorted(kept[kept["augment.color.strength"] == 1.0]["seed"]) == [0, 1]
    params = [{"augment.color.strength": 0.5, "augment.ops": ["crop", "color"]},
              {"augment.color.strength": 1, "augment.ops": ["crop", "color"]},
              {"augment.color.strength": 1, "augment.ops": ["crop", "color", "blur"]}]
    cell = (("augment.color.strength", 1.0), ("augment.ops", "crop+color"))
    assert matching_points([cell], params) == [1]
    assert matching_points([(("augment.color.strength", "1"),)], params) == [1, 2]  # a partial cell: both
