"""The data advantage: synthetic curves with known answers, every edge case, the paper's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ci import unavailable

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import advantage_table, compare
from promptworth.analysis.curves import (
    Curve,
    monotone_curve,
    points_needed,
    reduce_runs,
    run_matrix,
    score_levels,
    score_window,
)
from promptworth.analysis.lescao import import_lescao
from promptworth.errors import PromptworthError


def tidy(curves: dict[str, dict[int, list[float]]], task: str = "T") -> pd.DataFrame:
    """{method: {size: [score per seed]}} -> tidy rows (seed i is the i-th score)."""
    rows = [
        {"task": task, "method": method, "train_size": size, "seed": str(i), "score": score}
        for method, by_size in curves.items()
        for size, scores in by_size.items()
        for i, score in enumerate(scores)
    ]
    return pd.DataFrame(rows)


def one(frame: pd.DataFrame, treatment: str = "prompt", baseline: str = "head", **options) -> object:
    """The result with Le Scao & Rush's procedure, each curve on its own sizes unless ``matched``
    (the mechanics tests below shift one curve's sizes against the other's)."""
    (result,) = advantage_table(frame, treatment, baseline, AdvantageOptions.lescao(**{"matched": False, **options}))
    return result


def curve(sizes, scores) -> Curve:
    return Curve(np.asarray(sizes, float), np.asarray(scores, float))


BASE_SIZES = [10, 20, 40, 80, 160]
BASE_SCORES = [0.50, 0.60, 0.65, 0.80, 0.90]


def shifted(n: int, seeds: int = 4) -> pd.DataFrame:
    """Baseline = treatment shifted right by n points; every seed's best is the curve itself."""
    def runs(scores: list[float]) -> list[list[float]]:
        return [[s] + [s - 0.01 * (k + 1) for k in range(seeds - 1)] for s in scores]

    prompt = dict(zip(BASE_SIZES, runs(BASE_SCORES)))
    head = dict(zip([s + n for s in BASE_SIZES], runs(BASE_SCORES)))
    return tidy({"prompt": prompt, "head": head})


# ---------------------------------------------------------------------------------------------
# Known answers


@pytest.mark.parametrize("n", [0, 7, 100, 1234])
def test_shift_by_n_points_gives_n(n: int) -> None:
    result = one(shifted(n))
    assert result.advantage == pytest.approx(n, abs=1e-9)
    assert result.window_lo == 0.5 and result.window_hi == 0.9
    # every leave-one-out curve is a lower copy shifted the same way, except the top seed's
    assert result.n_loo == 16 and result.reason == ""


def test_shift_is_the_same_in_the_full_window_and_for_any_level_count() -> None:
    for options in ({"window": "full"}, {"levels": 7}, {"levels": 1}, {"reduction": "mean"}, {"reduction": "median"}):
        assert one(shifted(50), **options).advantage == pytest.approx(50, abs=1e-9)


def test_sign_positive_when_treatment_needs_fewer_points() -> None:
    assert one(shifted(30), treatment="head", baseline="prompt").advantage == pytest.approx(-30)


def test_hand_computed_two_point_curves() -> None:
    # prompt: 10 -> 20 points for 0.5 -> 0.9; head: 10 -> 110. Gap grows linearly 0 -> 90: mean 45.
    frame = tidy({"prompt": {10: [0.5], 20: [0.9]}, "head": {10: [0.5], 110: [0.9]}})
    assert one(frame).advantage == pytest.approx(45)


def test_log_scale_interpolates_in_log_size() -> None:
    prompt, head = curve([10, 100], [0.5, 0.9]), curve([30, 300], [0.5, 0.9])
    levels = score_levels(0.5, 0.9, 11)
    x_t, x_b = points_needed(prompt, levels, "log"), points_needed(head, levels, "log")
    assert np.allclose(x_b / x_t, 3.0)  # a multiplicative shift stays one at every level
    assert np.allclose(x_t, 10 * 10 ** ((levels - 0.5) / 0.4))
    frame = tidy({"prompt": {10: [0.5], 100: [0.9]}, "head": {30: [0.5], 300: [0.9]}})
    assert one(frame, x_scale="log", levels=11).advantage == pytest.approx(np.mean(x_b - x_t))
    # linear: head needs 30 + 270 t, prompt 10 + 90 t, mean over symmetric t = 20 + 180 / 2
    assert one(frame).advantage == pytest.approx(110)


def test_levels_are_interior_and_evenly_spaced() -> None:
    assert np.allclose(score_levels(0.0, 1.0, 4), [0.2, 0.4, 0.6, 0.8])


def test_first_reach_skips_flat_stretches() -> None:
    c = curve([10, 20, 30, 40], [0.5, 0.6, 0.6, 0.8])
    assert points_needed(c, np.array([0.55, 0.6, 0.7]), "linear") == pytest.approx([15, 20, 35])


def test_clamping_outside_a_curves_range() -> None:
    c = curve([10, 20], [0.5, 0.7])
    assert points_needed(c, np.array([0.4, 0.5, 0.7, 0.9]), "linear") == pytest.approx([10, 10, 20, 20])
    single = curve([16], [0.6])
    assert points_needed(single, np.array([0.5, 0.6, 0.7]), "linear") == pytest.approx([16, 16, 16])


def test_reduction_then_running_max() -> None:
    matrix = run_matrix(tidy({"m": {10: [0.2, 0.4, 0.9], 20: [0.5, 0.5, 0.5], 40: [0.3, 0.7, np.nan]}}))
    assert reduce_runs(matrix, "max")[1].tolist() == [0.9, 0.5, 0.7]
    assert reduce_runs(matrix, "mean")[1].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert reduce_runs(matrix, "median")[1].tolist() == pytest.approx([0.4, 0.5, 0.5])
    monotone = monotone_curve(*reduce_runs(matrix, "max"))
    assert monotone.scores.tolist() == [0.9, 0.9, 0.9] and monotone.sizes.tolist() == [10, 20, 40]


def test_windows() -> None:
    a, b = curve([1, 2], [0.2, 0.8]), curve([1, 2], [0.4, 0.9])
    assert score_window([a, b], "overlap") == (0.4, 0.8)
    assert score_window([a, b], "full") == (0.2, 0.9)


# ---------------------------------------------------------------------------------------------
# Edge cases


def test_curves_that_do_not_overlap_are_nan_with_a_reason() -> None:
    frame = tidy({"prompt": {10: [0.8, 0.8], 20: [0.9, 0.9]}, "head": {10: [0.5, 0.5], 20: [0.6, 0.6]}})
    result = one(frame)
    assert math.isnan(result.advantage) and math.isnan(result.std)
    assert "do not overlap" in result.reason and (result.bound, result.bound_kind) == (20 - 10, "more_than")
    # the full window would clamp the head at its largest size on every level above 0.6: the
    # curves not overlapping is the stronger statement, whatever the window
    full = one(frame, window="full")
    assert math.isnan(full.advantage) and (full.bound, full.bound_kind) == (10, "more_than")


def test_a_curve_that_stops_below_the_windows_top_gives_a_bound() -> None:
    """Clamped levels: the full window (or another pair's) reaches above a curve's best score."""
    frame = tidy({"prompt": {10: [0.5, 0.5], 20: [0.9, 0.9]}, "head": {10: [0.4, 0.4], 40: [0.7, 0.7]}})
    full = one(frame, window="full")
    levels = score_levels(0.4, 0.9, 1000)
    expected = np.mean(points_needed(curve([10, 40], [0.4, 0.7]), levels) - points_needed(curve([10, 20], [0.5, 0.9]), levels))
    assert full.advantage == pytest.approx(expected) and full.bound == full.advantage
    assert full.bound_kind == "at_least"  # the head never reaches 0.7-0.9: it needs more than 40 there
    assert full.clamped_share == pytest.approx(np.mean(levels > 0.7))
    reverse = one(frame, treatment="head", baseline="prompt", window="full")
    assert reverse.bound_kind == "at_most" and reverse.advantage == pytest.approx(-expected)
    assert one(frame).bound_kind == ""  # the overlap window clamps nothing


def test_flat_curve() -> None:
    frame = tidy({"prompt": {10: [0.7, 0.7], 100: [0.7, 0.7]}, "head": {10: [0.5, 0.5], 110: [0.9, 0.9]}})
    result = one(frame)
    assert math.isnan(result.advantage) and "zero height" in result.reason
    full = one(frame, window="full", levels=4)  # levels 0.58, 0.66, 0.74, 0.82
    head_needs = 10 + (np.array([0.58, 0.66, 0.74, 0.82]) - 0.5) * 250
    prompt_needs = np.array([10, 10, 100, 100])  # flat at 0.7: reached at once, never above
    assert full.advantage == pytest.approx(np.mean(head_needs - prompt_needs))
    both_flat = tidy({"prompt": {10: [0.7, 0.7]}, "head": {10: [0.7, 0.7], 20: [0.7, 0.7]}})
    assert "flat" in one(both_flat, window="full").reason


def test_single_run_per_method_has_no_error_bar() -> None:
    frame = tidy({"prompt": {10: [0.5], 20: [0.9]}, "head": {10: [0.5], 110: [0.9]}})
    result = one(frame)
    assert result.advantage == pytest.approx(45)
    assert math.isnan(result.std) and "two runs" in result.reason and result.n_loo == 0


def test_missing_scores_and_unshared_sizes() -> None:
    frame = shifted(25, seeds=3)
    with_gaps = pd.concat([
        frame,
        # an unscored run at a size only the head has, and an all-NaN size: both ignored
        pd.DataFrame([{"task": "T", "method": "head", "train_size": 1000, "seed": "0", "score": np.nan},
                      {"task": "T", "method": "prompt", "train_size": 15, "seed": "1", "score": np.nan}]),
    ])
    assert one(with_gaps).advantage == pytest.approx(25)
    # one seed lacks a size: the max over the remaining runs is used there
    dropped = frame.drop(frame[(frame.method == "prompt") & (frame.train_size == 40) & (frame.seed == "2")].index)
    assert one(dropped).advantage == pytest.approx(25)


def test_task_missing_a_method_is_nan_with_a_reason() -> None:
    frame = pd.concat([shifted(10), tidy({"prompt": {10: [0.5], 20: [0.6]}}, task="U")])
    t, u = advantage_table(frame, "prompt", "head", AdvantageOptions.lescao(matched=False))
    assert t.advantage == pytest.approx(10)
    assert math.isnan(u.advantage) and "no runs of head" in u.reason
    assert [r.task for r in advantage_table(frame, "prompt", "head", tasks=["U"])] == ["U"]
    # on a matched ladder (the default) the shifted curves share no size at all
    matched = advantage_table(frame, "prompt", "head")[0]
    assert math.isnan(matched.advantage) and not matched.bound_kind
    assert "one trained size that every method compared ran (20): no curve" in matched.reason
    apart = advantage_table(shifted(7), "prompt", "head")[0]
    assert math.isnan(apart.advantage) and "no trained size that every method compared ran" in apart.reason


def test_leave_one_out_combinations_and_ddof() -> None:
    rng = np.random.default_rng(0)
    frame = tidy({
        "prompt": {s: list(0.5 + 0.1 * i + rng.uniform(0, 0.05, 3)) for i, s in enumerate([10, 20, 40, 80])},
        "head": {s: list(0.45 + 0.1 * i + rng.uniform(0, 0.05, 4)) for i, s in enumerate([15, 30, 60, 120])},
    })
    r0, r1 = one(frame), one(frame, ddof=1)
    assert r0.n_loo == 12 and r0.advantage == r1.advantage
    assert r1.std == pytest.approx(r0.std * math.sqrt(12 / 11))
    # recompute the 12 leave-one-out estimates by hand
    m = {k: run_matrix(frame[frame.method == k]) for k in ("prompt", "head")}
    options = AdvantageOptions.lescao(matched=False)
    values = [
        compare({"prompt": m["prompt"].without_seed(a), "head": m["head"].without_seed(b)}, "prompt", "head",
                options).advantage
        for a in m["prompt"].seeds for b in m["head"].seeds
    ]
    assert r0.std == pytest.approx(np.std(values))


def test_window_from_other_methods() -> None:
    frame = pd.concat([shifted(40), tidy({"null": {12: [0.4, 0.4], 200: [0.95, 0.95]}})])
    own = one(frame, treatment="prompt", baseline="null")
    shared = one(frame, treatment="prompt", baseline="null", window_from=("prompt", "head"))
    assert (shared.window_lo, shared.window_hi) == (0.5, 0.9) and own.window_lo == 0.5 and own.window_hi == 0.9
    assert shared.n_loo == 4 * 4 * 2  # one run of each of prompt, null and head left out
    # with a common window, comparisons add up: (prompt vs null) + (null vs head) = prompt vs head
    nh = one(frame, treatment="null", baseline="head", window_from=("prompt", "head"))
    assert shared.advantage + nh.advantage == pytest.approx(one(frame).advantage)


@pytest.mark.parametrize(
    "options, message",
    [({"reduction": "min"}, "reduction"), ({"x_scale": "sqrt"}, "x scale"), ({"window": "left"}, "window"),
     ({"levels": 0}, "levels"), ({"ddof": 2}, "ddof"),
     ({"levels": 10**9}, "levels must be an integer from 1 to 1,000,000, got 1000000000")],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(PromptworthError, match=message):
        AdvantageOptions(**options)


def test_bad_tables() -> None:
    frame = shifted(10)
    with pytest.raises(PromptworthError, match="'nul' not in the results; methods present: prompt, head"):
        advantage_table(frame, "nul", "head")
    with pytest.raises(PromptworthError, match="task.*V"):
        advantage_table(frame, "prompt", "head", tasks=["V"])
    with pytest.raises(PromptworthError, match="missing column.*score"):
        advantage_table(frame.drop(columns=["score"]), "prompt", "head")
    with pytest.raises(PromptworthError, match="no runs with a score"):
        advantage_table(frame.assign(score=np.nan), "prompt", "head")
    with pytest.raises(PromptworthError, match="same method"):
        advantage_table(frame, "head", "head")
    with pytest.raises(PromptworthError, match="share train_size"):
        advantage_table(pd.concat([frame, frame.head(1)]), "prompt", "head")
    with pytest.raises(PromptworthError, match="positive training-set sizes"):
        advantage_table(pd.concat([frame, frame.head(1).assign(train_size=0, seed="z")]), "prompt", "head",
                        AdvantageOptions(x_scale="log"))
    with pytest.raises(PromptworthError, match="without a method"):
        advantage_table(frame.assign(method=[None] + list(frame.method[1:])), "prompt", "head")


# ---------------------------------------------------------------------------------------------
# Le Scao & Rush's wandb exports


def wandb_csv(path: Path, models: list[str], sizes=(10, 20, 40), metric: str = "test-acc-all-p") -> Path:
    columns: dict[str, list] = {"training_points": list(sizes)}
    for k, model in enumerate(models):
        for seed in (1, 0):
            name = f"{model} seed {seed} - "
            columns[name + "_step"] = [0] * len(sizes)
            columns[name + "_step__MIN"] = [0] * len(sizes)
            columns[name + metric] = [0.5 + 0.1 * i + 0.01 * k + 0.001 * seed for i in range(len(sizes))]
            columns[name + metric + "__MIN"] = [0.0] * len(sizes)
            columns[name + metric + "__MAX"] = [1.0] * len(sizes)
    frame = pd.DataFrame(columns)
    frame.iloc[0, frame.columns.get_loc(f"{models[0]} seed 0 - {metric}")] = np.nan
    frame.to_csv(path, index=False)
    return path


def test_import_lescao_maps_models_and_patterns(tmp_path: Path) -> None:
    models = ["CLF roberta", "PVP 0 roberta", "PVP 0 roberta neutral verbalizer", "PVP 3 roberta",
              "PVP 3 roberta neutral verbalizer"]
    path = wandb_csv(tmp_path / "cb.csv", models)
    frame = import_lescao(path)
    assert list(frame.columns) == ["task", "method", "model", "template_name", "train_size", "seed", "metric", "score"]
    assert set(frame.task) == {"CB"}  # the registry's spelling of the file stem
    assert frame.groupby("method").size().to_dict() == {"head": 5, "null": 6, "prompt": 6}  # one empty cell
    assert set(frame.seed) == {"0", "1"} and set(frame.metric) == {"acc"} and set(frame.model) == {"roberta"}
    p0 = frame[(frame.method == "prompt") & (frame.train_size == 20) & (frame.seed == "1")].score.item()
    assert p0 == pytest.approx(0.5 + 0.1 + 0.01 * 1 + 0.001)
    p3 = import_lescao(path, task="X", pattern=3)
    assert set(p3.task) == {"X"} and set(p3.template_name) == {"", "pattern-3"}
    p3_score = p3[(p3.method == "null") & (p3.train_size == 40) & (p3.seed == "0")].score.item()
    assert p3_score == pytest.approx(0.5 + 0.2 + 0.01 * 4)


def test_import_lescao_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptworthError, match="unknown model 'SVM roberta'"):
        import_lescao(wandb_csv(tmp_path / "a.csv", ["CLF roberta", "SVM roberta"]))
    with pytest.raises(PromptworthError, match="no such file"):
        import_lescao(tmp_path / "missing.csv")
    (tmp_path / "b.csv").write_text("x,y\n1,2\n")
    with pytest.raises(PromptworthError, match="training_points"):
        import_lescao(tmp_path / "b.csv")
    (tmp_path / "steps.csv").write_text("training_points,CLF roberta seed 1 - _step\n10,0\n")
    with pytest.raises(PromptworthError, match="no scores"):
        import_lescao(tmp_path / "steps.csv")
    with pytest.raises(PromptworthError, match=r"c\.csv: no runs of pattern 0 \(patterns here: 1, 3\)"):
        import_lescao(wandb_csv(tmp_path / "c.csv", ["CLF roberta", "PVP 1 roberta", "PVP 3 roberta"]))
    with pytest.raises(PromptworthError, match="--pattern must be a PVP pattern number"):
        import_lescao(wandb_csv(tmp_path / "c.csv", ["PVP 1 roberta"]), pattern=-1)
    with pytest.raises(PromptworthError, match="no such file"):
        import_lescao(tmp_path)  # a folder


# ---------------------------------------------------------------------------------------------
# The published numbers (Le Scao & Rush 2021, Table 1) from the authors' exports

# task: (prompt vs head, prompt vs null, null vs head) as (mean, std) in data points
PUBLISHED = {
    "cb": ((90, 2), (78, 2), (12, 1)),
    "boolq": ((752, 46), (299, 81), (453, 90)),
    "mnli": ((3506, 536), (150, 252), (3355, 612)),
}


@pytest.fixture(scope="module")
def lescao(request: pytest.FixtureRequest) -> dict[str, pd.DataFrame]:
    reference = request.getfixturevalue("reference_dir") / "lescao2021"
    if not reference.is_dir():
        unavailable(f"no {reference}; set PROMPTWORTH_REFERENCE")
    return {task: import_lescao(reference / f"{task}.csv") for task in PUBLISHED}


@pytest.mark.parametrize("task", list(PUBLISHED))
def test_published_prompt_vs_head(lescao: dict[str, pd.DataFrame], task: str) -> None:
    (mean, std), _, _ = PUBLISHED[task]
    result = one(lescao[task], matched=True)  # AdvantageOptions.lescao(): the published procedure
    assert result.n_runs == "4/4" and result.n_loo == 16
    if task == "mnli":  # the export differs slightly from the paper's runs: 3502 ± 522 recomputed
        assert result.advantage == pytest.approx(3502, abs=1)
        assert abs(result.advantage - mean) < 10 and result.std == pytest.approx(std, rel=0.05)
    else:
        assert (round(result.advantage), round(result.std)) == (mean, std)


@pytest.mark.parametrize("task", list(PUBLISHED))
def test_published_null_verbalizer_comparisons(lescao: dict[str, pd.DataFrame], task: str) -> None:
    """The paper's null-verbalizer rows use the prompt-vs-head score window (they add up)."""
    _, (pn_mean, pn_std), (nh_mean, nh_std) = PUBLISHED[task]
    options = {"window_from": ("prompt", "head"), "matched": True}
    pn = one(lescao[task], "prompt", "null", **options)
    nh = one(lescao[task], "null", "head", **options)
    assert pn.n_loo == nh.n_loo == 64
    tolerance = {"cb": 1, "boolq": 2, "mnli": 10}[task]
    assert abs(pn.advantage - pn_mean) <= tolerance and abs(nh.advantage - nh_mean) <= tolerance
    assert pn.std == pytest.approx(pn_std, rel=0.2, abs=0.5) and nh.std == pytest.approx(nh_std, rel=0.02, abs=0.5)
    assert pn.advantage + nh.advantage == pytest.approx(one(lescao[task]).advantage)
    # every method ran every size: matching the ladders changes nothing
    assert pn.dropped == nh.dropped == ""


def _two_methods(treatment_scores: list[float], baseline_scores: list[float], task: str = "T") -> pd.DataFrame:
    rows = []
    for method, scores in (("prompt", treatment_scores), ("head", baseline_scores)):
        for size, score in zip((10, 50, 100), scores):
            for seed, jitter in (("a", 0.0), ("b", -0.01)):
                rows.append({"task": task, "method": method, "train_size": size, "seed": seed, "score": score + jitter})
    return pd.DataFrame(rows)


def test_curves_without_overlap_give_a_bound_not_a_number():
    from promptworth.analysis.advantage import advantage_table
    from promptworth.analysis.tables import advantage_frame, advantage_markdown

    above = advantage_table(_two_methods([0.8, 0.85, 0.9], [0.5, 0.55, 0.6]), "prompt", "head")[0]
    assert above.bound_kind == "more_than" and above.share_bound == 1.0  # every resample too
    assert math.isnan(above.advantage) and "do not overlap" in above.reason
    assert above.bound == 100 - 10  # head at 100 points is still below prompt at 10
    below = advantage_table(_two_methods([0.5, 0.55, 0.6], [0.8, 0.85, 0.9], task="U"), "prompt", "head")[0]
    assert below.bound == -(100 - 10) and below.bound_kind == "less_than"
    overlapping = advantage_table(_two_methods([0.6, 0.7, 0.8], [0.5, 0.65, 0.75]), "prompt", "head")[0]
    assert not math.isnan(overlapping.advantage) and math.isnan(overlapping.bound)
    table = advantage_markdown(advantage_frame([above, below]))
    assert "> 90" in table and "< -90" in table


SCORE = "CLF roberta seed 1 - test-acc-all-p"


@pytest.mark.parametrize(
    "row, column, cell, message",
    [
        # a score that would be a silent number
        (1, SCORE, "high", rf"line 3, column '{SCORE}': 'high' is not a number"),
        (1, SCORE, "inf", rf"line 3, column '{SCORE}': inf is not a finite number"),
        (1, SCORE, "-Infinity", rf"line 3, column '{SCORE}': -inf is not a finite number"),
        # a training size that is not a count of points
        (2, "training_points", "", "line 4, column 'training_points': the cell is missing"),
        (2, "training_points", "ten", "line 4, column 'training_points': 'ten' is not a number"),
        (2, "training_points", "inf", "line 4, column 'training_points': inf is not a finite number"),
        (2, "training_points", "12.5", "line 4, column 'training_points': 12.5 is not a number of points"),
        (2, "training_points", "-4", "line 4, column 'training_points': -4 is not a number of points"),
    ],
)
def test_import_lescao_refuses_bad_cells(tmp_path: Path, row: int, column: str, cell: str, message: str) -> None:
    path = wandb_csv(tmp_path / "cb.csv", ["CLF roberta"])
    frame = pd.read_csv(path, dtype=str)
    frame.loc[row, column] = cell
    frame.to_csv(path, index=False)
    with pytest.raises(PromptworthError, match=rf"cb\.csv: {message}"):
        import_lescao(path)


def test_tidy_tables_refuse_infinite_numbers_and_missing_sizes() -> None:
    frame = shifted(10)
    with pytest.raises(PromptworthError, match="1 row\\(s\\) with an infinite score"):
        advantage_table(frame.assign(score=[np.inf] + list(frame.score[1:])), "prompt", "head")
    with pytest.raises(PromptworthError, match="1 row\\(s\\) without a train_size"):
        advantage_table(frame.assign(train_size=[np.nan] + list(frame.train_size[1:])), "prompt", "head")


@pytest.mark.parametrize("size, shown", [(-5, "-5"), (1.5, "1.5")])
def test_training_sizes_must_count_examples(size, shown) -> None:
    frame = shifted(10)
    with pytest.raises(PromptworthError, match=rf"train_size {shown} is not a number of training examples"):
        advantage_table(frame.assign(train_size=[size] + list(frame.train_size[1:])), "prompt", "head")
