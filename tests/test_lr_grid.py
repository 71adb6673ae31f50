"""The learning rate chosen per method from a small grid on dev: the rule, `promptworth select-lr`
(pilot records -> a selection file) and `promptworth train --learning-rate-from` (the run trains at
the chosen rate and its record cites the file)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
from test_results import record
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.training import lr_grid


def test_the_rule_takes_the_best_mean_dev_score_and_the_smaller_rate_on_a_tie():
    assert lr_grid.choose({1e-3: 0.70, 1e-2: 0.75, 1e-1: 0.60}) == 1e-2
    assert lr_grid.choose({1e-2: 0.75, 1e-3: 0.75, 1e-1: 0.60}) == 1e-3  # a tie: the smaller rate
    # means of dev accuracies that are equal as fractions tie, though floats differ in the last bit
    assert (0.8 + 0.4) / 2 != (0.5 + 0.7) / 2 and lr_grid.choose({1e-2: (0.8 + 0.4) / 2, 1e-3: (0.5 + 0.7) / 2}) == 1e-3
    assert lr_grid.mean_score([0.8, 0.4]) == lr_grid.mean_score([0.5, 0.7]) == 0.6
    assert lr_grid.choose({1e-2: 0.6 + 1e-9, 1e-3: 0.6}) == 1e-2  # a real difference is none
    scores = [0.1, 0.7, 0.2, 0.3]  # summed exactly: the order of the runs changes nothing
    assert lr_grid.mean_score(scores) == lr_grid.mean_score(list(reversed(scores))) == 0.325
    with pytest.raises(PromptworthError, match="learning rate 0.01: its mean dev score nan is not a finite number"):
        lr_grid.choose({1e-3: 0.7, 1e-2: math.nan})
    assert lr_grid.rate_label(2e-5) == "2e-05" and float(lr_grid.rate_label(1 / 3)) == 1 / 3


def pilot(folder: Path, rate: float, dev: float | None, data_seed: int = 13, train_seed: int = 1, **changes) -> Path:
    """A pilot run's record (a complete run record of CB prompt on a split of size 32) at ``rate``."""
    content = record(
        schema_version=2, model="tiny", model_sha256="ab", method="prompt", data_seed=data_seed,
        train_seed=train_seed, dev_score=dev, split_dir=f"results/splits/CB/32-{data_seed}",
        hyperparameters={"protocol": "steps", "max_steps": 4, "learning_rate": rate},
    )
    content.update(changes)
    path = folder / f"lr-{rate!r}" / f"32-{data_seed}-{train_seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def select_argv(paths, out: Path, *extra: str) -> list[str]:
    return ["select-lr", *map(str, paths), "--task", "CB", "--method", "prompt", "--size", "32", "--out", str(out), *extra]


def test_select_lr_writes_every_rate_s_scores_the_rule_and_the_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    grid = Path("lr-grid")
    paths = [pilot(grid, 1e-3, 0.5, 13), pilot(grid, 1e-3, 0.7, 21), pilot(grid, 1e-2, 0.8, 13),
             pilot(grid, 1e-2, 0.4, 21), pilot(grid, 1e-1, 0.2, 13), pilot(grid, 1e-1, 0.3, 21)]
    out = tmp_path / "lr" / "CB" / "prompt.json"
    assert main(select_argv(reversed(paths), out, "--rates", "1e-3", "1e-2", "0.1")) == 0
    assert "CB prompt: learning rate 0.001 (mean dev 0.001: 0.6000, 0.01: 0.6000, 0.1: 0.2500" in capsys.readouterr().err
    selection = json.loads(out.read_text())
    assert selection["learning_rate"] == 1e-3  # 1e-3 and 1e-2 tie at 0.6: the smaller rate
    assert selection["rule"] == lr_grid.RULE and selection["format"] == lr_grid.FORMAT
    assert (selection["task"], selection["method"], selection["model"], selection["size"]) == ("CB", "prompt", "tiny", 32)
    assert [(r["learning_rate"], r["dev_scores"], r["mean_dev_score"]) for r in selection["rates"]] == [
        (1e-3, [0.5, 0.7], 0.6), (1e-2, [0.8, 0.4], 0.6), (1e-1, [0.2, 0.3], 0.25)]
    runs = {run["file"]: run for run in selection["runs"]}
    assert set(runs) == {str(path) for path in paths}  # relative to the study's folder, as given
    first = runs[str(paths[0])]
    assert first["sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert (first["learning_rate"], first["data_seed"], first["train_seed"], first["dev_score"]) == (1e-3, 13, 1, 0.5)


@pytest.mark.parametrize("case, message", [
    ("nan", "key 'dev_score' is not a finite number (NaN or infinite)"),
    ("no dev", "the run has no dev score (its split has no dev set)"),
    ("missing", "nowhere.json: cannot read"),
    ("task", "a run of task 'RTE', not a pilot run of 'CB'"),
    ("method", "a run of method 'head', not a pilot run of 'prompt'"),
    ("size", "its split 'results/splits/CB/64-21' is not one of size 32 (a folder named 32-21)"),
    ("settings", "pilot runs differ in more than the learning rate: hyperparameters.max_steps is 8"),
    ("model", "pilot runs differ in model_sha256: 'cd'"),
    ("rate missing", "no pilot run at learning rate 0.1 of the grid"),
    ("stray rate", "learning rate 0.5 is not one of the grid's (0.001, 0.01, 0.1)"),
    ("seeds", "the pilot runs differ between rates: learning rate 0.01 has (data seed, train seed) [(13, 1)]"),
    ("twice", "the same pilot run twice (learning rate 0.01, data seed 21, train seed 1)"),
])
def test_a_bad_or_missing_pilot_record_is_one_clear_error(tmp_path, capsys, case, message):
    grid = tmp_path / "lr-grid"
    paths = [pilot(grid, rate, 0.5, seed) for rate in (1e-3, 1e-2) for seed in (13, 21)]
    rates = ["--rates", "1e-3", "1e-2"]
    if case == "nan":
        paths[1].write_text(paths[1].read_text().replace('"dev_score": 0.5', '"dev_score": NaN'))
    elif case == "no dev":
        pilot(grid, 1e-2, None, 21)
    elif case == "missing":
        paths.append(tmp_path / "nowhere.json")
    elif case in ("task", "method"):
        pilot(grid, 1e-2, 0.5, 21, **{case: {"task": "RTE", "method": "head"}[case]})
    elif case == "size":
        pilot(grid, 1e-2, 0.5, 21, split_dir="results/splits/CB/64-21")
    elif case == "settings":
        pilot(grid, 1e-2, 0.5, 21, hyperparameters={"protocol": "steps", "max_steps": 8, "learning_rate": 1e-2})
    elif case == "model":
        pilot(grid, 1e-2, 0.5, 21, model_sha256="cd")
    elif case == "rate missing":
        rates.append("0.1")
    elif case == "stray rate":
        paths.append(pilot(grid, 0.5, 0.9, 13))
        rates.append("0.1")
    elif case == "seeds":
        paths[3].unlink()
        del paths[3]
    elif case == "twice":
        copy = tmp_path / "copy.json"
        copy.write_bytes(paths[3].read_bytes())
        paths.append(copy)
    out = tmp_path / "lr.json"
    assert main(select_argv(paths, out, *rates)) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


# ---------------------------------------------------------------------------------------------
# Size bands and a grid that extends at its edge


def test_a_run_takes_the_rate_of_the_pilot_size_nearest_its_own_on_a_log_scale():
    bands = [10, 1000]
    assert [lr_grid.nearest_band(size, bands) for size in (1, 10, 31, 32, 99, 100, 101, 320, 5000)] == [
        10, 10, 10, 10, 10, 10, 1000, 1000, 1000]  # 100 is the geometric mean of 10 and 1000: the smaller's
    assert lr_grid.nearest_band("all", bands) == 1000  # the whole pool is larger than every number
    assert lr_grid.nearest_band("all", [16, "all"]) == "all" and lr_grid.nearest_band(16, [16, "all"]) == 16
    assert lr_grid.nearest_band(5, ["all"]) == "all"
    assert [lr_grid.nearest_band(size, [100]) for size in (10, 1000, "all")] == [100, 100, 100]  # one band: as before
    with pytest.raises(PromptworthError, match="a size band is chosen for a training-set size above 0, not 0"):
        lr_grid.nearest_band(0, bands)


def test_a_choice_at_the_grid_s_edge_extends_it_by_the_grid_s_own_ratio():
    grid = [1e-5, 2e-5, 4e-5]
    assert lr_grid.extension_rate(grid, 1e-5) == 5e-6 and lr_grid.extension_rate(grid, 4e-5) == 8e-5
    assert lr_grid.extension_rate(grid, 2e-5) is None  # inside the grid: no extension
    assert lr_grid.extension_rate([3e-5, 1e-5, 1e-4], 1e-5) == 3.33e-6  # sorted; 3 significant digits
    assert lr_grid.extension_rate([1e-3, 1e-2], 1e-2) == 0.1


def _edge_pilots(grid: Path, scores: dict[float, float]) -> list[Path]:
    return [pilot(grid, rate, score, seed) for rate, score in scores.items() for seed in (13, 21)]


def test_select_lr_extends_the_grid_once_where_its_choice_is_at_an_edge(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    grid, rates = Path("lr-grid"), ["--rates", "1e-3", "1e-2", "0.1"]
    inside = _edge_pilots(grid, {1e-3: 0.5, 1e-2: 0.7, 1e-1: 0.6})
    out = tmp_path / "inside.json"
    assert main(select_argv(inside, out, *rates, "--extend-at-edge")) == 0
    selection = json.loads(out.read_text())
    assert selection["learning_rate"] == 1e-2 and [r["learning_rate"] for r in selection["rates"]] == [1e-3, 1e-2, 0.1]
    assert selection["extension"] == {"rule": lr_grid.EDGE_RULE, "grid": [1e-3, 1e-2, 0.1], "grid_choice": 1e-2,
                                      "learning_rate": None}
    # at the top edge: the records of the rate beyond it (1.0, the grid's ratio 10) are needed ...
    top = tmp_path / "top"
    at_edge = _edge_pilots(top, {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.7})
    assert main(select_argv(at_edge, tmp_path / "no.json", *rates, "--extend-at-edge")) == 2
    assert "no pilot run at learning rate 1.0: the grid's choice 0.1 is at its edge" in capsys.readouterr().err
    # ... and the rule chooses again over the extended grid (once: 1.0 is chosen, and nothing extends further)
    beyond = _edge_pilots(top, {1.0: 0.8})
    out = tmp_path / "top.json"
    assert main(select_argv([*at_edge, *beyond], out, *rates, "--extend-at-edge", "--bands", "32", "320")) == 0
    assert "learning rate 1.0 (mean dev" in capsys.readouterr().err
    selection = json.loads(out.read_text())
    assert selection["learning_rate"] == 1.0 and len(selection["runs"]) == 8
    assert (selection["extension"]["grid_choice"], selection["extension"]["learning_rate"]) == (0.1, 1.0)
    assert selection["bands"] == {"rule": lr_grid.BAND_RULE, "sizes": [32, 320]}
    assert lr_grid.read_selection(out)["learning_rate"] == 1.0
    # a pilot beyond the edge where the choice is inside the grid is a stray
    assert main(select_argv([*inside, *_edge_pilots(grid, {1.0: 0.9})], out, *rates, "--extend-at-edge")) == 2
    assert "learning rate 1.0 is not one of the grid's (0.001, 0.01, 0.1)" in capsys.readouterr().err
    # a file whose extension does not follow from its own scores is refused where it is read
    edited = {**selection, "rates": selection["rates"][:3], "learning_rate": 0.1}
    out.write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(PromptworthError, match=r"its extension says \{'grid_choice': 0.1, 'learning_rate': 1.0\}, "
                                               r"but its pilot scores say .* over the rates 0.001, 0.01, 0.1"):
        lr_grid.read_selection(out)
    assert main(select_argv(inside, out, *rates, "--bands", "64", "320")) == 2
    assert "--size 32 is not one of --bands 64 320" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Pilot runs, the choice and a run at it, for real on a tiny model


def _train(split: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model", str(model),
            "--seed", "1", "--out", str(out), "--max-steps", "4", "--eval-every", "2", "--no-progress",
            "--precision", "fp32", *extra]


def test_a_run_trains_at_the_chosen_rate_and_its_record_cites_the_selection(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    split = sentiment_split(Path("splits") / "32-1")
    model = tiny_model("llama")
    pilots = []
    for rate in ("1e-4", "3e-2"):
        pilots.append(Path("lr-grid") / f"lr-{rate}" / "32-1-1.json")
        assert main(_train(split, pilots[-1], model, "--learning-rate", rate)) == 0
    scores = {json.loads(p.read_text())["hyperparameters"]["learning_rate"]: json.loads(p.read_text())["dev_score"]
              for p in pilots}
    selection_file = Path("lr") / "prompt.json"
    argv = ["select-lr", *map(str, pilots), "--task", "SST-2", "--method", "prompt", "--size", "32",
            "--rates", "1e-4", "3e-2", "--out", str(selection_file)]
    assert main(argv) == 0
    chosen = json.loads(selection_file.read_text())["learning_rate"]
    assert chosen == lr_grid.choose(scores)

    cited = {"file": str(selection_file), "learning_rate": chosen,
             "sha256": hashlib.sha256(selection_file.read_bytes()).hexdigest()}
    # another train seed: no pilot is this run, so it trains at the chosen rate
    out = Path("runs") / "32-1-2.json"
    seed_2 = _train(split, out, model, "--learning-rate-from", str(selection_file))
    seed_2[seed_2.index("--seed") + 1] = "2"
    assert main(seed_2) == 0
    run = json.loads(out.read_text())
    assert run["hyperparameters"]["learning_rate"] == chosen and run["train_seed"] == 2
    assert run["lr_selection"] == cited and run["timing"]["steps"] == 4

    # the pilot's split, seed and settings at the chosen rate: the pilot's record, taken over
    capsys.readouterr()
    out = Path("runs") / "32-1-1.json"
    assert main(_train(split, out, model, "--learning-rate-from", str(selection_file))) == 0
    assert "is this run (the same split, seeds, rate and settings)" in capsys.readouterr().err
    run = json.loads(out.read_text())
    pilot_file = pilots[[1e-4, 3e-2].index(chosen)]
    same = json.loads(pilot_file.read_text())
    assert run["lr_selection"] == {**cited, "pilot": {"file": str(pilot_file),
                                                      "sha256": hashlib.sha256(pilot_file.read_bytes()).hexdigest()}}
    assert {**run, "lr_selection": None} == same
    # ... which is what training it again gives (the same inputs train the same weights)
    again = Path("again.json")
    assert main(_train(split, again, model, "--learning-rate", lr_grid.rate_label(chosen))) == 0
    trained = json.loads(again.read_text())
    assert trained["dev_curve"] == same["dev_curve"] and trained["test"] == same["test"]
    assert trained["budgets"] == same["budgets"] and trained["train_loss"] == same["train_loss"]

    # other settings than the pilot's (more steps): it trains
    longer = Path("runs") / "longer.json"
    assert main(_train(split, longer, model, "--learning-rate-from", str(selection_file), "--max-steps", "6")) == 0
    run = json.loads(longer.read_text())
    assert run["lr_selection"] == cited and run["timing"]["steps"] == 6

    capsys.readouterr()
    for extra, message in (
        (("--learning-rate-from", str(selection_file), "--learning-rate", "1e-3"),
         "give --learning-rate or --learning-rate-from (the rate a selection file chose), not both"),
        (("--learning-rate-from", "nowhere.json"), "--learning-rate-from nowhere.json: cannot read it"),
        (("--learning-rate-from", str(pilots[0])), "not a learning-rate selection (promptworth-lr/1)"),
    ):
        assert main(_train(split, Path("bad.json"), model, *extra)) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not Path("bad.json").exists()
    other = _train(split, Path("bad.json"), tiny_model("gpt2"), "--learning-rate-from", str(selection_file))
    assert main(other) == 2
    assert "its model is 'llama', this run's 'gpt2'" in capsys.readouterr().err
    head = _train(split, Path("bad.json"), model, "--learning-rate-from", str(selection_file))
    head[head.index("--method") + 1] = "head"
    assert main(head) == 2
    assert "its method is 'prompt', this run's 'head'" in capsys.readouterr().err


def test_a_pilot_made_before_the_record_had_predictions_is_not_taken_over(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    split = sentiment_split(Path("splits") / "32-1")
    model = tiny_model("llama")
    pilots = [Path("lr-grid") / f"lr-{rate}" / "32-1-1.json" for rate in ("1e-4", "3e-2")]
    for rate, pilot_file in zip(("1e-4", "3e-2"), pilots):
        assert main(_train(split, pilot_file, model, "--learning-rate", rate)) == 0
        older = json.loads(pilot_file.read_text())  # as a pilot trained before issue 30 recorded it
        del older["predictions"]
        pilot_file.write_text(json.dumps(older, indent=2))
    argv = ["select-lr", *map(str, pilots), "--task", "SST-2", "--method", "prompt", "--size", "32",
            "--rates", "1e-4", "3e-2", "--out", "prompt.json"]
    assert main(argv) == 0
    capsys.readouterr()
    out = Path("runs") / "32-1-1.json"
    assert main(_train(split, out, model, "--learning-rate-from", "prompt.json")) == 0
    assert "is this run" not in capsys.readouterr().err  # it trains: the pilot lacks what a record holds now
    run = json.loads(out.read_text())
    assert run["predictions"]["rows"] == run["test_size"] and "pilot" not in run["lr_selection"]


def _edited_selection(tmp_path: Path, edit) -> Path:
    """A selection of CB prompt from synthetic pilots (0.001 wins), then ``edit(selection, pilots)``."""
    grid = Path("lr-grid")
    paths = [pilot(grid, 1e-3, 0.7, 13), pilot(grid, 1e-2, 0.5, 13)]
    out = Path("lr") / "prompt.json"
    assert main(select_argv(paths, out, "--rates", "1e-3", "1e-2")) == 0
    selection = json.loads(out.read_text())
    assert selection["learning_rate"] == 1e-3
    edit(selection, paths)
    out.write_text(json.dumps(selection), encoding="utf-8")
    return out


def _set(key, value):
    return lambda selection, paths: selection.update({key: value})


def _rate_entry(**changes):
    return lambda selection, paths: selection["rates"][1].update(changes)


def _edit_pilot(selection, paths):
    content = json.loads(paths[0].read_text())
    paths[0].write_text(json.dumps({**content, "dev_score": 0.1}), encoding="utf-8")


@pytest.mark.parametrize("edit, message", [
    (_set("learning_rate", 0.5), r"its learning_rate 0.5 does not follow from its own pilot scores: the rule chooses "
                                 r"0.001 of the grid \(0.001, 0.01\)"),
    (_set("learning_rate", 0.01), "its learning_rate 0.01 does not follow from its own pilot scores"),
    (_rate_entry(dev_scores=[0.9]), r"the mean dev score of learning rate 0.01 is 0.5, but its dev scores' mean is 0.9"),
    (_rate_entry(dev_scores=[0.9], mean_dev_score=0.9), "its learning_rate 0.001 does not follow"),
    (_rate_entry(dev_scores="0.9"), "the dev scores of learning rate 0.01 must be a list of numbers"),
    (_rate_entry(learning_rate=0.001), "a rate of its grid is 0.001, not a positive learning rate given once"),
    (_set("rates", {"0.001": 0.7}), "its rates must be a list of each rate's dev scores"),
    (_set("runs", [["lr-grid/x.json"]]), "a pilot run it cites is"),
    (_edit_pilot, r"its pilot run lr-grid/lr-0.001/32-13-1.json has changed since the selection was made"),
])
def test_a_selection_edited_after_its_pilots_is_refused_where_it_is_read(tmp_path, monkeypatch, capsys, edit, message):
    """A selection whose choice does not follow from its own pilot scores, or whose pilots changed
    since, trains nothing (before: an edited learning_rate 0.5 was applied to the next run)."""
    monkeypatch.chdir(tmp_path)
    selection = _edited_selection(tmp_path, edit)
    split = sentiment_split(Path("splits") / "32-1")
    capsys.readouterr()
    assert main(_train(split, Path("run.json"), tiny_model("llama"), "--learning-rate-from", str(selection))) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1, err
    assert not Path("run.json").exists()
