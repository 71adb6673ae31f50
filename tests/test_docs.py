"""The documentation: its figures agree with their sources, the paths it names exist, its commands
are found (tools/doccheck); and the tiny variant every command runs in (promptworth.study.tiny_variant)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptworth.study import tiny_variant as fast
from tools.doccheck import checker as readme
from promptworth.errors import PromptworthError
from promptworth.study.load import load_study
from promptworth.study.planning import plan
from promptworth.training.settings import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_the_documentation_agrees_with_its_sources():
    """Every quoted figure matches its committed source, every generated table is fresh, every
    committed path the documents name exists, and no result-like number lacks a source."""
    assert readme.check(REPO) == []


def _docs(tmp_path: Path, readme_text: str, quotes: list[dict] | None = None, files: dict[str, str] | None = None) -> Path:
    (tmp_path / "README.md").write_text(readme_text, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    if quotes is not None:
        (tmp_path / readme.QUOTES).write_text(yaml.safe_dump(quotes, allow_unicode=True), encoding="utf-8")
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


STEP = {"ours": {"step_s": 1.6569}, "speedup": 2.4399}
QUOTE = {"doc": "README.md", "text": "a step took {step} s ({x}× faster)", "source": "bench/step.json",
         "values": {"step": "ours.step_s | .2f", "x": "speedup | .2f"}}


def test_a_quote_that_no_longer_matches_its_source_fails(tmp_path):
    root = _docs(tmp_path, "# P\n\nHere a step\ntook 1.66 s (2.44× faster).\n", [QUOTE],
                 {"bench/step.json": json.dumps(STEP)})
    assert readme.check(root) == []  # the quote spans a line break
    (root / "bench/step.json").write_text(json.dumps({**STEP, "speedup": 2.5}), encoding="utf-8")
    problems = readme.check(root)
    assert "README.md: does not say 'a step took 1.66 s (2.50× faster)' (from bench/step.json)" in problems
    # the figures the stale sentence still shows have no source any more
    assert "README.md:4: '2.44×' is quoted without a source (see docs/quotes.yaml)" in problems


def test_csv_sources_aggregate_filtered_rows(tmp_path):
    rows = "task,method,score,wall_s\nSST-2,prompt,0.595,60\nSST-2,prompt,0.795,120\nCB,head,0.392,90\n"
    quote = {"doc": "README.md", "text": "SST-2 {lo}–{hi} in {n} runs of {hours} h", "source": "runs.csv",
             "values": {"lo": "min(score) where task=SST-2, method=prompt * 100 | .1f",
                        "hi": "max(score) where task=SST-2, method=prompt * 100 | .1f",
                        "n": "count() | d", "hours": "sum(wall_s) / 3600 | .2f"}}
    root = _docs(tmp_path, "SST-2 59.5–79.5 in 3 runs of 0.07 h\n", [quote], {"runs.csv": rows})
    assert readme.check(root) == []
    bad = {**quote, "values": {**quote["values"], "n": "count(score) where nope | d"}}
    (root / readme.QUOTES).write_text(yaml.safe_dump([bad], allow_unicode=True), encoding="utf-8")
    assert any("'nope' is not COLUMN=VALUE" in p for p in readme.check(root))


def test_result_like_numbers_need_a_source_unless_marked(tmp_path):
    text = (
        "Accuracy 84.5% and 3.26× faster, 141 ± 38 points, 32 min, peak 3.4 GB.\n"
        "Python 3.11.7 and `lr 2.0e-5` and 240 runs are not results.\n"
        "```text\n1.23 in a block\n```\n"
        "<!-- quotes: unchecked (a note kept by hand) -->\nAbout 0.75 s.\n<!-- /quotes -->\n"
    )
    root = _docs(tmp_path, text, [])
    figures = [p.split(": ", 1)[1] for p in readme.check(root)]
    assert figures == [f"{f!r} is quoted without a source (see docs/quotes.yaml)"
                       for f in ("84.5%", "3.26×", "141 ±", "32 min", "3.4 GB")]


def test_a_quote_without_source_names_why(tmp_path):
    root = _docs(tmp_path, "Python ≥ 3.10 is needed.\n", [{"doc": "README.md", "text": "Python ≥ 3.10", "why": "a requirement"}])
    assert readme.check(root) == []
    (root / readme.QUOTES).write_text(yaml.safe_dump([{"doc": "README.md", "text": "Python ≥ 3.10"}]), encoding="utf-8")
    with pytest.raises(PromptworthError, match="entry 1 .*give source and values, or why"):
        readme.check(root)


def test_generated_regions_are_rewritten_from_their_source(tmp_path):
    table = "| comparison | CB |\n|---|---:|\n| prompt vs head | > 208 |\n| null vs head | – |\n"
    text = "Before.\n<!-- generated: include tables/adv.md \"prompt vs head\" -->\nold\n<!-- /generated -->\nAfter.\n"
    root = _docs(tmp_path, text, [], {"tables/adv.md": table})
    assert readme.check(root) == [
        "README.md:2: generated region 'include tables/adv.md \"prompt vs head\"' is stale: run `python -m tools.doccheck write`"]
    assert readme.write_generated(root) == [root / "README.md"]
    assert (root / "README.md").read_text(encoding="utf-8") == (
        "Before.\n<!-- generated: include tables/adv.md \"prompt vs head\" -->\n"
        "| comparison | CB |\n|---|---:|\n| prompt vs head | > 208 |\n<!-- /generated -->\nAfter.\n")
    assert readme.check(root) == []


def test_the_methods_region_lists_the_registry(tmp_path):
    from promptworth.methods.specs import BUILTINS

    lines = readme.generate(tmp_path, "methods").splitlines()
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert list(rows) == [spec.name for spec in BUILTINS]
    assert "| prompt + lora | - | fixed-prompt LM tuning | the study's | 0.002 |" in rows["prompt-lora"]
    assert "| prompt + none | calibrate | tuning-free prompting | 0 | - |" in rows["zeroshot-calibrated"]


def test_paths_the_documents_name_must_exist(tmp_path):
    text = ("See [the guide](docs/guide.md#setup), `src/mod.py`, `config/<study>.yaml`, `config/*.yaml`,\n"
            "`reports/{a,b}.csv`, `results/runs.csv` and `TevenLeScao/pet`; `../20-1/x` is no path here.\n")
    root = _docs(tmp_path, text, [], {"docs/guide.md": "# Guide\n", "config/x.yaml": "", "reports/a.csv": "",
                                      ".gitignore": "/results/\n"})
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "results").mkdir()
    # src/ does not exist: not a path of this checkout; results/runs.csv is an output git ignores
    assert readme.missing_paths(root) == ["README.md:2: reports/b.csv"]
    assert readme.missing_paths(root, outputs=True) == ["README.md:2: reports/b.csv", "README.md:2: results/runs.csv"]
    (root / "src").mkdir()
    assert "README.md:1: src/mod.py" in readme.missing_paths(root)
    # a backticked path in a nested document may be relative to its folder
    (root / "reports/runs").mkdir(parents=True)
    (root / "reports/README.md").write_text("`runs/<task>/` and `runs/missing.json`\n", encoding="utf-8")
    (root / "runs").mkdir()
    assert "reports/README.md:1: runs/missing.json" in readme.missing_paths(root)
    assert not any(p.endswith("runs/<task>/") for p in readme.missing_paths(root))


def test_commands_come_from_the_table_and_the_blocks_with_their_skips(tmp_path):
    text = (
        "| command | what it does |\n|---|---|\n| `make study` | the study |\n"
        "| `make test` | tests <!-- newcomer: skip (CI runs it) --> |\n\n"
        "<!-- newcomer: setup -->\n```bash\npromptworth tasks\n```\n\n<!-- newcomer: skip (needs a cluster) -->\n```bash\nsbatch x\n```\n"
        "```python\nprint(1)\n```\n```yaml\na: 1\n```\n```\nuntagged\n```\n"
    )
    root = _docs(tmp_path, text, [], {"docs/a.md": "```sh\necho docs\n```\n"})
    found = [(c.where, c.kind, c.text, c.skip, c.setup) for c in readme.commands(root)]
    assert found == [
        ("README.md:3", "shell", "make study", None, False),
        ("README.md:4", "shell", "make test", "CI runs it", False),
        ("README.md:7", "shell", "promptworth tasks", None, True),
        ("README.md:12", "shell", "sbatch x", "needs a cluster", False),
        ("README.md:15", "python", "print(1)", None, False),
        ("docs/a.md:1", "shell", "echo docs", None, False),
    ]
    assert any("README.md:21: a code block without a language" in p for p in readme.check(root))


def test_docs_check_cli_lists_problems_and_exits_1(tmp_path):
    root = _docs(tmp_path, "It took 3.5 s.\n", [])
    done = subprocess.run([sys.executable, "-m", "tools.doccheck", "check", "--root", str(root)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert "README.md:1: '3.5 s' is quoted without a source" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "tools.doccheck", "check", "--root", str(tmp_path / "no")],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and missing.stderr.startswith("doccheck: error: ")


# ---------------------------------------------------------------------------------------------
# The tiny variant


def test_the_switch_is_off_unless_set_to_1(monkeypatch):
    monkeypatch.delenv(fast.ENV, raising=False)
    assert not fast.enabled() and fast.study_config({"a": 1}) == {"a": 1} and fast.notice() == ""
    monkeypatch.setenv(fast.ENV, "yes")
    with pytest.raises(PromptworthError, match="PROMPTWORTH_FAST must be 1 .* or 0"):
        fast.enabled()


def test_tiny_outputs_never_leave_results():
    assert fast.redirect("results") == Path("results")
    assert fast.redirect("results/tiny") == Path("results/tiny")
    assert fast.redirect("reports") == Path("results/fast/reports")
    assert fast.redirect("reports/strategies") == Path("results/fast/reports/strategies")
    assert fast.redirect("../elsewhere") == Path("results/fast/elsewhere")
    assert fast.redirect("/scratch/me") == Path("/scratch/me")  # the user's own folder outside the checkout
    assert fast.redirect(REPO / "benchmarks/results/x.json", REPO) == REPO / "results/fast/benchmarks/results/x.json"


@pytest.mark.parametrize("name", ["config.yaml", "studies/study.yaml", "studies/study-v2.yaml", "studies/study-v1.yaml",
                                  "studies/strategies.yaml", "studies/method-defaults.yaml"])
def test_every_shipped_study_has_a_valid_tiny_variant(monkeypatch, name):
    monkeypatch.setenv(fast.ENV, "1")
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    study = load_study(fast.study_config(config), SCHEMA)
    full = load_study(config, SCHEMA)
    assert study.models == (fast.TINY_MODEL,) and study.tasks == full.tasks[: fast.TASKS]
    assert Path(study.results_dir).parts[0] == "results"
    assert len(plan(study)) <= fast.TASKS * fast.SIZES * len(full.methods)
    assert study.splits.test_limit == fast.TEST_ROWS
    # every run fits the tiny model's positions (the third edition's ICL asks for 1,536 tokens)
    assert all(study.training_for(method).get("max_length", 0) <= fast.TINY_POSITIONS for method in study.methods_run())


def test_the_tiny_variant_of_a_study_of_several_models_trains_the_tiny_one(monkeypatch):
    monkeypatch.setenv(fast.ENV, "1")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(model=["smollm2-135m-instruct", "gemma3-270m"],
                  by_model={"gemma3-270m": {"tasks": ["CB"], "resources": {"mem_mb": 8000}}})
    study = load_study(fast.study_config(config), SCHEMA)
    assert study.models == (fast.TINY_MODEL,) and study.by_model == {}
    assert {run.model for run in plan(study)} == {"tiny-llama"}


def test_the_tiny_variant_of_an_lr_grid_keeps_its_rates_on_one_pilot_split(monkeypatch):
    from promptworth.study.planning import pilots

    monkeypatch.setenv(fast.ENV, "1")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(tasks=["SST-2", "CB", "RTE"], methods_by_task={"RTE": ["prompt", "head", "null"]},
                  lr_grid={"rates": {"prompt": [1e-5, 2e-5], "null": [1e-5, 2e-5]}, "size": 10,
                           "data_seeds": [1, 2], "train_seeds": [3, 4]})
    study = load_study(fast.study_config(config), SCHEMA)
    assert study.lr_grid.rates == {"prompt": (1e-5, 2e-5)}  # null ran on RTE only, which the tiny study drops
    assert study.pilot_seeds() == ((1,), (3,))
    assert len(pilots(study)) == fast.TASKS * 2


def test_a_study_of_existing_records_only_moves_its_outputs(monkeypatch):
    monkeypatch.setenv(fast.ENV, "1")
    config = {**yaml.safe_load((REPO / "config" / "studies" / "study-v1.yaml").read_text(encoding="utf-8")),
              "runs_dir": "reports/v1/runs", "results_dir": "reports/v1"}
    tiny = fast.study_config(config)
    assert tiny == {**config, "results_dir": "results/fast/reports/v1"}


def test_a_run_trains_a_few_steps(monkeypatch):
    config = TrainConfig(protocol="epochs", max_steps=300, min_steps=20, eval_every=50)
    monkeypatch.setenv(fast.ENV, "0")
    assert fast.train_settings(config, None) == (config, None)
    monkeypatch.setenv(fast.ENV, "1")
    short, test_limit = fast.train_settings(config, 300)
    assert (short.max_steps, short.min_steps, short.eval_every, test_limit) == (fast.STEPS, fast.STEPS, 50, fast.TEST_ROWS)
    assert short.total_steps(1000) == fast.STEPS


def test_the_workflow_runs_the_tiny_variant_of_the_published_study(tmp_path):
    """Through the Snakefile: the tiny model is built, nothing is written into reports/."""
    env = {**os.environ, fast.ENV: "1"}
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile"),
                           "--configfile", str(REPO / "config" / "studies" / "study.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PROMPTWORTH_FAST=1: the tiny variant" in done.stderr
    assert "resources/models/tiny-llama" in done.stdout
    outputs = [line.split()[-1] for line in done.stdout.splitlines() if line.strip().startswith("output:")]
    assert outputs and all(o.startswith(("results/fast/reports/", "resources/")) for o in outputs), outputs


# ---------------------------------------------------------------------------------------------
# The newcomer test's runner (tests/newcomer/run.py)


def _runner():
    import importlib.util

    spec = importlib.util.spec_from_file_location("newcomer_run", REPO / "tests" / "newcomer" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_command_runs_after_the_setup_blocks_in_a_newcomers_environment(tmp_path, monkeypatch):
    run = _runner()
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("", encoding="utf-8")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PROMPTWORTH_DATA", "/somewhere")
    monkeypatch.setenv("PROMPTWORTH_DATA_ORIGIN", "https://somewhere.else")
    monkeypatch.setenv("PIP_CACHE_DIR", "/pip/cache")
    env = run.newcomer_env("http://127.0.0.1:8000", tmp_path / "cache")
    assert str(venv_bin) not in env["PATH"].split(os.pathsep)  # no virtual environment of this checkout
    assert "PROMPTWORTH_DATA" not in env and env[fast.ENV] == "1"
    # the served sources, an empty cache of its own, and pip's cache where it was
    assert (env["PROMPTWORTH_DATA_ORIGIN"], env["XDG_CACHE_HOME"], env["PIP_CACHE_DIR"]) == (
        "http://127.0.0.1:8000", str(tmp_path / "cache"), "/pip/cache")
    setups = ["export GREETING=hello"]
    python = readme.Command("README.md", 1, "python", 'import os\nprint(os.environ["GREETING"], "from \\"python\\"")')
    shell = readme.Command("README.md", 2, "shell", "echo $GREETING\nfalse\necho not reached")
    out = subprocess.run(run.script(python, setups), env=env, capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, 'hello from "python"\n')
    out = subprocess.run(run.script(shell, setups), env=env, capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (1, "hello\n")  # set -e: a failing line fails the block


def test_the_newcomer_s_clone_has_no_data_mirror_beside_it(tmp_path, monkeypatch):
    run = _runner()
    shared = tmp_path / "shared"
    for folder in ("data/original", "reference"):
        (shared / folder).mkdir(parents=True)
    (shared / "design.md").write_text("notes\n", encoding="utf-8")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "README.md").write_text("# r\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "r"], check=True)
    monkeypatch.setenv("PROMPTWORTH_DATA", str(shared / "data"))
    work = tmp_path / "work"
    work.mkdir()
    clone = run.clone(repo, work)
    assert (clone / "README.md").is_file()
    assert sorted(p.name for p in (work / "shared").iterdir()) == ["design.md", "reference"]
    assert (work / "shared" / "reference").resolve() == (shared / "reference").resolve()
    # the check after the commands: they must have downloaded their data from the served sources
    cache = tmp_path / "cache"
    assert run.downloads([], cache)[1] == ["no data were downloaded (0 downloads from the served sources; 0 files in "
                                          "the clone's data cache)"]
    (cache / "original" / "SST-2").mkdir(parents=True)
    (cache / "original" / "SST-2" / "dev.tsv").write_text("x\n", encoding="utf-8")
    assert run.downloads(["/nlp.cs.princeton.edu/projects/lm-bff/datasets.tar"], cache) == (
        "1 downloads from the served sources; 1 files in the clone's data cache", [])
