"""The package's folders are its stages, run in this order:

    base (promptworth/*.py) -> data -> backbones -> methods -> training -> study -> analysis -> api -> cli

A module imports only its own stage and the stages before it, and no module imports itself back
through others (no circle). Every import counts: at the top, inside a function, under
``TYPE_CHECKING``, and a module named in a string (``importlib``, a registry's
``"module:Class"``). Also: no module over 400 lines, no function over 60 lines unless the line
above its ``def`` (or its decorators) says ``# long: <reason>``, and no stage over a quarter of
the package's lines.

The ``KNOWN_*`` lists name what the re-layout (issue 29) has not removed yet; they only shrink:
a listed problem that is gone fails the test until it is taken off the list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "promptworth"
# api: the Python API (promptworth/api.py), the stages' functions for a program, as cli is for a shell
STAGES = ["base", "data", "backbones", "methods", "training", "study", "analysis", "api", "cli"]
# the top level holds the base modules only (and the API, and __main__, the command's entry point)
TOP_LEVEL = {
    "promptworth": "base", "promptworth.errors": "base", "promptworth.files": "base", "promptworth.paths": "base",
    "promptworth.api": "api", "promptworth.__main__": "cli",
}
MODULE_REF = re.compile(r"^promptworth(?:\.\w+)+(?::\w+)?$")
LONG = "# long:"
MAX_MODULE, MAX_FUNCTION, MAX_SHARE = 400, 60, 0.25

KNOWN_CIRCLES: set[frozenset[str]] = set()
KNOWN_UPWARD: set[tuple[str, str]] = set()
LONG_MODULES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()
KNOWN_TOP_LEVEL: dict[str, str] = {}
KNOWN_LARGE_STAGES: set[str] = set()


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = ["promptworth", *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def stage_of(module: str) -> str:
    """The stage of a module: a top-level one's by the table, any other's by its folder."""
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    if module in KNOWN_TOP_LEVEL:
        return KNOWN_TOP_LEVEL[module]
    folder = module.split(".")[1]
    if folder not in STAGES:
        raise KeyError(f"{module} sits in no stage: give it one (a folder of STAGES, or TOP_LEVEL)")
    return folder


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(path: Path, module: str, known: set[str]) -> dict[str, str]:
    """The promptworth modules ``path`` imports -> how (top, function-level, string)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_functions = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for inner in ast.walk(node)}
    found: dict[str, str] = {}

    def add(target: str, how: str) -> None:
        while target not in known and "." in target:  # `from pkg import name`: the module pkg
            target = target.rsplit(".", 1)[0]
        if target in known and target != module:
            found.setdefault(target, how)

    for node in ast.walk(tree):
        how = "function-level" if id(node) in in_functions else "top"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("promptworth"):
                    add(alias.name, how)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, path.name == "__init__.py")
            if base.startswith("promptworth"):
                for alias in node.names:
                    add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, how)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_REF.match(node.value):
            add(node.value.split(":")[0], "string")
    return found


def graph(package: Path = PACKAGE) -> dict[str, dict[str, str]]:
    found = modules(package)
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def circles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def upward(edges: dict[str, dict[str, str]]) -> dict[tuple[str, str], str]:
    return {(source, target): how for source, targets in edges.items() for target, how in targets.items()
            if STAGES.index(stage_of(target)) > STAGES.index(stage_of(source))}


def long_functions(path: Path, module: str) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if not lines[first - 2].strip().startswith(LONG):
                found.add(f"{module}:{node.name}")
    return found


def test_every_module_has_a_stage():
    for module in modules():
        assert stage_of(module) in STAGES
    assert not set(KNOWN_TOP_LEVEL) - set(modules()), "a top-level module that is gone is still listed"


def test_no_module_imports_a_later_stage():
    found = upward(graph())
    unknown = [f"{s} -> {t} ({how})" for (s, t), how in sorted(found.items()) if (s, t) not in KNOWN_UPWARD]
    assert unknown == []
    assert KNOWN_UPWARD <= set(found), f"no longer upward, take off KNOWN_UPWARD: {sorted(KNOWN_UPWARD - set(found))}"


def test_no_import_circle():
    found = {frozenset(c) for c in circles(graph())}
    assert sorted(map(sorted, found - KNOWN_CIRCLES)) == []
    assert KNOWN_CIRCLES <= found, f"gone, take off KNOWN_CIRCLES: {sorted(map(sorted, KNOWN_CIRCLES - found))}"


def test_the_checks_see_what_they_must(tmp_path):
    package = tmp_path / "promptworth"
    (package / "data").mkdir(parents=True)
    (package / "analysis").mkdir()
    (package / "__init__.py").write_text("")
    (package / "analysis" / "__init__.py").write_text("")
    (package / "analysis" / "tables.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "tasks.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .splits import X\n"
        "def f():\n    from promptworth.analysis.tables import table_texts\n")
    (package / "data" / "splits.py").write_text(
        "import importlib\nPATH = 'promptworth.data.tasks:Thing'\n")
    (package / "data" / "rows.py").write_text("def g():\n    importlib.import_module('promptworth.analysis')\n")
    edges = graph(package)
    assert edges["promptworth.data.tasks"] == {"promptworth.data.splits": "top",
                                               "promptworth.analysis.tables": "function-level"}
    assert edges["promptworth.data.splits"] == {"promptworth.data.tasks": "string"}
    assert edges["promptworth.data.rows"] == {"promptworth.analysis": "string"}
    assert circles(edges) == [["promptworth.data.splits", "promptworth.data.tasks"]]
    assert ("promptworth.data.tasks", "promptworth.analysis.tables") in upward(edges)


def test_no_module_over_400_lines():
    found = {name for name, path in modules().items()
             if len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE}
    assert sorted(found - LONG_MODULES) == []
    assert LONG_MODULES <= found, f"short now, take off LONG_MODULES: {sorted(LONG_MODULES - found)}"


def test_no_function_over_60_lines_without_a_reason():
    found = set().union(*(long_functions(path, name) for name, path in modules().items()))
    assert sorted(found - LONG_FUNCTIONS) == []
    assert LONG_FUNCTIONS <= found, f"short now, take off LONG_FUNCTIONS: {sorted(LONG_FUNCTIONS - found)}"


def test_no_stage_over_a_quarter_of_the_lines():
    lines: dict[str, int] = {}
    for name, path in modules().items():
        stage = stage_of(name)
        lines[stage] = lines.get(stage, 0) + len(path.read_text(encoding="utf-8").splitlines())
    total = sum(lines.values())
    large = {stage for stage, n in lines.items() if n > MAX_SHARE * total}
    assert sorted(large - KNOWN_LARGE_STAGES) == [], {s: f"{n / total:.0%}" for s, n in lines.items()}
    assert KNOWN_LARGE_STAGES <= large


def test_only_the_cli_options_module_adds_arguments():
    """Each option set is defined once (promptworth.cli.options); verbs name the sets they take."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("add_argument", "add_parser") \
                    and name != "promptworth.cli.options" and not (node.attr == "add_parser" and name == "promptworth.cli.verbs"):
                found.append(f"{name}:{node.lineno}")
    assert found == []
