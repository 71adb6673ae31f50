"""The README shows what a first `make study` of a fresh clone prints before it starts (issue 31: it
presented "estimate: none yet" as an estimate): the workflow's start-up summary (the Snakefile's
`onstart`, promptworth.study.estimate_report.study_summary) for the default study with no record."""

from __future__ import annotations

from pathlib import Path

from tiny_study import REPO

from promptworth.study.config_file import read_config_file, schema_file
from promptworth.study.estimate import estimate_here
from promptworth.study.estimate_report import study_summary
from promptworth.study.load import load_study


def test_the_readme_shows_what_a_first_make_study_prints(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh clone: no record of the study, nothing to estimate from
    study = load_study(read_config_file(REPO / "config" / "config.yaml"), schema_file())
    printed = study_summary(study, estimate_here(study, at_once=2, threads=1))
    assert "estimate: none yet" in printed
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"```text\n{printed}\n```" in readme, printed
