# Helpers shared by the rules: the validated config, the study plan and the file names.
import sys
from pathlib import Path

from promptworth.errors import PromptworthError
from promptworth.study import DEFAULT_MODEL, load_study, model_label, plan
from promptworth.train_config import training_args

try:
    STUDY = load_study(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except PromptworthError as exc:
    sys.exit(f"promptworth: error: {exc}")
RESULTS = STUDY.results_dir
MODEL = model_label(STUDY.model)
RUNS = plan(STUDY)


wildcard_constraints:
    size=r"\d+|all",
    data_seed=r"\d+",
    train_seed=r"\d+",
    method=r"[a-z]+",
    treatment=r"[a-z]+",
    baseline=r"[a-z]+",


def split_manifest(task, size, data_seed):
    """The manifest of one (task, size, data seed)'s split folder (the file its rule makes last)."""
    kind = "kshot" if STUDY.splits.kind == "kshot" else "splits"
    return f"{RESULTS}/{kind}/{task}/{size}-{data_seed}/manifest.json"


def run_file(task, method, size, data_seed, train_seed):
    return f"{RESULTS}/runs/{MODEL}/{task}/{method}/{size}-{data_seed}-{train_seed}.json"


def run_files():
    """The run records the analysis reads: the study's own, or those already in runs_dir."""
    if STUDY.runs_dir:
        return sorted(str(path) for path in Path(STUDY.runs_dir).rglob("*.json"))
    return [run_file(r.task, r.method, r.size, r.data_seed, r.train_seed) for r in RUNS]


def model_dir():
    """Folder of a model this workflow builds itself (the converted default, tiny test models)."""
    if STUDY.model == DEFAULT_MODEL:
        return f"resources/models/{DEFAULT_MODEL}"
    if STUDY.model.startswith("resources/models/tiny-"):
        return STUDY.model
    return None


def data_dir_args():
    """`--data-dir <folder>` when the config names a mirror (a list: each item is quoted with :q)."""
    return ["--data-dir", STUDY.data_dir] if STUDY.data_dir else []


def study_outputs():
    return [
        f"{RESULTS}/runs.csv",
        f"{RESULTS}/tables/advantage.md",
        *(f"{RESULTS}/advantage/{t}-vs-{b}.json" for t, b in STUDY.comparisons),
        f"{RESULTS}/figures/overview.png",
    ]
