"""The published studies: each set of committed run records under ``reports/`` and the config that
trained it, by a short name (``make reproduce STUDY=<name>``, ``promptworth reproduce <name>``).

Paths are relative to the checkout's root, where the workflow runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from promptworth.errors import PromptworthError

# Where the published records live; a reproduction never writes inside it.
PUBLISHED_ROOT = Path("reports")


@dataclass(frozen=True)
class PublishedStudy:
    """One published set: its ``config``, the ``folder`` its records (``runs/``, ``lr-grid/``) are
    in, and whether every run of the config is there (``complete``; False: still running)."""

    name: str
    config: Path
    folder: Path
    about: str
    complete: bool = True


STUDIES: tuple[PublishedStudy, ...] = (
    PublishedStudy("default-study", Path("config/config.yaml"), PUBLISHED_ROOT / "default-study",
                   "the default study (make study): SmolLM2 on SST-2, prompt vs head; 14 runs, 4 pilots"),
    PublishedStudy("v2", Path("config/studies/study-v2.yaml"), PUBLISHED_ROOT / "v2",
                   "the second edition: 5 tasks, 2 models, 7 methods on SST-2; 172 runs, 38 pilots"),
    PublishedStudy("v1", Path("config/studies/study-v1.yaml"), PUBLISHED_ROOT / "v1",
                   "the first edition; 240 runs"),
    PublishedStudy("strategies", Path("config/studies/strategies.yaml"), PUBLISHED_ROOT / "strategies",
                   "12 training strategies on SST-2 and TREC, K = 16, 5 seeds; 120 runs"),
    PublishedStudy("lmbff", Path("config/studies/lmbff-cpu.yaml"), PUBLISHED_ROOT / "lmbff",
                   "LM-BFF's Table 3 on SmolLM2: SST-2, TREC and RTE, K = 16, 5 seeds; 105 runs"),
    PublishedStudy("method-defaults", Path("config/studies/method-defaults.yaml"), PUBLISHED_ROOT / "method-defaults",
                   "how the tunings' default learning rates were chosen on SST-2; 34 runs"),
    PublishedStudy("v3", Path("config/studies/study.yaml"), PUBLISHED_ROOT,
                   "the third edition, still running: its records are committed as they finish", complete=False),
)


def names() -> tuple[str, ...]:
    return tuple(study.name for study in STUDIES)


def published_study(name: str) -> PublishedStudy:
    """The published set called ``name``; its config and records must be here (run in the checkout)."""
    found = {study.name: study for study in STUDIES}.get(name)
    if found is None:
        raise PromptworthError(f"no published study {name!r}; choose one of {', '.join(names())}")
    for path, what in ((found.config, "its config"), (found.folder, "its records' folder")):
        if not path.exists():
            raise PromptworthError(f"published study {name}: {what} {path} is not here; run this in the root of a "
                                   "promptworth checkout")
    return found
