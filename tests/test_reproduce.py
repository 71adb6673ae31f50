"""`promptworth reproduce` / `make reproduce` (promptworth.analysis.reproduction): a published study's
records against a reproduction of them, on the default study's published records (reports/default-study).

Each test works in a folder laid out like a checkout (config/config.yaml, reports/default-study/) with a
copy of the published records as the "reproduction", changed as the test says."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from tiny_study import REPO

from promptworth.analysis.advantage import Comparison
from promptworth.analysis.reproduction import reproduction
from promptworth.cli import main
from promptworth.study.published import STUDIES

PUBLISHED = Path("reports/default-study")
REPRODUCED = Path("results/reproduce/default-study")  # the verb's default folder for it
PROMPT_16 = "runs/smollm2-135m-instruct/SST-2/prompt/16-1-1.json"
HEAD_64 = "runs/smollm2-135m-instruct/SST-2/head/64-1-1.json"
HEAD_256 = "runs/smollm2-135m-instruct/SST-2/head/256-2-1.json"
PROMPT_VS_HEAD = [Comparison("prompt", "head")]


def copy_records(source: Path, to: Path) -> Path:
    for sub in ("runs", "lr-grid"):
        shutil.copytree(source / sub, to / sub)
    return to


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the default study's config and published records, and a copy of its records
    where `promptworth reproduce default-study` looks for the reproduction; the working folder."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    copy_records(REPO / PUBLISHED, tmp_path / PUBLISHED)
    copy_records(REPO / PUBLISHED, tmp_path / REPRODUCED)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    change(record)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def set_score(value: float):
    def change(record: dict) -> None:
        record["score"] = record["test"][record["metric"]] = value
    return change


def on_cpu(name: str):
    def change(record: dict) -> None:
        record["device"] = f"cpu ({name}, 2 threads)"
    return change


def every_record(folder: Path, change) -> None:
    for path in sorted(folder.rglob("*.json")):
        edit(path, change)


def report(folder: Path = REPRODUCED) -> dict:
    return json.loads((folder / "reproduction.json").read_text(encoding="utf-8"))


def test_identical_copies_agree_and_the_report_says_so(checkout, capsys):
    # volatile keys and the thread count may differ: the records are still identical
    edit(checkout / REPRODUCED / PROMPT_16, lambda r: r.update(git_commit="0" * 40, device="cpu (AMD EPYC, 2 threads)",
                                                                  timing={**r["timing"], "wall_s": 1.0}))
    assert main(["reproduce", "default-study"]) == 0
    assert "the reproduction agrees with the published records" in capsys.readouterr().out
    found = report()
    assert found["agrees"] and found["why_not"] == [] and found["missing"] == [] and found["unpublished"] == []
    assert len(found["pairs"]) == 18 and all(p["same_kind"] and p["identical"] for p in found["pairs"])
    assert {p["published_kind"] for p in found["pairs"]} == {"AMD EPYC, bf16"}
    [row] = found["advantages"]
    assert (row["comparison"], row["task"], row["published"]) == ("prompt vs head", "SST-2", "81 [57, 106]")
    assert row["reproduced"] == row["published"] and row["overlap"] and row["points_inside"] and row["agrees"]
    text = (checkout / REPRODUCED / "reproduction.md").read_text(encoding="utf-8")
    assert "**Verdict: the reproduction agrees with the published records.**" in text
    assert "None: every pair has the same score, dev score and best step." in text


def test_a_changed_score_and_a_changed_setting_on_the_same_cpu_do_not_agree(checkout, capsys):
    edit(checkout / REPRODUCED / PROMPT_16, set_score(0.5))
    # a setting, and one named like a machine key one level down (the record's own precision is not compared)
    edit(checkout / REPRODUCED / HEAD_64, lambda r: r["hyperparameters"].update(learning_rate=1e-4, precision="fp32"))
    assert main(["reproduce", "default-study", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed == report() and not printed["agrees"]
    assert printed["why_not"] == ["2 record(s) on the same kind of CPU are not identical"]
    differing = {p["record"]: p["differing"] for p in printed["pairs"] if not p["identical"]}
    assert differing == {PROMPT_16: ["test.acc", "score"],
                         HEAD_64: ["hyperparameters.learning_rate", "hyperparameters.precision"]}
    changed = next(p for p in printed["pairs"] if p["record"] == PROMPT_16)
    assert changed["published"]["score"] == 0.6675 and changed["reproduced"]["score"] == 0.5
    text = (checkout / REPRODUCED / "reproduction.md").read_text(encoding="utf-8")
    assert f"| `{PROMPT_16}` | same | 0.6675 → 0.5000 (-0.1675) |" in text
    assert f"| `{HEAD_64}` | same | 0.5850 | 0.7031 | 30 | hyperparameters.learning_rate, hyperparameters.precision |" in text


def test_on_another_cpu_the_advantages_decide(checkout):
    """Scores that moved a little on another CPU: the records differ, the advantages agree; the
    head much worse: its advantage no longer overlaps the published interval."""
    folder = checkout / REPRODUCED
    every_record(folder, on_cpu("Intel Xeon"))
    edit(folder / PROMPT_16, set_score(0.66))
    assert main(["reproduce", "default-study"]) == 0
    found = report()
    assert {(p["published_kind"], p["reproduced_kind"]) for p in found["pairs"]} == {("AMD EPYC, bf16", "Intel Xeon, bf16")}
    assert [p["record"] for p in found["pairs"] if not p["identical"]] == [PROMPT_16]
    [row] = found["advantages"]
    assert row["agrees"] and row["reproduced"] != row["published"]
    assert "| `" + PROMPT_16 + "` | AMD EPYC, bf16 → Intel Xeon, bf16 | 0.6675 → 0.6600 (-0.0075) |" in \
        (folder / "reproduction.md").read_text(encoding="utf-8")

    for name in ("64-1-1", "64-2-1", "256-1-1", "256-2-1"):
        edit(folder / f"runs/smollm2-135m-instruct/SST-2/head/{name}.json", set_score(0.5))
    assert main(["reproduce", "default-study"]) == 1
    [row] = report()["advantages"]
    assert not row["overlap"] and not row["agrees"] and row["why"] == "the ranges do not overlap"
    assert row["published_range"] == [pytest.approx(56.92, abs=0.01), pytest.approx(106.03, abs=0.01)]
    assert row["reproduced_range"][1] == "inf" and row["reproduced"].startswith(">")  # the prompt beats every head


def test_two_bounds_agree_and_a_bound_against_an_estimate_is_read_as_its_range(tmp_path, monkeypatch):
    """A head that never reaches the prompt's scores in both sets, on two CPUs: `> N` against `> N`
    agree (both reach to infinity); against the published estimate they do not."""
    monkeypatch.chdir(tmp_path)  # no file the records cite is here
    published, reproduced = copy_records(REPO / PUBLISHED, tmp_path / "a"), copy_records(REPO / PUBLISHED, tmp_path / "b")
    every_record(reproduced, on_cpu("Intel Xeon"))
    for folder, score in ((published, 0.5), (reproduced, 0.51)):
        for path in (folder / "runs/smollm2-135m-instruct/SST-2/head").glob("*.json"):
            edit(path, set_score(score))
    rep = reproduction("default-study", published, reproduced, PROMPT_VS_HEAD)
    [row] = rep.advantages
    assert row.published.startswith("> ") and row.reproduced.startswith("> ")
    assert row.published_range[1] == row.reproduced_range[1] == float("inf") and row.agrees and rep.agrees
    against_estimate = reproduction("default-study", REPO / PUBLISHED, reproduced, PROMPT_VS_HEAD)
    assert not against_estimate.advantages[0].agrees and not against_estimate.agrees


def test_a_missing_record_does_not_agree_and_an_unpublished_one_is_listed(checkout):
    (checkout / REPRODUCED / HEAD_256).unlink()
    extra = checkout / REPRODUCED / "runs/smollm2-135m-instruct/SST-2/head/512-1-1.json"
    shutil.copy(checkout / PUBLISHED / HEAD_64, extra)
    edit(extra, lambda r: r.update(train_size=512))
    assert main(["reproduce", "default-study"]) == 1
    found = report()
    assert found["missing"] == [HEAD_256] and found["unpublished"] == [extra.relative_to(checkout / REPRODUCED).as_posix()]
    assert found["why_not"][0] == "1 published record(s) have no reproduction"


def test_bad_folders_are_one_error_and_write_nothing(checkout, capsys):
    assert main(["reproduce", "default-study", "--out-dir", "reports/again"]) == 2
    assert "is inside reports/, where the published records are" in capsys.readouterr().err
    assert not (checkout / "reports" / "again").exists()
    assert main(["reproduce", "default-study", "--out-dir", "results/empty"]) == 2
    assert "results/empty: no run records to compare" in capsys.readouterr().err
    assert not (checkout / "results" / "empty").exists()
    with pytest.raises(SystemExit) as exited:  # argparse: not a published study's name
        main(["reproduce", "nonesuch"])
    assert exited.value.code == 2 and "invalid choice: 'nonesuch'" in capsys.readouterr().err


def test_every_published_study_is_in_the_table_and_its_docs():
    """promptworth.study.published names every committed set of records (tests/test_reuse.py checks
    each is what its config asks for), and docs/reproducing.md lists each with its config."""
    committed = {path.parent.parent for path in (REPO / "reports").glob("*/runs/*/") if path.is_dir()}
    committed -= {REPO / "reports" / "lescao2021"}  # the authors' exports, not our runs
    assert committed <= {REPO / study.folder for study in STUDIES}
    doc = (REPO / "docs" / "reproducing.md").read_text(encoding="utf-8")
    for study in STUDIES:
        assert f"| `{study.name}` | `{study.config}` | `{study.folder}/` |" in doc, study.name


@pytest.mark.slow
def test_the_tiny_variant_trains_and_compares(tmp_path, monkeypatch, data_dir):
    """`PROMPTWORTH_FAST=1 make reproduce`, as the verb runs it: the study's tiny variant trains into the
    fresh folder, the report says that its records cannot match, and the exit status is 0."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    copy_records(REPO / PUBLISHED, tmp_path / PUBLISHED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMPTWORTH_FAST", "1")
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2"]
    assert main(["reproduce", "default-study", "--run", shlex.join(snakemake)]) == 0
    found = report()
    assert found["note"].startswith("Tiny variant (PROMPTWORTH_FAST=1)") and not found["agrees"]
    assert len(found["missing"]) == 18 and found["pairs"] == []
    assert REPRODUCED.as_posix() + "/runs/tiny-llama/SST-2/prompt/16-1-1.json" in \
        [f"{REPRODUCED.as_posix()}/{name}" for name in found["unpublished"]]
    assert not (tmp_path / "reports" / "default-study" / "runs" / "tiny-llama").exists()


def test_the_published_records_are_compared_whatever_splits_sit_now_where_they_name_theirs(checkout, capsys):
    # the published records name their splits by relative path (results/splits/...), where a study of
    # this checkout (the default `make study`, or its tiny variant) writes splits of its own
    record = json.loads((checkout / PUBLISHED / PROMPT_16).read_text(encoding="utf-8"))
    split = Path(record["split_dir"])
    assert not split.is_absolute() and record["split_manifest_sha256"]
    split.mkdir(parents=True)
    (split / "manifest.json").write_text('{"another": "split"}\n', encoding="utf-8")
    # the reproduction's records name its own splits (where a split was is not compared: still identical)
    moved = lambda r: r.update(split_dir=r["split_dir"].replace("results/", f"{REPRODUCED}/")) if "split_dir" in r else None
    every_record(checkout / REPRODUCED, moved)
    assert main(["reproduce", "default-study"]) == 0
    assert report()["agrees"]
    # the reproduction's own records are checked against their splits, as ever
    edit(checkout / REPRODUCED / PROMPT_16, lambda r: r.update(split_dir=str(split)))
    assert main(["reproduce", "default-study"]) == 2
    assert "trained on a split that has changed since" in capsys.readouterr().err
