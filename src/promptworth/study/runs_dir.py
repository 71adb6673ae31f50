"""A study that reads existing records (``runs_dir``) instead of training them: the files there that
are not records of its runs (the analysis leaves them out, with a warning), and a ``runs_dir`` that
holds none of them (one error, before anything runs)."""

from __future__ import annotations

from pathlib import Path

from promptworth.errors import PromptworthError
from promptworth.study.config import StudyConfig
from promptworth.study.planning import plan


def strays(study: StudyConfig) -> list[Path]:
    """The JSON files under a study's ``runs_dir`` that are not records of its runs (another
    study's runs, or stray files): the analysis leaves them out. None without a ``runs_dir``."""
    if not study.runs_dir:
        return []
    own = {Path(study.run_file(run)).resolve() for run in plan(study)}
    return [path for path in sorted(Path(study.runs_dir).rglob("*.json")) if path.resolve() not in own]


def strays_summary(study: StudyConfig, shown: int = 3) -> str:
    """The warning the workflow prints about the files of ``runs_dir`` it leaves out (empty: none)."""
    found = strays(study)
    if not found:
        return ""
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return (f"promptworth: warning: {len(found)} file(s) under runs_dir {study.runs_dir} are not records of the "
            f"study's runs and are left out: {', '.join(map(str, found[:shown]))}{more}")


def check_runs_dir(study: StudyConfig) -> None:
    """A study that reads existing records (``runs_dir``) finds at least one of its runs there;
    else one error that says where they are looked for."""
    if not study.runs_dir or any(Path(study.run_file(run)).is_file() for run in plan(study)):
        return
    others = len(strays(study))
    raise PromptworthError(
        f"config: runs_dir {study.runs_dir!r} holds no record of the study's runs (they are looked for as "
        f"<runs_dir>/<model>/<task>/<method>/<size>-<data seed>-<train seed>.json"
        + (f"; its {others} JSON file(s) are none of them)" if others else ")"))

