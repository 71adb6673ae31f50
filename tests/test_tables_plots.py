"""Tables (parse back), figures (written, real PNG/PDF) and the analysis verbs end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.analysis.table_format import MISSING, NOT_RUN, parse_markdown
from promptworth.analysis.tables import (
    Comparison,
    advantage_frame,
    advantage_latex,
    advantage_markdown,
    advantage_results,
    lmbff_frame,
    lmbff_markdown,
    methods_frame,
    methods_markdown,
    table_texts,
)

SIZES = (10, 20, 40, 80, 160)


def study(tasks=("CB", "RTE"), seeds=3, methods=("prompt", "head", "null")) -> pd.DataFrame:
    """Synthetic results on one ladder: every method's score rises linearly with the size, the
    head's curve is the prompt's 30 points to the right, null's 10 (plus a little noise per run)."""
    rng = np.random.default_rng(1)
    shift = {"prompt": 0, "null": 10, "head": 30}
    rows = []
    for task in tasks:
        for method in methods:
            for size in SIZES:
                for seed in range(seeds):
                    score = 0.3 + 0.0025 * (size - shift[method]) + rng.uniform(0, 0.01)
                    rows.append({"task": task, "method": method, "model": "tiny", "train_size": size,
                                 "data_seed": str(seed), "seed": f"{seed}-1", "metric": "acc", "score": score})
    return pd.DataFrame(rows)


@pytest.fixture()
def results_csv(tmp_path: Path) -> Path:
    path = tmp_path / "runs.csv"
    study().to_csv(path, index=False)
    return path


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


# ---------------------------------------------------------------------------------------------
# Tables


def test_advantage_tables_parse_back(tmp_path: Path) -> None:
    comparisons = [Comparison.parse(c) for c in ("prompt:head", "null:head", "prompt:null")]
    frame = advantage_frame(advantage_results(study(), comparisons))
    frame.to_csv(tmp_path / "a.csv", index=False)
    back = pd.read_csv(tmp_path / "a.csv", keep_default_na=False,
                       na_values={key: [""] for key in ("advantage", "std", "lower", "upper")})
    assert back[["task", "treatment", "baseline"]].equals(frame[["task", "treatment", "baseline"]])
    assert np.allclose(back.advantage, frame.advantage) and back["std"].isna().all() and frame["std"].isna().all()

    assert np.allclose(back.lower, frame.lower) and np.allclose(back.upper, frame.upper)

    text = advantage_markdown(frame)
    header, rows = parse_markdown(text)
    assert header == ["comparison", "model", "CB", "RTE"]
    assert [r[:2] for r in rows] == [["prompt vs head", "tiny"], ["null vs head", "tiny"], ["prompt vs null", "tiny"]]
    for row in rows:
        treatment, baseline = row[0].split(" vs ")
        for task, cell in zip(header[2:], row[2:]):
            value, interval = cell.split(" [")
            lower, upper = (float(x) for x in interval.rstrip("]").split(", "))
            want = frame[(frame.task == task) & (frame.treatment == treatment) & (frame.baseline == baseline)].iloc[0]
            assert (float(value), lower, upper) == (round(want.advantage), round(want.lower), round(want.upper))
            assert lower <= float(value) <= upper
    # the estimator and the seeds are named under the table; 3 seeds are too few for an interval
    assert "Estimator: mean over seeds per size, running maximum; 95% bootstrap interval over data seeds, 3 seeds" in text
    assert "With 3 data seeds (10 distinct resamples) a bootstrap interval shows the seeds' spread" in text
    latex = advantage_latex(frame)
    assert latex.startswith(r"\begin{tabular}{llrr}") and " [" in latex and latex.rstrip().endswith(r"\end{tabular}")
    lescao = advantage_frame(advantage_results(study(), comparisons, AdvantageOptions.lescao()))
    assert r"\pm" in advantage_latex(lescao) and "± leave-one-run-out std" in advantage_markdown(lescao)


def test_shifted_study_gives_the_shift() -> None:
    frame = advantage_frame(advantage_results(study(), [Comparison("prompt", "head"), Comparison("null", "head")]))
    # the noise is per run, so the curves are not exact copies: a few points off at most
    assert np.allclose(frame.advantage, [30, 30, 20, 20], atol=3)


def test_undefined_and_not_run_cells_and_latex_escaping() -> None:
    # my_task: the head far above the prompt, so the window prompt vs head sets for prompt vs null is
    # empty (undefined, no bound); other_task: no null runs (not run)
    my_task = study(tasks=("my_task",))
    my_task.loc[my_task["method"] == "head", "score"] += 0.6
    data = pd.concat([study(tasks=("CB",)), my_task, study(tasks=("other_task",), methods=("prompt", "head"))])
    options = AdvantageOptions(window_from=("prompt", "head"))
    frame = advantage_frame(advantage_results(data, [Comparison("prompt", "null")], options))
    assert math.isnan(frame.set_index("task").bound["my_task"]) and len(frame) == 3
    header, rows = parse_markdown(advantage_markdown(frame))
    assert header == ["comparison", "model", "CB", "my_task"] and rows[0][3] == MISSING
    latex = advantage_latex(frame)
    assert r"my\_task" in latex and "--" in latex and "other" not in latex


def test_lmbff_table_parses_back(tmp_path: Path) -> None:
    data = study(seeds=5)
    data = data[~((data.method == "head") & (data.train_size == 10))]  # a size the head did not run
    frame = lmbff_frame(data)
    assert list(frame.columns) == ["task", "train_size", "model", "method", "metric", "n_runs", "mean", "std"]
    one = data[(data.task == "CB") & (data.method == "prompt") & (data.train_size == 20)].score
    row = frame[(frame.task == "CB") & (frame.method == "prompt") & (frame.train_size == 20)].iloc[0]
    assert row.n_runs == 5 and row["mean"] == pytest.approx(one.mean()) and row["std"] == pytest.approx(one.std(ddof=0))
    frame.to_csv(tmp_path / "l.csv", index=False)
    back = pd.read_csv(tmp_path / "l.csv", keep_default_na=False)
    assert np.allclose(back["mean"], frame["mean"]) and back.method.tolist() == frame.method.tolist()
    header, rows = parse_markdown(lmbff_markdown(frame))
    assert header == ["task", "train_size", "model", "head", "prompt", "null"]
    cells = {(r[0], int(r[1])): dict(zip(header[3:], r[3:])) for r in rows}
    mean, std = cells[("CB", 20)]["prompt"].rstrip(")").split(" (")
    assert float(mean) == pytest.approx(100 * one.mean(), abs=0.05) and float(std) == pytest.approx(100 * one.std(ddof=0), abs=0.05)
    assert cells[("CB", 10)]["head"] == MISSING


TABLES = ["advantage.csv", "advantage.md", "advantage.tex", "gaps.csv", "gaps.md", "lmbff.csv", "lmbff.md", "lmbff.tex",
          "methods.csv", "methods.md", "methods.tex", "sensitivity.csv", "sensitivity.md"]


def test_table_texts_has_every_table() -> None:
    texts = table_texts(study(), [Comparison("prompt", "head")], AdvantageOptions(levels=50))
    assert sorted(texts) == TABLES
    header, rows = parse_markdown(texts["gaps.md"])
    assert header[:4] == ["comparison", "model", "task", "train_size"] and len(rows) == 2 * len(SIZES)
    header, rows = parse_markdown(texts["sensitivity.md"])
    assert header[3:] == ["headline", "max over seeds", "without 20", "without 40", "without 80"]


@pytest.mark.parametrize("text", ["prompt", "prompt:", "a:b:c", "head:head"])
def test_bad_comparison(text: str) -> None:
    with pytest.raises(PromptworthError, match="TREATMENT:BASELINE"):
        Comparison.parse(text)


# ---------------------------------------------------------------------------------------------
# The verbs end to end


def test_aggregate_then_advantage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_results import record, write

    runs = tmp_path / "runs"
    for method, shift in (("prompt", 0), ("head", 50)):
        for seed in (1, 2):
            for size in SIZES:  # the head's line is the prompt's 50 points to the right
                score = 0.3 + 0.0025 * (size - shift) + 0.001 * seed
                write(runs / method / f"{size}-{seed}.json",
                      record(method=method, train_size=size, data_seed=seed, score=score))
    out = tmp_path / "results" / "runs.csv"
    assert cli("aggregate", runs, "--out", out) == 0
    assert len(pd.read_csv(out)) == 20
    capsys.readouterr()
    assert cli("advantage", out, "--json") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["task"] == "CB" and result["advantage"] == pytest.approx(50)
    # each data seed lifts both methods alike: every bootstrap resample finds 50
    assert (result["lower"], result["upper"], result["n_seeds"], result["interval"]) == (
        pytest.approx(50), pytest.approx(50), 2, "bootstrap")
    assert cli("advantage", out, "--reduction", "max", "--interval", "loo", "--json") == 0
    (lescao,) = json.loads(capsys.readouterr().out)
    assert 0 < lescao["std"] < 1 and lescao["lower"] is None and lescao["reduction"] == "max"
    assert cli("advantage", out, "--x-scale", "log", "--levels", "10") == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:6] == ["model", "task", "treatment", "baseline", "advantage", "seeds"]


def test_import_lescao_verb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_advantage import wandb_csv

    models = ["CLF roberta", "PVP 0 roberta", "PVP 0 roberta neutral verbalizer"]
    a, b = wandb_csv(tmp_path / "boolq.csv", models), wandb_csv(tmp_path / "wic.csv", models)
    out = tmp_path / "tidy.csv"
    assert cli("import-lescao", a, b, "--out", out) == 0
    tidy = pd.read_csv(out, keep_default_na=False)
    assert set(tidy.task) == {"BoolQ", "WiC"} and set(tidy.method) == {"head", "prompt", "null"}
    assert cli("import-lescao", a, b, "--task", "X", "--out", tmp_path / "same.csv") == 2
    assert "twice" in capsys.readouterr().err and not (tmp_path / "same.csv").exists()


def test_tables_and_figures_verbs(results_csv: Path, tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    assert cli("tables", results_csv, "--out-dir", tables, "--levels", "100") == 0
    assert sorted(p.name for p in tables.iterdir()) == TABLES
    header, rows = parse_markdown((tables / "advantage.md").read_text())
    assert [r[0] for r in rows] == ["prompt vs head", "null vs head", "prompt vs null"]
    assert len(pd.read_csv(tables / "advantage.csv")) == 6

    figures = tmp_path / "figures"
    assert cli("figures", results_csv, "--out-dir", figures, "--levels", "100") == 0
    names = sorted(p.name for p in figures.iterdir())
    assert names == ["CB.pdf", "CB.png", "RTE.pdf", "RTE.png", "methods.pdf", "methods.png", "overview.pdf", "overview.png"]
    for path in figures.iterdir():
        head = path.read_bytes()[:8]
        assert path.stat().st_size > 5000
        assert head == b"\x89PNG\r\n\x1a\n" if path.suffix == ".png" else head.startswith(b"%PDF")
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_tables_default_comparisons_skip_absent_methods(tmp_path: Path) -> None:
    path = tmp_path / "ph.csv"
    study(tasks=("CB",), methods=("prompt", "head")).to_csv(path, index=False)
    assert cli("tables", path, "--out-dir", tmp_path / "t", "--levels", "10") == 0
    header, rows = parse_markdown((tmp_path / "t" / "advantage.md").read_text())
    assert [r[0] for r in rows] == ["prompt vs head"]


@pytest.mark.parametrize("verb", ["advantage", "tables", "figures"])
def test_bad_inputs_exit_2_without_output(verb: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "good.csv"
    study(tasks=("CB",)).to_csv(good, index=False)
    bad_cols = tmp_path / "cols.csv"
    study(tasks=("CB",)).drop(columns=["score"]).to_csv(bad_cols, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("task,method,train_size,seed,score\n")
    out = tmp_path / "out"
    cases = [
        ([tmp_path / "missing.csv"], "no such file"),
        ([bad_cols], "missing column(s) score"),
        ([empty], "no rows"),
        ([good, "--treatment" if verb != "tables" else "--comparisons", "magic" if verb != "tables" else "magic:head"],
         "'magic' not in the results"),
        ([good, "--levels", "0"], "levels"),
        ([good, "--model", "huge"], "no runs of model 'huge'"),
    ]
    for args, message in cases:
        extra = [] if verb == "advantage" else ["--out-dir", out]
        assert cli(verb, *args, *extra) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("promptworth: error:") and message in err and err.count("\n") == 1, err
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_aggregate_bad_input_leaves_no_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_results import record, write

    write(tmp_path / "runs" / "ok.json", record())
    write(tmp_path / "runs" / "bad.json", {k: v for k, v in record().items() if k != "score"})
    out = tmp_path / "runs.csv"
    assert cli("aggregate", tmp_path / "runs", "--out", out) == 2
    assert "bad.json: missing key 'score'" in capsys.readouterr().err and not out.exists()


def test_panels_draw_with_a_missing_method_or_undefined_advantage() -> None:
    from matplotlib.figure import Figure

    from promptworth.analysis.plots import draw_panel, file_stem, method_styles, task_panels

    flat = pd.DataFrame([{"task": "F", "method": m, "model": "tiny", "train_size": s, "seed": "0", "score": 0.5}
                         for m in ("prompt", "head") for s in (10, 20)])
    frame = pd.concat([study(tasks=("CB",)), study(tasks=("X",), methods=("prompt",)), flat])
    panels = task_panels(frame, "prompt", "head", AdvantageOptions(levels=20))
    assert [p.task for p in panels] == ["CB", "X", "F"]
    assert panels[1].result is None and math.isnan(panels[2].result.advantage)
    styles = method_styles(["prompt", "head", "null"])
    for panel in panels:
        figure = Figure()
        axes = (figure.add_subplot(2, 1, 1), figure.add_subplot(2, 1, 2))
        draw_panel(axes, panel, styles, "prompt", "head")
        assert axes[0].get_xscale() == "log" and axes[0].get_title().startswith(panel.task)
    assert "undefined" in axes[0].get_title()  # the flat task
    assert file_stem("overview") == "task_overview" and file_stem("a/b c") == "a_b_c"
    assert file_stem("../x") == "_x" and file_stem("..") == "task" and file_stem(".hidden") == "hidden"


def test_the_zero_shot_point_is_drawn_at_zero_on_every_prompt_curve(tmp_path: Path) -> None:
    """Size 0 (the prompt's zero-shot runs) is drawn on a symmetric-log axis, linear up to the
    smallest positive size; the advantage uses it as it is; the log x scale refuses it."""
    from promptworth.analysis.advantage import advantage_table
    from promptworth.analysis.figures import figures
    from promptworth.analysis.plots import draw_panel, method_styles, task_panels

    data = study(tasks=("CB",), methods=("prompt", "head"))
    zero = pd.DataFrame([{"task": "CB", "method": "prompt", "model": "tiny", "train_size": 0, "seed": f"{seed}-1",
                          "data_seed": str(seed), "metric": "acc", "score": 0.3 + 0.01 * seed} for seed in range(3)])
    frame = pd.concat([data, zero])
    options = AdvantageOptions(levels=50)
    [panel] = task_panels(frame, "prompt", "head", options)
    assert panel.result == advantage_table(frame, "prompt", "head", options)[0]
    from matplotlib.figure import Figure

    figure = Figure()
    ax, gaps = figure.add_subplot(2, 1, 1), figure.add_subplot(2, 1, 2)
    draw_panel((ax, gaps), panel, method_styles(["prompt", "head"]), "prompt", "head")
    assert ax.get_xscale() == "symlog" and ax.xaxis.get_transform().linthresh == 10
    assert "zero-shot" in gaps.get_xlabel() and "data points" in ax.get_title()
    prompt_mean = next(line for line in ax.get_lines() if line.get_label() == "prompt")
    assert prompt_mean.get_xdata()[0] == 0 and prompt_mean.get_ydata()[0] == pytest.approx(31)  # in %
    from matplotlib.collections import PathCollection

    points = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    assert (points == 0).sum() == 3  # every zero-shot run is a point at 0
    assert ax.get_xlim()[0] < 0 < 10  # ... inside the axis
    assert sorted(p.name for p in figures(frame, tmp_path / "f", options=options))[:2] == ["CB.pdf", "CB.png"]
    with pytest.raises(PromptworthError, match="the log x scale needs positive training-set sizes"):
        task_panels(frame, "prompt", "head", AdvantageOptions(levels=50, x_scale="log"))


def test_lmbff_rejects_duplicate_runs() -> None:
    data = study(tasks=("CB",))
    with pytest.raises(PromptworthError, match="share train_size"):
        lmbff_frame(pd.concat([data, data.head(1)]))


def _with_costs(data: pd.DataFrame) -> pd.DataFrame:
    """``study()`` with what records of methods with parts add: the parts, parameters, step time, memory."""
    parts = {"prompt": ("prompt", "full", 1000), "head": ("head", "full", 1010), "null": ("null", "full", 1000),
             "prompt-lora": ("prompt", "lora", 10)}
    out = data.assign(
        objective=[parts[m][0] for m in data["method"]], tuning=[parts[m][1] for m in data["method"]],
        trainable_params=[parts[m][2] for m in data["method"]], total_params=1000,
        step_s=[0.5 if m == "prompt-lora" else 1.0 + 0.1 * i % 3 for i, m in enumerate(data["method"])],
        peak_rss_gb=2.0,
    )
    out.loc[out["method"] == "head", "total_params"] = 1010
    return out


def test_the_methods_table_names_parts_strategy_costs_and_scores() -> None:
    lora = study(methods=("prompt",)).assign(method="prompt-lora")
    data = _with_costs(pd.concat([study(), lora], ignore_index=True))
    frame = methods_frame(data)
    # one row per method, task and size; the facts of the method on each
    assert len(frame) == 4 * 2 * len(SIZES)
    lora_rows = frame[frame["method"] == "prompt-lora"]
    assert set(lora_rows["strategy"]) == {"fixed-prompt LM tuning"} and set(lora_rows["trainable_params"]) == {10}
    assert set(lora_rows["step_s"]) == {0.5}
    assert set(lora_rows["share"]) == {0.01}
    cb10 = data[(data["task"] == "CB") & (data["method"] == "head") & (data["train_size"] == 40)]["score"]
    row = frame[(frame["method"] == "head") & (frame["task"] == "CB") & (frame["train_size"] == 40)].iloc[0]
    assert row["mean"] == pytest.approx(cb10.mean()) and row["std"] == pytest.approx(cb10.std(ddof=0))
    assert row["strategy"] == "promptless fine-tuning" and row["n_runs"] == 3
    header, rows = parse_markdown(methods_markdown(frame))
    assert header[:7] == ["method", "model", "strategy", "trains", "share", "step s", "peak GB"]
    assert [r[0] for r in rows] == ["head", "prompt", "null", "prompt-lora"]  # the baseline first, then the registry
    by_method = {r[0]: r for r in rows}
    assert by_method["prompt-lora"][1:7] == ["tiny", "fixed-prompt LM tuning", "10", "1%", "0.50", "2.0"]
    assert by_method["head"][header.index("CB (40)")] == f"{100 * cb10.mean():.1f} ({100 * cb10.std(ddof=0):.1f})"


def test_the_methods_table_lists_each_tasks_sizes_from_the_smallest() -> None:
    # the head comes first and has no size 0: the prompt's zero-shot column still leads its task's sizes
    data = _with_costs(study(methods=("prompt", "head")))
    zero_shot = data[(data["method"] == "prompt") & (data["train_size"] == SIZES[0])].assign(train_size=0)
    header, _ = parse_markdown(methods_markdown(methods_frame(pd.concat([data, zero_shot], ignore_index=True))))
    columns = [(c.rsplit(" (", 1)[0], int(c.rsplit(" (", 1)[1].rstrip(")"))) for c in header[7:]]
    tasks = list(dict.fromkeys(t for t, _ in columns))
    assert tasks == ["CB", "RTE"] and columns == sorted(columns, key=lambda c: (tasks.index(c[0]), c[1]))
    assert [n for t, n in columns if t == "CB"][0] == 0 and len(columns) == len(set(columns)) > 2 * len(SIZES)


def test_a_head_whose_size_differs_per_task_shows_the_span_not_a_median() -> None:
    # a new head grows with the task's labels: CB's 3 labels against BoolQ's 2 (say)
    data = _with_costs(study(methods=("head",)))
    data.loc[data["task"] == data["task"].iloc[0], "trainable_params"] = 3000
    frame = methods_frame(data)
    assert sorted(set(frame["trainable_params"])) == [1010, 3000]
    header, rows = parse_markdown(methods_markdown(frame))
    assert rows[0][3] == "1,010–3,000"  # never a count that no run had (their median)


def test_the_methods_table_of_records_without_costs_marks_them_missing() -> None:
    prompt = study(methods=("prompt",))  # no parts, parameters or step times: records from before #14
    frame = methods_frame(pd.concat([prompt, prompt.assign(method="head")], ignore_index=True))
    header, rows = parse_markdown(methods_markdown(frame))
    assert all(r[2:7] == [MISSING] * 5 for r in rows)
    assert all(MISSING not in r[7:] for r in rows)


# ---------------------------------------------------------------------------------------------
# The advantage at each step budget (promptworth budgets)

# how many more examples the head needs than the prompt for the same score, per budget ("converged":
# the run's own score); on RTE the head at 50 steps never reaches the prompt's lowest score
HEAD_FACTOR = {"CB": {"50": 4.0, "200": 2.0, "converged": 1.25}, "RTE": {"50": 20.0, "200": 2.0, "converged": 1.25}}


def budget_study() -> pd.DataFrame:
    """runs.csv of a study with budgets 50 and 200: scores linear in size (0.3 + 0.004 x size /
    factor), the prompt's factor 1 at every budget, the head's from HEAD_FACTOR."""
    rows = []
    for task, factors in HEAD_FACTOR.items():
        for method in ("prompt", "head"):
            for size in SIZES:
                for seed in range(3):
                    at = {b: 0.3 + 0.004 * size / (f if method == "head" else 1.0) for b, f in factors.items()}
                    rows.append({"task": task, "method": method, "model": "tiny", "train_size": size, "seed": f"13-{seed}",
                                 "metric": "acc", "score": at["converged"], "score_at_50": at["50"],
                                 "score_at_200": at["200"]})
    return pd.DataFrame(rows)


def test_scores_by_budget_is_one_row_per_run_and_budget() -> None:
    from promptworth.analysis.budgets import scores_by_budget

    runs = budget_study()
    runs.loc[0, "score_at_200"] = math.nan  # a run that did not record that budget has no row there
    long = scores_by_budget(runs)
    assert list(long.columns) == ["task", "method", "model", "train_size", "seed", "metric", "budget", "score"]
    assert list(dict.fromkeys(long.budget)) == ["50", "200", "converged"]
    assert long.budget.value_counts().to_dict() == {"50": len(runs), "200": len(runs) - 1, "converged": len(runs)}
    converged = long[long.budget == "converged"].reset_index(drop=True)
    assert converged.score.tolist() == runs.score.tolist()


def test_the_advantage_at_each_budget_is_the_advantage_of_that_budget_s_scores() -> None:
    from promptworth.analysis.budgets import ADVANTAGE_BY_BUDGET_COLUMNS, advantage_by_budget

    frame = advantage_by_budget(budget_study(), [Comparison("prompt", "head")])
    assert tuple(frame.columns) == ADVANTAGE_BY_BUDGET_COLUMNS
    cb = frame[frame.task == "CB"].set_index("budget")
    # linear curves: the mean gap over the window is (factor - 1) x the window's middle size
    assert cb.advantage.to_dict() == pytest.approx({"50": 75.0, "200": 45.0, "converged": 17.25})
    # three identical runs: a zero-width interval
    assert (cb.lower == cb.advantage).all() and (cb.upper == cb.advantage).all() and (cb.n_runs_baseline == 3).all()
    rte = frame[frame.task == "RTE"].set_index("budget")
    assert math.isnan(rte.advantage["50"]) and rte.bound["50"] == 150  # the head at 160 is below the prompt at 10
    assert "do not overlap" in rte.reason["50"] and rte.advantage["200"] == pytest.approx(45.0)
    # the same as the advantage of a table whose scores are that budget's
    at_200 = budget_study().assign(score=lambda t: t.score_at_200)
    plain = advantage_frame(advantage_results(at_200, [Comparison("prompt", "head")]))
    assert frame[frame.budget == "200"].advantage.tolist() == plain.advantage.tolist()


def test_each_model_has_its_own_advantage_at_each_budget(tmp_path: Path) -> None:
    from promptworth.analysis.budgets import advantage_by_budget, advantage_by_budget_markdown

    # a second model whose head needs twice the examples at every budget
    large = budget_study().assign(model="large")
    head = large["method"] == "head"
    for column in ("score", "score_at_50", "score_at_200"):
        large.loc[head, column] = 0.3 + (large.loc[head, column] - 0.3) / 2
    frame = advantage_by_budget(pd.concat([budget_study(), large], ignore_index=True), [Comparison("prompt", "head")])
    cb = frame[(frame.task == "CB") & (frame.budget == "converged")].set_index("model")
    assert cb.advantage["large"] > cb.advantage["tiny"] == pytest.approx(17.25)
    header, rows = parse_markdown(advantage_by_budget_markdown(frame))
    assert [row[1:3] for row in rows] == [[m, b] for m in ("tiny", "large") for b in ("50 steps", "200 steps", "converged")]
    # a model that ran the comparison on one task only: a blank cell on the others; one that ran no
    # head at all: no rows
    one_task = large[large["task"] == "CB"]
    no_head = budget_study().assign(model="prompt only").query("method == 'prompt'")
    frame = advantage_by_budget(pd.concat([budget_study(), one_task, no_head], ignore_index=True), [Comparison("prompt", "head")])
    header, rows = parse_markdown(advantage_by_budget_markdown(frame))
    assert {row[1] for row in rows} == {"tiny", "large"}
    assert all(row[header.index("RTE")] == "" for row in rows if row[1] == "large")


def test_budgets_verb_writes_the_table_and_the_figure(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    budget_study().to_csv(path, index=False)
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    assert cli("budgets", path, "--tables-dir", tables, "--figures-dir", figures, "--levels", "100") == 0
    assert sorted(p.name for p in tables.iterdir()) == ["advantage_by_budget.csv", "advantage_by_budget.md",
                                                        "scores_by_budget.csv"]
    header, rows = parse_markdown((tables / "advantage_by_budget.md").read_text())
    assert header == ["comparison", "model", "budget", "CB", "RTE"]
    assert [row[:3] for row in rows] == [["prompt vs head", "tiny", "50 steps"], ["prompt vs head", "tiny", "200 steps"],
                                         ["prompt vs head", "tiny", "converged"]]
    assert rows[0][3:] == ["75 [75, 75]", "> 150"]
    back = pd.read_csv(tables / "advantage_by_budget.csv", keep_default_na=False)
    assert back.budget.tolist() == ["50", "50", "200", "200", "converged", "converged"]
    assert sorted(p.name for p in figures.iterdir()) == ["budgets.pdf", "budgets.png"]
    assert (figures / "budgets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (figures / "budgets.pdf").read_bytes().startswith(b"%PDF") and (figures / "budgets.png").stat().st_size > 5000
    assert not list(tmp_path.glob(".*"))


def test_budgets_of_runs_without_them_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plain, partial = tmp_path / "plain.csv", tmp_path / "partial.csv"
    study(tasks=("CB",)).to_csv(plain, index=False)
    runs = budget_study()
    runs.loc[runs.method == "head", "score_at_200"] = math.nan
    runs.to_csv(partial, index=False)
    for path, message in ((plain, "the results hold no scores at step budgets"),
                          (partial, "no run of 'head' records a score at 200 steps")):
        assert cli("budgets", path, "--tables-dir", tmp_path / "t", "--figures-dir", tmp_path / "f") == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "t").exists() and not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------------
# Several models: each table and figure per model


def two_models() -> pd.DataFrame:
    """``study()`` on a second model too, ``large``, on CB only, whose head needs 60 more points
    than its prompt (the first model's: 30)."""
    large = study(tasks=("CB",)).assign(model="large")
    large.loc[large["method"] == "head", "score"] -= 0.0025 * 30  # its line 30 more points to the right
    return pd.concat([study(), large], ignore_index=True)


def test_each_model_has_its_own_advantage_and_table_rows() -> None:
    data = two_models()
    results = advantage_results(data, [Comparison("prompt", "head")], AdvantageOptions(levels=200))
    assert [(r.model, r.task) for r in results] == [("tiny", "CB"), ("tiny", "RTE"), ("large", "CB")]
    assert np.allclose([r.advantage for r in results], [30, 30, 60], atol=3)
    frame = advantage_frame(results)
    assert list(frame.columns[:3]) == ["model", "task", "treatment"]
    header, rows = parse_markdown(advantage_markdown(frame))
    assert header == ["comparison", "model", "CB", "RTE"]
    assert [r[:2] for r in rows] == [["prompt vs head", "tiny"], ["prompt vs head", "large"]]
    assert rows[1][3] == NOT_RUN  # the large model ran no RTE: a blank cell, not "undefined"
    header, rows = parse_markdown(lmbff_markdown(lmbff_frame(data)))
    assert [r[:3] for r in rows[:3]] == [["CB", "10", "tiny"], ["CB", "10", "large"], ["CB", "20", "tiny"]]
    header, rows = parse_markdown(methods_markdown(methods_frame(data)))
    assert [r[:2] for r in rows] == [[m, model] for m in ("head", "prompt", "null") for model in ("tiny", "large")]
    large_head = rows[1]
    assert large_head[header.index("RTE (40)")] == MISSING and large_head[header.index("CB (40)")] != MISSING


def test_a_comparison_a_model_never_ran_has_no_row() -> None:
    # the large model ran the prompt and the head, not the null verbalizer (a strategy run on one model)
    data = two_models()
    data = data[(data["model"] == "tiny") | (data["method"] != "null")]
    frame = advantage_frame(advantage_results(data, [Comparison("prompt", "head"), Comparison("null", "head")]))
    assert len(frame) == 6 and "no runs of null" in frame.set_index(["model", "treatment"]).reason["large", "null"]
    header, rows = parse_markdown(advantage_markdown(frame))
    assert [r[:2] for r in rows] == [["prompt vs head", "tiny"], ["prompt vs head", "large"], ["null vs head", "tiny"]]
    assert "null vs head" in advantage_latex(frame) and advantage_latex(frame).count("large") == 1


def test_the_verbs_on_two_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from promptworth.analysis.plots import task_panels

    path = tmp_path / "runs.csv"
    two_models().to_csv(path, index=False)
    assert cli("advantage", path, "--json", "--levels", "100") == 0
    found = {(r["model"], r["task"]): r["advantage"] for r in json.loads(capsys.readouterr().out)}
    assert sorted(found) == [("large", "CB"), ("tiny", "CB"), ("tiny", "RTE")]
    assert found["large", "CB"] == pytest.approx(60, abs=3)
    assert cli("advantage", path, "--model", "large", "--json", "--levels", "100") == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["large"]
    panels = task_panels(two_models(), "prompt", "head", AdvantageOptions(levels=20))
    assert [p.name for p in panels] == ["CB (tiny)", "RTE (tiny)", "CB (large)"]
    assert [p.result.model for p in panels] == ["tiny", "tiny", "large"]
    figures = tmp_path / "figures"
    assert cli("figures", path, "--out-dir", figures, "--levels", "100") == 0
    assert sorted(p.name for p in figures.glob("*.png")) == ["CB.png", "RTE.png", "methods.png", "overview.png",
                                                              "scale.png"]


def test_the_scale_figure_draws_each_tasks_advantage_against_the_models_smallest_first() -> None:
    from promptworth.analysis.plots import task_panels
    from promptworth.analysis.summary_plots import scale_figure

    # the larger model's runs come first in the table; its parameter count puts it second
    data = two_models().assign(total_params=lambda t: np.where(t["model"] == "large", 270e6, 135e6))
    data = pd.concat([data[data.model == "large"], data[data.model == "tiny"]], ignore_index=True)
    fig = scale_figure(task_panels(data, "prompt", "head", AdvantageOptions(levels=200)), "prompt", "head")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tiny\n135 M parameters", "large\n270 M parameters"]
    lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}  # an errorbar's data line
    assert sorted(lines) == ["CB", "RTE"]
    assert np.allclose(lines["CB"].get_ydata(), [30, 60], atol=3)  # the large model's head needs 60 more, the tiny's 30
    assert lines["RTE"].get_ydata() == pytest.approx([30], abs=3)  # the large model ran no RTE: no point
    assert all(line.get_linewidth() == 0 for line in lines.values())  # two models are two points, no trend line
    one_size = data[data.train_size == 40]  # no curve anywhere: the figure says so instead of failing
    fig = scale_figure(task_panels(one_size, "prompt", "head", AdvantageOptions(levels=20)), "prompt", "head")
    assert "no number and no bound to draw" in fig.axes[0].texts[0].get_text()
    with pytest.raises(PromptworthError, match="no task has both prompt and head"):
        scale_figure([replace(panel, result=None) for panel in task_panels(data, "prompt", "head")], "prompt", "head")


# ---------------------------------------------------------------------------------------------
# Figures a reviewer accepts


def test_every_method_keeps_one_style_and_no_two_look_alike() -> None:
    from promptworth.analysis.plots import method_styles
    from promptworth.methods.specs import builtin_methods

    everything = method_styles([*builtin_methods(), "my-method", "other-method"])
    assert method_styles(["head"])["head"] == everything["head"]  # whatever else the figure shows
    assert method_styles(["null", "prompt"])["prompt"] == everything["prompt"]
    colours = [style.colour for name, style in everything.items() if name in builtin_methods()]
    assert len(set(colours)) == len(colours)  # a colour for every built-in method
    assert len(set(everything.values())) == len(everything)


def test_a_new_builtin_method_changes_no_other_method_style(monkeypatch) -> None:
    from promptworth.analysis import plots
    from promptworth.methods.specs import MethodSpec, builtin_methods

    defined = [f"own-method-{i}" for i in range(40)]  # a study's own methods, past the palette's 20 colours
    registry = builtin_methods()
    now = plots.method_styles([*registry, *defined])
    # a built-in added as the registry says: last, with a colour of its own appended
    grown = {**registry, "prompt-new": MethodSpec("prompt-new", "prompt")}
    monkeypatch.setattr(plots, "builtin_methods", lambda: grown)
    monkeypatch.setattr(plots, "LATER_BUILTIN_COLOURS", (*plots.LATER_BUILTIN_COLOURS, (0.5, 0.5, 0.5)))
    after = plots.method_styles([*grown, *defined])
    assert {m: after[m] for m in now} == now  # every defined and earlier built-in method keeps its style
    assert len(set(after.values())) == len(after)  # and the new one looks like none of them


def test_the_overview_shares_a_score_range_per_row_and_keeps_its_legend_inside(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from promptworth.analysis.plots import method_styles, overview_figure, task_panels

    data = study(tasks=("CB", "RTE"))
    data.loc[data.task == "RTE", "score"] += 0.2  # another score range
    panels = task_panels(data, "prompt", "head", AdvantageOptions(levels=50))
    figure = overview_figure(panels, method_styles(["prompt", "head", "null"]), "prompt", "head", 0.95)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    curves = [ax for ax in figure.axes if ax.get_title()]
    assert len(curves) == 2 and curves[0].get_ylim() == curves[1].get_ylim()
    assert curves[0].get_ylim()[1] > 100 * data.score.max()  # in %, the data inside
    assert "data points [" in curves[0].get_title()  # never read as accuracy points
    (legend,) = figure.legends
    box, page = legend.get_window_extent(canvas.get_renderer()), figure.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1 and box.y0 >= page.y0


def test_a_single_size_is_drawn_as_points_per_method_without_a_bound() -> None:
    from promptworth.analysis.plots import method_styles, task_figure, task_panels

    data = study(tasks=("CB",))
    data = data[data.train_size == 40]
    (panel,) = task_panels(data, "prompt", "head", AdvantageOptions(levels=50))
    assert panel.single_size and math.isnan(panel.result.advantage) and not panel.result.is_bound
    assert "one trained size that every method compared ran (40): no curve" in panel.result.reason
    figure = task_figure([panel], method_styles(["prompt", "head", "null"]), "prompt", "head", 0.95)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert "one size: no curve" in ax.get_title() and ">" not in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["prompt", "head", "null"]


def test_the_budgets_figure_puts_converged_where_the_runs_stopped() -> None:
    from promptworth.analysis.budgets import advantage_by_budget, budgets_figure, stop_steps

    runs = budget_study().assign(steps=[120.0, 140.0, 160.0] * (len(budget_study()) // 3))
    comparison = Comparison("prompt", "head")
    stops = stop_steps(runs, comparison)
    assert stops[("tiny", "CB")] == 140.0
    figure = budgets_figure(advantage_by_budget(runs, [comparison]), comparison, stops)
    ax = figure.axes[0]
    diamonds = [c for c in ax.collections if c.get_offsets().shape[0] == 1 and c.get_offsets()[0, 0] == 140.0]
    assert diamonds and ax.get_xscale() == "log"  # at 140 steps, not after the 200-step budget
    labels = ax.get_legend_handles_labels()[1]
    assert "CB" in labels and "RTE" in labels and len(labels) == len(set(labels))


def test_the_methods_figure_is_on_one_0_to_100_axis() -> None:
    from promptworth.analysis.plots import method_styles
    from promptworth.analysis.summary_plots import methods_figure

    figure = methods_figure(study(), method_styles(["prompt", "head", "null"]))
    assert all(ax.get_ylim() == (0.0, 100.0) for ax in figure.axes if ax.get_visible())
