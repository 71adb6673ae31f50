"""The package's folders are its stages, and each stage imports only the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "promptworth"
STAGES = ["data", "training", "analysis"]  # in the order a study runs them


def promptworth_imports(source: Path) -> set[str]:
    """The promptworth modules a file imports, anywhere in it (late imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("promptworth"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("promptworth"))
    return names


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_each_stage_imports_only_the_stages_before_it():
    crossings = []
    for position, stage in enumerate(STAGES):
        later = set(STAGES[position + 1:])
        for source in sorted((PACKAGE / stage).glob("*.py")):
            for module in sorted(promptworth_imports(source)):
                if stage_of(module) in later:
                    crossings.append(f"{source.relative_to(PACKAGE)} imports {module}")
    assert crossings == []


def test_the_check_sees_a_backward_import(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from promptworth.analysis.tables import table_texts\n", encoding="utf-8")
    assert stage_of(next(iter(promptworth_imports(source)))) == "analysis"


def test_every_module_sits_in_a_stage_or_is_shared():
    shared = {"__init__.py", "__main__.py", "errors.py", "outputs.py", "records.py", "locks.py", "study.py", "expected.py",
              "fast.py", "readme.py"}
    at_top = {path.name for path in PACKAGE.glob("*.py")}
    assert at_top == shared
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file()
