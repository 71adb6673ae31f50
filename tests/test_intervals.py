"""The answer with its uncertainty: bootstrap intervals over data seeds, honest bounds, matched
ladders, per-size gaps and the sensitivity table, on synthetic curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import Comparison, advantage_table
from promptworth.analysis.gaps import gaps_frame
from promptworth.analysis.intervals import bootstrap_plan, distinct_resamples, t_interval, weighted_quantile
from promptworth.analysis.sensitivity import sensitivity_frame
from promptworth.analysis.tables import advantage_frame, advantage_markdown
from promptworth.analysis.table_format import format_advantage
from promptworth.errors import PromptworthError

LADDER = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


def runs(curves: dict[str, dict[int, list[float]]], task: str = "T") -> pd.DataFrame:
    """{method: {size: [score per data seed]}} -> tidy rows; data seed i is the i-th score."""
    return pd.DataFrame([
        {"task": task, "method": method, "train_size": size, "data_seed": str(i + 1), "seed": f"{i + 1}-1",
         "score": score}
        for method, by_size in curves.items() for size, scores in by_size.items() for i, score in enumerate(scores)
    ])


def linear(shift: float, offsets: list[float]) -> dict[int, list[float]]:
    """Score 0.3 + (size - shift) / 2500 on the shared ladder, plus each seed's offset."""
    return {size: [0.3 + (size - shift) / 2500 + o for o in offsets] for size in LADDER}


def one(frame: pd.DataFrame, treatment: str = "prompt", baseline: str = "head", **options):
    (result,) = advantage_table(frame, treatment, baseline, AdvantageOptions(**options))
    return result


# ---------------------------------------------------------------------------------------------
# Known answers


@pytest.mark.parametrize("n", [0, 35, 150])
def test_a_known_horizontal_distance_with_a_zero_width_interval(n: int) -> None:
    """Both curves are straight lines n points apart on the same sizes; each data seed lifts both
    methods' runs alike, so every resample has the same distance: a zero-width interval at n."""
    offsets = [0.0, 0.02, -0.01, 0.03, 0.015]
    result = one(runs({"prompt": linear(0, offsets), "head": linear(n, offsets)}))
    assert result.advantage == pytest.approx(n, abs=1e-6)
    assert (result.lower, result.upper) == pytest.approx((n, n), abs=1e-6)
    assert result.n_seeds == 5 and result.n_resamples == distinct_resamples(5) == 126
    assert result.share_bound == 0 and result.share_undefined == 0 and not result.is_bound
    assert result.interval == "bootstrap" and result.reduction == "mean"


def test_identical_seeds_give_a_zero_width_interval() -> None:
    same = [0.6, 0.6, 0.6]
    frame = runs({"prompt": {10: [0.7] * 3, 100: [0.9] * 3}, "head": {10: same, 100: [0.8] * 3, 1000: [0.95] * 3}})
    frame = frame[~((frame.method == "head") & (frame.train_size == 1000))]
    result = one(frame)
    assert result.lower == result.upper == result.advantage


def test_the_exact_bootstrap_of_two_seeds() -> None:
    """Two seeds: the resamples {1,1}, {1,2}, {2,2} with probabilities 1/4, 1/2, 1/4; the 95%
    interval is the smallest and largest of the three estimates."""
    frame = runs({"prompt": {10: [0.70, 0.60], 100: [0.90, 0.80]}, "head": {10: [0.55, 0.50], 100: [0.75, 0.70]}})
    result = one(frame, levels=50)
    singles = [one(frame[frame.data_seed == s], levels=50).advantage for s in ("1", "2")]
    assert result.n_resamples == 3
    assert (result.lower, result.upper) == pytest.approx((min(singles), max(singles)))
    assert "2 data seeds: 3 distinct bootstrap resamples, too few for an informative interval" in result.reason
    plan, exact = bootstrap_plan(["1", "2"], 2000)
    assert exact and sorted(r.weight for r in plan) == [0.25, 0.25, 0.5]


def test_many_seeds_draw_a_fixed_random_sample() -> None:
    plan, exact = bootstrap_plan([str(i) for i in range(9)], 500)
    again, _ = bootstrap_plan([str(i) for i in range(9)], 500)
    assert not exact and len(plan) == 500 and [r.copies for r in plan] == [r.copies for r in again]
    assert all(sum(r.copies.values()) == 9 for r in plan)


def test_weighted_quantiles_and_the_t_interval() -> None:
    assert weighted_quantile([3.0, 1.0, 2.0], [1, 1, 2], 0.5) == 2.0
    assert weighted_quantile([1.0, math.inf], [0.9, 0.1], 0.975) == math.inf
    values = [0.02, 0.05, -0.01, 0.04]
    mean, lower, upper = t_interval(values, 0.95)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (mean, lower, upper) == pytest.approx((0.025, 0.025 - half, 0.025 + half))
    assert t_interval([0.1, 0.1, 0.1], 0.95) == pytest.approx((0.1, 0.1, 0.1))
    assert math.isnan(t_interval([0.1], 0.95)[1])


def test_one_data_seed_has_no_interval() -> None:
    frame = runs({"prompt": {10: [0.7], 100: [0.9]}, "head": {10: [0.6], 100: [0.8], 1000: [0.95]}})
    result = one(frame)
    assert not math.isnan(result.advantage) and math.isnan(result.lower) and "one data seed: no interval" in result.reason
    assert format_advantage(result) == f"{result.advantage:.0f}"


# ---------------------------------------------------------------------------------------------
# Bounds


def test_a_window_on_the_size_zero_segment_is_a_bound() -> None:
    """Gemma-3-270M on SST-2 in the second edition: the prompt at 10 examples beats the head at
    every size; only the line drawn from the untrained point crosses the head's scores."""
    frame = runs({
        "prompt": {0: [0.54, 0.54], 10: [0.88, 0.87], 100: [0.89, 0.90], 1000: [0.88, 0.89]},
        "head": {10: [0.55, 0.56], 100: [0.80, 0.80], 1000: [0.84, 0.85]},
    })
    result = one(frame)
    assert math.isnan(result.advantage) and (result.bound, result.bound_kind) == (1000 - 10, "more_than")
    assert "only on the line drawn from the untrained point" in result.reason
    assert format_advantage(result) == "> 990"
    assert "> 990" in advantage_markdown(advantage_frame([result]))
    # without the untrained point the curves do not overlap either: the same bound
    assert one(frame, zero_point=False).bound == 990


def test_the_share_of_levels_on_the_size_zero_segment_is_reported() -> None:
    frame = runs({
        "prompt": {0: [0.50, 0.50], 10: [0.80, 0.80], 100: [0.90, 0.90]},
        "head": {10: [0.60, 0.60], 100: [0.85, 0.85]},
    })
    result = one(frame, levels=100)
    # window [0.6, 0.85]: the prompt reaches 0.6-0.8 on its segment from size 0, 0.8-0.85 after 10
    assert result.zero_segment_share == pytest.approx(0.8, abs=0.011) and not result.is_bound


def test_clamped_levels_in_another_pairs_window_are_a_bound() -> None:
    frame = runs({
        "prompt": {0: [0.5, 0.5], 10: [0.7, 0.7], 100: [0.9, 0.9]},
        "head": {10: [0.6, 0.6], 100: [0.85, 0.85]},
        "null": {10: [0.65, 0.65], 100: [0.8, 0.8]},
    })
    result = one(frame, treatment="prompt", baseline="null", window_from=("prompt", "head"))
    assert result.bound_kind == "at_least" and result.bound == result.advantage and result.clamped_share > 0
    assert format_advantage(result).startswith("≥ ")


# ---------------------------------------------------------------------------------------------
# Matched ladders


def test_unmatched_ladders_are_matched_and_say_so() -> None:
    head = {10: [0.50, 0.52], 32: [0.60, 0.61], 100: [0.70, 0.72], 320: [0.80, 0.80], 1000: [0.85, 0.86]}
    null = {10: [0.55, 0.56], 100: [0.75, 0.74], 1000: [0.86, 0.85]}
    frame = runs({"null": null, "head": head})
    result = one(frame, treatment="null", baseline="head")
    assert result.ladder == "10, 100, 1000" and result.dropped == "dropped, not run by every method compared: head 32, 320"
    shared = frame[frame.train_size.isin([10, 100, 1000])]
    assert result.advantage == pytest.approx(one(shared, treatment="null", baseline="head").advantage)
    own = one(frame, treatment="null", baseline="head", matched=False)
    assert own.advantage != pytest.approx(result.advantage) and own.dropped == ""
    assert "Matched ladders: null vs head" in advantage_markdown(advantage_frame([result]))


def test_each_method_keeps_its_own_untrained_point() -> None:
    frame = runs({"prompt": {0: [0.5, 0.5], 10: [0.6, 0.62], 100: [0.8, 0.8]}, "head": {10: [0.55, 0.56], 100: [0.75, 0.77]}})
    assert one(frame).ladder == "0, 10, 100" and one(frame).dropped == ""
    assert one(frame, zero_point=False).ladder == "10, 100"


# ---------------------------------------------------------------------------------------------
# Gaps and sensitivity


def test_per_size_gaps_are_paired_on_the_data_seed() -> None:
    frame = runs({"prompt": {0: [0.5, 0.5, 0.5], 10: [0.70, 0.60, 0.65], 100: [0.9, 0.9, 0.9]},
                  "head": {10: [0.60, 0.55, 0.50], 100: [0.9, 0.9, 0.9]}})
    gaps = gaps_frame(frame, [Comparison("prompt", "head")])
    assert gaps.train_size.tolist() == [10, 100]  # no size 0: the head has no untrained point
    at10 = gaps.iloc[0]
    mean, lower, upper = t_interval([0.10, 0.05, 0.15], 0.95)
    assert (at10.gap, at10.lower, at10.upper, at10.n_seeds) == pytest.approx((mean, lower, upper, 3))
    assert (gaps.iloc[1].gap, gaps.iloc[1].lower, gaps.iloc[1].upper) == pytest.approx((0, 0, 0))


def test_gaps_pair_only_the_seeds_both_methods_ran() -> None:
    frame = runs({"prompt": {10: [0.7, 0.6, 0.8]}, "head": {10: [0.5, 0.5]}})
    (row,) = gaps_frame(frame, [Comparison("prompt", "head")]).itertuples()
    assert row.n_seeds == 2 and row.gap == pytest.approx(0.15)


def test_sensitivity_varies_one_thing_at_a_time() -> None:
    offsets = [0.0, 0.01, 0.02]
    frame = runs({"prompt": linear(0, offsets), "head": linear(100, offsets)})
    frame = frame[~((frame.method == "head") & (frame.train_size == 0))]
    table = sensitivity_frame(frame, [Comparison("prompt", "head")])
    variants = table.variant.tolist()
    assert variants[:3] == ["headline", "max over seeds", "no size 0"]
    assert [v for v in variants if v.startswith("without")] == [f"without {s}" for s in LADDER[2:-1]]
    # straight lines 100 apart: every variant on the trained sizes finds 100
    assert table.set_index("variant").loc["without 500", "advantage"] == pytest.approx(100, abs=1e-6)


def test_bad_confidence_and_resamples() -> None:
    with pytest.raises(PromptworthError, match="confidence level"):
        AdvantageOptions(confidence=1.5)
    with pytest.raises(PromptworthError, match="bootstrap resamples"):
        AdvantageOptions(resamples=3)
    with pytest.raises(PromptworthError, match="unknown interval"):
        AdvantageOptions(interval="jackknife")
