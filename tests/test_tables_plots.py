"""Tables (parse back), figures (written, real PNG/PDF) and the analysis verbs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from promptworth.analysis.advantage import AdvantageOptions
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.analysis.tables import (
    MISSING, Comparison, advantage_frame, advantage_latex, advantage_markdown, advantage_results, lmbff_frame,
    lmbff_markdown, methods_frame, methods_markdown, parse_markdown, table_texts,
)

SIZES = (10, 20, 40, 80, 160)


def study(tasks=("CB", "RTE"), seeds=3, methods=("prompt", "head", "null")) -> pd.DataFrame:
    """Synthetic results: head is the prompt curve 30 points to the right; null in between."""
    rng = np.random.default_rng(1)
    shift = {"prompt": 0, "null": 10, "head": 30}
    rows = []
    for task in tasks:
        for method in methods:
            for size in SIZES:
                for seed in range(seeds):
                    score = 0.4 + 0.1 * np.log2(size / 10) + rng.uniform(0, 0.02)
                    rows.append({"task": task, "method": method, "model": "tiny", "train_size": size + shift[method],
                                 "seed": f"13-{seed}", "metric": "acc", "score": min(score, 1.0)})
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
    back = pd.read_csv(tmp_path / "a.csv", keep_default_na=False, na_values={"advantage": [""], "std": [""]})
    assert back[["task", "treatment", "baseline"]].equals(frame[["task", "treatment", "baseline"]])
    assert np.allclose(back.advantage, frame.advantage) and np.allclose(back["std"], frame["std"])

    header, rows = parse_markdown(advantage_markdown(frame))
    assert header == ["comparison", "CB", "RTE"]
    assert [r[0] for r in rows] == ["prompt vs head", "null vs head", "prompt vs null"]
    for row in rows:
        treatment, baseline = row[0].split(" vs ")
        for task, cell in zip(header[1:], row[1:]):
            value, err = (float(x) for x in cell.split("±"))
            want = frame[(frame.task == task) & (frame.treatment == treatment) & (frame.baseline == baseline)].iloc[0]
            assert value == round(want.advantage) and err == round(want["std"])
    latex = advantage_latex(frame)
    assert latex.startswith(r"\begin{tabular}{lrr}") and r"\pm" in latex and latex.rstrip().endswith(r"\end{tabular}")


def test_shifted_study_gives_the_shift() -> None:
    frame = advantage_frame(advantage_results(study(), [Comparison("prompt", "head"), Comparison("null", "head")]))
    # the noise is per run, so the curves are not exact copies: a few points off at most
    assert np.allclose(frame.advantage, [30, 30, 20, 20], atol=3)


def test_undefined_cells_and_latex_escaping() -> None:
    frame = advantage_frame(advantage_results(
        pd.concat([study(tasks=("CB",)), study(tasks=("my_task",), methods=("prompt",))]), [Comparison("prompt", "head")]
    ))
    header, rows = parse_markdown(advantage_markdown(frame))
    assert header == ["comparison", "CB", "my_task"] and rows[0][2] == MISSING
    latex = advantage_latex(frame)
    assert r"my\_task" in latex and "--" in latex


def test_lmbff_table_parses_back(tmp_path: Path) -> None:
    data = study(seeds=5)
    frame = lmbff_frame(data)
    assert list(frame.columns) == ["task", "train_size", "method", "metric", "n_runs", "mean", "std"]
    one = data[(data.task == "CB") & (data.method == "prompt") & (data.train_size == 20)].score
    row = frame[(frame.task == "CB") & (frame.method == "prompt") & (frame.train_size == 20)].iloc[0]
    assert row.n_runs == 5 and row["mean"] == pytest.approx(one.mean()) and row["std"] == pytest.approx(one.std(ddof=0))
    frame.to_csv(tmp_path / "l.csv", index=False)
    back = pd.read_csv(tmp_path / "l.csv", keep_default_na=False)
    assert np.allclose(back["mean"], frame["mean"]) and back.method.tolist() == frame.method.tolist()
    header, rows = parse_markdown(lmbff_markdown(frame))
    assert header == ["task", "train_size", "head", "prompt", "null"]
    cells = {(r[0], int(r[1])): dict(zip(header[2:], r[2:])) for r in rows}
    mean, std = cells[("CB", 20)]["prompt"].rstrip(")").split(" (")
    assert float(mean) == pytest.approx(100 * one.mean(), abs=0.05) and float(std) == pytest.approx(100 * one.std(ddof=0), abs=0.05)
    assert cells[("CB", 10)]["head"] == MISSING  # head was run at 40, not 10


def test_table_texts_has_all_six() -> None:
    texts = table_texts(study(), [Comparison("prompt", "head")], AdvantageOptions(levels=50))
    assert sorted(texts) == ["advantage.csv", "advantage.md", "advantage.tex", "lmbff.csv", "lmbff.md", "lmbff.tex",
                             "methods.csv", "methods.md", "methods.tex"]


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
            for size in SIZES:
                score = 0.4 + 0.1 * np.log2(size / 10) + 0.001 * seed
                write(runs / method / f"{size}-{seed}.json",
                      record(method=method, train_size=size + shift, train_seed=seed, score=score))
    out = tmp_path / "results" / "runs.csv"
    assert cli("aggregate", runs, "--out", out) == 0
    assert len(pd.read_csv(out)) == 20
    capsys.readouterr()
    assert cli("advantage", out, "--json") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["task"] == "CB" and result["advantage"] == pytest.approx(50) and 0 < result["std"] < 5
    assert cli("advantage", out, "--x-scale", "log", "--reduction", "mean", "--levels", "10") == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:5] == ["task", "treatment", "baseline", "advantage", "std"]


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
    assert sorted(p.name for p in tables.iterdir()) == [
        "advantage.csv", "advantage.md", "advantage.tex", "lmbff.csv", "lmbff.md", "lmbff.tex",
        "methods.csv", "methods.md", "methods.tex"]
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

    from promptworth.analysis.plots import draw_panel, file_stem, palette, task_panels

    flat = pd.DataFrame([{"task": "F", "method": m, "train_size": s, "seed": "0", "score": 0.5}
                         for m in ("prompt", "head") for s in (10, 20)])
    frame = pd.concat([study(tasks=("CB",)), study(tasks=("X",), methods=("prompt",)), flat])
    panels = task_panels(frame, "prompt", "head", AdvantageOptions(levels=20))
    assert [p.task for p in panels] == ["CB", "X", "F"]
    assert panels[1].result is None and math.isnan(panels[2].result.advantage)
    colours = palette(["prompt", "head", "null"])
    for panel in panels:
        ax = Figure().add_subplot()
        draw_panel(ax, panel, colours, AdvantageOptions(levels=20))
        assert ax.get_xscale() == "log" and ax.get_title().startswith(panel.task)
    assert file_stem("overview") == "task_overview" and file_stem("a/b c") == "a_b_c"
    assert file_stem("../x") == "_x" and file_stem("..") == "task" and file_stem(".hidden") == "hidden"


def test_the_zero_shot_point_is_drawn_at_zero_on_every_prompt_curve(tmp_path: Path) -> None:
    """Size 0 (the prompt's zero-shot runs) is drawn on a symmetric-log axis, linear up to the
    smallest positive size; the advantage uses it as it is; the log x scale refuses it."""
    from promptworth.analysis.advantage import advantage_table
    from promptworth.analysis.plots import draw_panel, figures, palette, task_panels

    data = study(tasks=("CB",), methods=("prompt", "head"))
    zero = pd.DataFrame([{"task": "CB", "method": "prompt", "model": "tiny", "train_size": 0, "seed": f"13-{seed}",
                          "metric": "acc", "score": 0.3 + 0.01 * seed} for seed in range(3)])
    frame = pd.concat([data, zero])
    options = AdvantageOptions(levels=50)
    [panel] = task_panels(frame, "prompt", "head", options)
    assert panel.result == advantage_table(frame, "prompt", "head", options)[0]
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    draw_panel(ax, panel, palette(["prompt", "head"]), options)
    assert ax.get_xscale() == "symlog" and ax.xaxis.get_transform().linthresh == 10
    assert "zero-shot" in ax.get_xlabel()
    prompt_mean = next(line for line in ax.get_lines() if line.get_label().startswith("prompt (mean"))
    assert prompt_mean.get_xdata()[0] == 0 and prompt_mean.get_ydata()[0] == pytest.approx(0.31)
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
    assert header[:6] == ["method", "strategy", "trains", "share", "step s", "peak GB"]
    assert [r[0] for r in rows] == ["head", "prompt", "null", "prompt-lora"]  # the baseline first, then the registry
    by_method = {r[0]: r for r in rows}
    assert by_method["prompt-lora"][2:6] == ["10", "1%", "0.50", "2.0"]
    assert by_method["head"][header.index("CB (40)")] == f"{100 * cb10.mean():.1f} ({100 * cb10.std(ddof=0):.1f})"


def test_a_head_whose_size_differs_per_task_shows_the_span_not_a_median() -> None:
    # a new head grows with the task's labels: CB's 3 labels against BoolQ's 2 (say)
    data = _with_costs(study(methods=("head",)))
    data.loc[data["task"] == data["task"].iloc[0], "trainable_params"] = 3000
    frame = methods_frame(data)
    assert sorted(set(frame["trainable_params"])) == [1010, 3000]
    header, rows = parse_markdown(methods_markdown(frame))
    assert rows[0][2] == "1,010–3,000"  # never a count that no run had (their median)


def test_the_methods_table_of_records_without_costs_marks_them_missing() -> None:
    prompt = study(methods=("prompt",))  # no parts, parameters or step times: records from before #14
    frame = methods_frame(pd.concat([prompt, prompt.assign(method="head")], ignore_index=True))
    header, rows = parse_markdown(methods_markdown(frame))
    assert all(r[1:6] == [MISSING] * 5 for r in rows)
    assert all(MISSING not in r[6:] for r in rows)
