"""The third edition's rows in the analysis (docs/analysis.md, "Which runs a comparison reads" and
the tables after it): SetFit on a backbone of its own beside the study's first model, in-context
learning's untrained point, a second train seed, the protocol table and the score against training
FLOPs. On real records: the second edition's SmolLM2 runs on SST-2, copied and edited into the
third edition's rows (each test row's prediction kept, as the third edition's records do)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from promptworth.analysis.advantage import Comparison
from promptworth.analysis.flops_cost import cost_figure, cost_texts
from promptworth.analysis.joins import comparison_runs, join_backbones
from promptworth.analysis.paired import paired_frame
from promptworth.analysis.plots import method_styles, task_panels
from promptworth.analysis.protocol import protocol_frames, protocol_markdown
from promptworth.analysis.results import collect, read_records
from promptworth.analysis.table_format import parse_markdown
from promptworth.analysis.tables import table_texts
from promptworth.backbones.registry import MINILM
from promptworth.cli import main
from promptworth.errors import PromptworthError

REPO = Path(__file__).resolve().parents[1]
V2 = REPO / "reports" / "v2" / "runs" / "smollm2-135m-instruct" / "SST-2"
SMOL = "smollm2-135m-instruct"
ROWS = hashlib.sha256(b"SST-2's 872 test rows").hexdigest()
SIZES = (10, 32, 100, 320, 1000)
# how many more test rows each row of the third edition gets right than the v2 record it is made from
SETFIT_GAIN, ZEROSHOT_GAIN, ICL_GAIN, SECOND_SEED = 40, 25, 10, {"prompt": 9, "head": -13}


def real(method: str, size: int, data_seed: int) -> dict[str, Any]:
    return json.loads((V2 / method / f"{size}-{data_seed}-1.json").read_text(encoding="utf-8"))


def edited(record: dict[str, Any], gain: int = 0, shift: int = 0, **changes: Any) -> dict[str, Any]:
    """A copy of ``record`` as the third edition writes it, ``gain`` more test rows right (which
    rows: from ``shift`` on), with each row's prediction kept; no budgets, no selection to cite."""
    out = {**copy.deepcopy(record), "budgets": None, "lr_selection": None, **changes}
    rows = out["test_size"]
    right = round(record["score"] * rows) + gain
    gold = "".join("01"[i % 2] for i in range(rows))
    predicted = "".join(g if (i - shift) % rows < right else "10"[int(g)] for i, g in enumerate(gold))
    out["test"] = {**out["test"], "acc": right / rows}
    out["score"] = right / rows
    out["predictions"] = {"rows": rows, "rows_sha256": ROWS, "encoding": "base36", "predicted": predicted, "gold": gold}
    return out


def third_edition() -> list[dict[str, Any]]:
    """SST-2 on SmolLM2, data seeds 1 and 2: prompt (0 to 1000) and head (10 to 1000) on train seeds 1
    and 2; SetFit on all-MiniLM-L6-v2; zeroshot-calibrated at 0; icl-calibrated at 10 and 32."""
    runs = []
    for seed in (1, 2):
        for method, sizes in (("prompt", (0, *SIZES)), ("head", SIZES)):
            for size in sizes:
                base = real(method, size, seed)
                runs.append(edited(base))
                runs.append(edited(base, SECOND_SEED[method], shift=7, train_seed=2))
        for size in SIZES:  # SetFit's settings have no patience: it selects nothing on dev, and ends at its cap
            head = real("head", size, seed)
            runs.append(edited(head, SETFIT_GAIN, shift=100, method="setfit", model=MINILM,
                               model_sha256=hashlib.sha256(MINILM.encode()).hexdigest(), stopped="cap",
                               method_parts={"objective": "setfit", "tuning": "contrastive", "options": {}, "extras": []},
                               hyperparameters={k: v for k, v in head["hyperparameters"].items() if k != "patience"}))
        runs.append(edited(real("prompt", 0, seed), ZEROSHOT_GAIN, method="zeroshot-calibrated"))
        for size in (10, 32):
            untrained = real("prompt", 0, seed)
            runs.append(edited(untrained, ICL_GAIN * size // 10, method="icl-calibrated", train_size=size,
                               method_parts={"objective": "prompt", "tuning": "none", "options": {},
                                             "extras": ["context", "calibrate"]}))
    return runs


def write_runs(folder: Path, runs: list[dict[str, Any]]) -> Path:
    for run in runs:
        path = folder / run["model"] / run["task"] / run["method"] / f"{run['train_size']}-{run['data_seed']}-{run['train_seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run), encoding="utf-8")
    return folder


@pytest.fixture
def study(tmp_path, monkeypatch) -> Path:
    """The edited records under ``runs/`` of a study folder (the working folder: records name their
    split folders and selections relative to it)."""
    monkeypatch.chdir(tmp_path)
    return write_runs(tmp_path / "runs", third_edition())


def score_of(runs: list[dict[str, Any]], method: str, size: int, data_seed: int, train_seed: int = 1) -> float:
    (found,) = [r["score"] for r in runs if (r["method"], r["train_size"], r["data_seed"], r["train_seed"])
                == (method, size, data_seed, train_seed)]
    return found


COMPARISONS = [Comparison("prompt", "head"), Comparison("setfit", "head"), Comparison("prompt", "setfit"),
               Comparison("icl-calibrated", "head"), Comparison("prompt", "icl-calibrated")]


def test_setfit_is_compared_beside_the_first_models_runs_and_its_rows_name_both_models(study):
    runs = third_edition()
    texts = table_texts(collect([study]), COMPARISONS, in_place_of=SMOL)
    gaps = pd.read_csv(io.StringIO(texts["gaps.csv"]))
    setfit = gaps[(gaps["treatment"] == "setfit") & (gaps["baseline"] == "head")]
    assert setfit["model"].unique().tolist() == [f"{MINILM} vs {SMOL}"] and setfit["train_size"].tolist() == list(SIZES)
    for row in setfit.itertuples():  # paired on the data seed, the head's train seed 1
        expected = np.mean([score_of(runs, "setfit", row.train_size, d) - score_of(runs, "head", row.train_size, d)
                            for d in (1, 2)])
        assert row.gap == pytest.approx(expected) and row.n_seeds == 2
    advantage = pd.read_csv(io.StringIO(texts["advantage.csv"]), keep_default_na=False)
    assert set(advantage["model"]) == {SMOL, f"{MINILM} vs {SMOL}", f"{SMOL} vs {MINILM}"}
    _, rows = parse_markdown(texts["advantage.md"])
    assert ["setfit vs head", f"{MINILM} vs {SMOL}"] == rows[1][:2] and ["prompt vs setfit", f"{SMOL} vs {MINILM}"] == rows[2][:2]
    assert f"setfit ran on {MINILM}, a backbone of its own" in texts["advantage.md"]
    # the methods and score tables keep each method on the model it ran on
    assert set(pd.read_csv(io.StringIO(texts["lmbff.csv"])).query("method == 'setfit'")["model"]) == {MINILM}


def test_a_method_on_its_own_backbone_needs_the_model_it_stands_in_for_when_several_ran():
    frame = pd.DataFrame({"model": [MINILM, SMOL, "gemma3-270m"], "task": "SST-2", "method": ["setfit", "head", "head"],
                          "objective": ["setfit", "head", "head"], "train_size": 10, "seed": "1-1", "score": 0.5})
    with pytest.raises(PromptworthError, match="runs of several models .* with --in-place-of"):
        join_backbones(frame)
    assert join_backbones(frame, "gemma3-270m")[0]["model"].tolist() == ["gemma3-270m", SMOL, "gemma3-270m"]
    with pytest.raises(PromptworthError, match="--in-place-of 'roberta-large': the results hold no runs of that model"):
        join_backbones(frame, "roberta-large")
    alone = frame.iloc[:2]
    assert join_backbones(alone)[0]["model"].tolist() == [SMOL, SMOL]  # one other model: that one


def test_in_context_learning_starts_at_the_calibrated_zero_shot_point(study):
    runs = third_edition()
    table = collect([study])
    texts = table_texts(table, COMPARISONS, in_place_of=SMOL)
    advantage = pd.read_csv(io.StringIO(texts["advantage.csv"]), keep_default_na=False).set_index(
        ["treatment", "baseline"])
    assert advantage.loc[("icl-calibrated", "head"), "ladder"] == "0, 10, 32"
    assert advantage.loc[("prompt", "icl-calibrated"), "ladder"] == "0, 10, 32"
    assert "prompt 100, 320, 1000" in advantage.loc[("prompt", "icl-calibrated"), "dropped"]
    assert "icl-calibrated's size-0 point is zeroshot-calibrated's runs at size 0" in texts["advantage.md"]
    sensitivity = pd.read_csv(io.StringIO(texts["sensitivity.csv"]), keep_default_na=False)
    assert "no size 0" in set(sensitivity.query("treatment == 'icl-calibrated'")["variant"])
    (panel,) = task_panels(comparison_runs(table, SMOL).frame, "prompt", "head")
    icl = panel.runs[(panel.runs["method"] == "icl-calibrated") & (panel.runs["train_size"] == 0)]
    assert sorted(icl["score"]) == sorted(score_of(runs, "zeroshot-calibrated", 0, d) for d in (1, 2))
    # the score tables show what each method ran: no size 0 for in-context learning
    lmbff = pd.read_csv(io.StringIO(texts["lmbff.csv"]))
    assert sorted(lmbff.query("method == 'icl-calibrated'")["train_size"]) == [10, 32]


def test_the_headline_reads_train_seed_1_and_train_seeds_md_sets_the_seeds_apart(study):
    runs = third_edition()
    texts = table_texts(collect([study]), COMPARISONS[:1], in_place_of=SMOL)
    gaps = pd.read_csv(io.StringIO(texts["gaps.csv"]))
    for row in gaps.itertuples():
        expected = np.mean([score_of(runs, "prompt", row.train_size, d) - score_of(runs, "head", row.train_size, d)
                            for d in (1, 2)])
        assert row.gap == pytest.approx(expected) and row.n_seeds == 2
    assert set(pd.read_csv(io.StringIO(texts["lmbff.csv"]))["n_runs"]) == {2}
    for name in ("advantage.md", "gaps.md", "lmbff.md", "methods.md"):
        assert "The table reads train seed 1 of each data seed" in texts[name], name
    seeds = pd.read_csv(io.StringIO(texts["train_seeds.csv"]))
    assert set(seeds["method"]) == {"prompt", "head"}  # the methods that ran two
    row = seeds[(seeds["method"] == "head") & (seeds["train_size"] == 100)].iloc[0]
    firsts = [score_of(runs, "head", 100, d) for d in (1, 2)]
    differences = [abs(score_of(runs, "head", 100, d, 2) - score_of(runs, "head", 100, d)) for d in (1, 2)]
    assert row.sd_data_seeds == pytest.approx(np.std(firsts, ddof=1)) and row.n_data_seeds == 2 and row.n_paired == 2
    assert row.mean_abs_difference == pytest.approx(np.mean(differences)) == pytest.approx(13 / 872)
    assert row.train_share == pytest.approx(row.sd_train_seeds**2 / row.sd_data_seeds**2)
    assert "the train seed's variance is a median" in texts["train_seeds.md"]
    # with one train seed, as every published edition: no train_seeds table, and the notes say nothing
    single = write_runs(study.parent / "single", [r for r in third_edition() if r["train_seed"] == 1])
    plain = table_texts(collect([single]), COMPARISONS[:1], in_place_of=SMOL)
    assert "train_seeds.md" not in plain and "Train seeds:" not in plain["advantage.md"]


def test_paired_pairs_setfit_with_the_heads_runs_on_the_same_test_rows(study):
    records = read_records([study])
    frame, left = paired_frame(records, [Comparison("setfit", "head")], in_place_of=SMOL)
    assert frame["model"].unique().tolist() == [f"{MINILM} vs {SMOL}"] and frame["train_size"].tolist() == list(SIZES)
    assert set(frame["n_pairs"]) == {2}  # one per data seed: the head's train seed 1
    assert frame["gap"].tolist() == pytest.approx([SETFIT_GAIN / 872] * len(SIZES))
    assert any("train seed 1" in note for note in left.notes)
    moved = study / MINILM / "SST-2" / "setfit" / "10-1-1.json"
    record = json.loads(moved.read_text())
    record["predictions"]["rows_sha256"] = hashlib.sha256(b"other rows").hexdigest()
    moved.write_text(json.dumps(record))
    with pytest.raises(PromptworthError, match="scored different test rows"):
        paired_frame(read_records([study]), [Comparison("setfit", "head")], in_place_of=SMOL)


def _protocol_runs() -> list[dict[str, Any]]:
    """Every trained run stopped by patience after its first epoch and its best checkpoint after it,
    but one at the cap, one stopped before its first epoch, and one whose best came before it."""
    runs = third_edition()
    for run in runs:
        if run["stopped"] is not None and run["method"] != "setfit":
            epoch = math.ceil(run["train_size"] / 8)
            run.update(stopped="patience", best_examples_read=run["train_size"])
            run["timing"]["steps"] = max(run["timing"]["steps"], epoch)
            run["hyperparameters"].update(min_epochs_before_patience=1, min_steps_before_patience=100)
    first = {(r["method"], r["train_size"], r["data_seed"], r["train_seed"]): r for r in runs}
    first["head", 1000, 1, 1]["stopped"] = "cap"
    first["prompt", 1000, 2, 1]["timing"]["steps"] = 100  # 125 steps an epoch
    first["head", 320, 1, 2]["best_examples_read"] = 160
    return runs


def test_the_protocol_table_counts_how_runs_ended_per_model_task_and_method(study):
    records = read_records([write_runs(study.parent / "protocol", _protocol_runs())])
    frame, facts = protocol_frames(records)
    rows = frame.set_index("method")
    assert rows.loc["head", ["runs", "trained", "patience", "cap", "patience_before_epoch", "best_read_less"]].tolist() == [
        20, 20, 19, 1, 0, 1]
    assert rows.loc["head", "cap_share"] == pytest.approx(0.05)
    assert rows.loc["prompt", "patience_before_epoch"] == 1 and rows.loc["prompt", "trained"] == 20
    assert rows.loc["setfit", ["trained", "cap", "can_stop"]].tolist() == [10, 10, 0]
    assert rows.loc["icl-calibrated", "trained"] == 0 and rows.loc["head", "devices"] == "cpu (AMD EPYC, 1 threads) (20)"
    assert rows.loc["head", "min_epochs_before_patience"] == "1 (20)" and rows.loc["head", "precisions"] == "bf16 (20)"
    text = protocol_markdown(frame, facts)
    # SetFit's runs end at their cap by design: the share at the cap is of the runs patience could stop
    assert "patience could stop 40 of them (not setfit's, which select nothing on dev and end at their cap)" in text
    assert "39 stopped by patience, 1 at the cap (2.5 %, within the third edition's limit of 5 %)" in text
    assert "Stopped by patience before they had read their training set once: 1" in text


def test_cost_gives_each_methods_training_flops_and_the_pilots_beside_them(study):
    runs = third_edition()
    head = edited(real("head", 10, 1))
    write_runs(study.parent / "lr-grid", [{**head, "timing": {**head["timing"], "flops": {"train": 3e12, "eval": 1e12}}}])
    selection = study.parent / "lr" / "head.json"
    selection.parent.mkdir()
    selection.write_text(json.dumps({"runs": [{"file": f"lr-grid/{SMOL}/SST-2/head/10-1-1.json"}]}))
    cited = study / SMOL / "SST-2" / "head" / "100-1-1.json"
    sha = hashlib.sha256(selection.read_bytes()).hexdigest()
    cited.write_text(json.dumps({**json.loads(cited.read_text()), "lr_selection": {"file": "lr/head.json", "sha256": sha}}))
    texts, _ = cost_texts(read_records([study]))
    cost = pd.read_csv(io.StringIO(texts["cost.csv"])).set_index(["method", "train_size"])
    heads = [r["timing"]["flops"]["train"] for r in runs if (r["method"], r["train_size"], r["train_seed"]) == ("head", 10, 1)]
    assert cost.loc[("head", 10), "train_tflops"] == pytest.approx(np.mean(heads) / 1e12)
    assert cost.loc[("icl-calibrated", 10), "train_tflops"] == 0 and cost.loc[("setfit", 10), "model"] == MINILM
    assert cost.loc[("head", 10), "n_runs"] == 2  # train seed 1 of each data seed
    own = sum(r["timing"]["flops"]["train"] for r in runs if r["method"] == "head")
    assert f"head 3 TFLOP ({100 * 3e12 / own:.0f} % of its runs' own)" in texts["cost.md"]


def test_the_cost_figure_draws_a_row_per_model_and_task_and_the_verbs_write_the_new_tables(study, tmp_path):
    texts, runs = cost_texts(read_records([study]))
    figure = cost_figure(runs, method_styles(list(dict.fromkeys(runs["method"]))), SMOL)
    assert len(figure.axes) == 2  # SST-2 on SmolLM2, SetFit beside it: by examples, by FLOPs
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert f"setfit ({MINILM})" in labels and "icl-calibrated" in labels
    assert main(["flops", str(study), "--tables-dir", str(tmp_path / "tables"), "--figures-dir",
                 str(tmp_path / "figures"), "--in-place-of", SMOL]) == 0
    assert main(["protocol", str(study), "--out-dir", str(tmp_path / "tables")]) == 0
    assert {p.name for p in (tmp_path / "tables").iterdir()} == {"cost.md", "cost.csv", "protocol.md", "protocol.csv"}
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"cost.png", "cost.pdf"}
    runs_csv = tmp_path / "runs.csv"
    assert main(["aggregate", str(study), "--out", str(runs_csv)]) == 0
    assert main(["tables", str(runs_csv), "--out-dir", str(tmp_path / "t"), "--comparisons", "prompt:head",
                 "setfit:head", "--in-place-of", SMOL]) == 0
    assert (tmp_path / "t" / "train_seeds.md").is_file()
    assert main(["figures", str(runs_csv), "--out-dir", str(tmp_path / "f"), "--in-place-of", SMOL]) == 0
    assert {p.name for p in (tmp_path / "f").glob("*.png")} == {"SST-2.png", "overview.png", "methods.png"}


def test_a_tiny_study_writes_its_protocol_and_cost_from_its_own_records(tiny_study):
    """For real (the shared tiny study, conftest.tiny_study: it trains, so its records keep what these
    tables read): a row per model, task and method, and the pilots of the prompt's rate as a note."""
    results = tiny_study.folder / "results"
    protocol = pd.read_csv(results / "tables" / "protocol.csv").set_index("method")
    assert protocol.loc["prompt", ["runs", "trained"]].tolist() == [2, 1] and protocol.loc["head", "runs"] == 1
    assert protocol.loc["head", "patience"] + protocol.loc["head", "cap"] == 1
    cost = pd.read_csv(results / "tables" / "cost.csv").set_index(["method", "train_size"])
    assert cost.loc[("prompt", 0), "train_tflops"] == 0 < cost.loc[("prompt", 8), "train_tflops"]
    # two pilots chose the prompt's rate; the run at the chosen one is that pilot: the other is the extra
    assert "the other pilots trained prompt" in (results / "tables" / "cost.md").read_text()
    assert (results / "figures" / "cost.png").is_file() and (results / "tables" / "paired.md").is_file()
