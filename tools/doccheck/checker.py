"""What the README and ``docs/`` say, checked: the commands they show, the paths they name and
the figures they quote (``python -m tools.doccheck``; docs/contributing.md explains the conventions).

- **Commands**: every row of the README's command table (``| command | what it does |``) and
  every fenced ``bash`` or ``python`` block of the documentation is a command the newcomer test
  runs (``tests/newcomer/run.py``). A block or row that cannot run as written carries
  ``<!-- newcomer: skip (why) -->`` (on the line before the block, or in the row); a block after
  ``<!-- newcomer: setup -->`` is what a reader does once, before every later command.
- **Paths**: every relative path a document names in a link or in backticks must exist.
- **Figures**: a table pasted from a file sits between ``<!-- generated: SPEC -->`` and
  ``<!-- /generated -->`` and is rewritten by ``python -m tools.doccheck write``; a figure in prose is
  a quote in ``docs/quotes.yaml`` (its sentence with ``{placeholders}``, each computed from a
  committed source). A result-like number (a decimal, a percentage, a ``±``, a speed-up, a
  duration, a size) anywhere else is an error, unless it sits in a region marked
  ``<!-- quotes: unchecked (why) -->`` ... ``<!-- /quotes -->`` (measurements kept by hand).
"""

from __future__ import annotations

import ast
import csv
import json
import re
import shlex
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from promptworth.errors import PromptworthError

# The documentation: every file here is checked; the commands come from the same files.
DOCS = ("README.md", "docs/*.md", "config/README.md", "reports/README.md", "reports/*/README.md")
# the documents whose every result-like number must have a source (the reports' READMEs are
# write-ups of their records: their tables are generated, their prose is not scanned)
FIGURE_DOCS = ("README.md", "docs/*.md", "config/README.md")
QUOTES = "docs/quotes.yaml"
LANGS = {"bash": "shell", "sh": "shell", "python": "python"}
COMMAND_TABLE = ("command", "what it does")

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
SKIP = re.compile(r"<!--\s*newcomer:\s*skip\s*\((.+?)\)\s*-->")
SETUP = "<!-- newcomer: setup -->"
GENERATED = re.compile(r"<!--\s*generated:\s*([^\n]+?)\s*-->\n(.*?)<!--\s*/generated\s*-->", re.DOTALL)
UNCHECKED = re.compile(r"<!--\s*quotes:\s*unchecked\s*\((.+?)\)\s*-->(.*?)<!--\s*/quotes\s*-->", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# result-like numbers: 1.66, 84.5%, 141 ± 38, 3.26x, 32 min, 3.4 GB (not a version such as 3.11.7, nor
# a product such as 8 × 64 or 4 x layers)
NUMBER = r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w.]*\.\d)"
UNIT = r"(?:%|[x×](?![\w])|\s?±|\s?(?:ms|s|min|minutes?|h|hours?|GB|GiB|MB|GFLOP/s|TFLOP)(?![\w/]))"
FIGURE = re.compile(rf"{NUMBER}{UNIT}|(?<![\w.])\d+\.\d+(?![\w.]*\.\d)|±\s?\d")
PLACEHOLDER = re.compile(r"[<>{}*$\[\]…]|\.\.\.")


@dataclass(frozen=True)
class Command:
    """One command of the documentation: a table row or a fenced block."""

    doc: str
    line: int
    kind: str  # shell | python
    text: str
    skip: str | None = None
    setup: bool = False  # a block marked setup: what a reader does once, before every later command

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_files(root: Path) -> list[Path]:
    """The documentation files, in reading order (README first)."""
    seen: dict[Path, None] = {}
    for pattern in DOCS:
        for path in sorted(root.glob(pattern)):
            seen.setdefault(path, None)
    return list(seen)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _marker_before(lines: list[str], index: int) -> str:
    """The nearest non-blank line before ``lines[index]``, stripped."""
    return next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")


def fences(text: str) -> Iterator[tuple[int, str, str, str]]:
    """``(line, language, body, the line before it)`` of each fenced code block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        marker, lang = opening.group(1), opening.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(marker)), len(lines))
        yield i + 1, lang, "\n".join(lines[i + 1 : end]), _marker_before(lines, i)
        i = end + 1


def _cells(line: str) -> list[str]:
    inner = line.strip().strip("|").replace("\\|", "\0")
    return [cell.strip().replace("\0", "|") for cell in inner.split("|")]


def table_commands(text: str) -> Iterator[tuple[int, str, str | None]]:
    """``(line, command, skip reason)`` of each row of every command table."""
    lines = text.split("\n")
    in_table = False
    for number, line in enumerate(lines, 1):
        if not line.strip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if tuple(c.lower() for c in cells[:2]) == COMMAND_TABLE:
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            span = CODE_SPAN.search(cells[0])
            if span:
                skip = SKIP.search(line)
                yield number, span.group(2).strip(), skip.group(1) if skip else None


def commands(root: Path) -> list[Command]:
    """Every command of the documentation, in reading order: the README's command table, then
    the blocks of each file."""
    out = []
    readme = root / DOCS[0]
    for line, text, skip in table_commands(readme.read_text(encoding="utf-8")):
        out.append(Command(DOCS[0], line, "shell", text, skip))
    for path in doc_files(root):
        for line, lang, body, before in fences(path.read_text(encoding="utf-8")):
            if lang in LANGS:
                skip = SKIP.fullmatch(before)
                out.append(Command(path.relative_to(root).as_posix(), line, LANGS[lang], body.strip("\n"),
                                   skip.group(1) if skip else None, before == SETUP))
    return out


# ---------------------------------------------------------------------------------------------
# Paths


def _mask(text: str, pattern: re.Pattern) -> str:
    """``text`` with every match of ``pattern`` blanked out (same length and line numbers)."""
    return pattern.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), text)


def _without_fences(text: str) -> str:
    lines = text.split("\n")
    for line, _, body, _ in fences(text):
        for i in range(line - 1, line + body.count("\n") + 2):
            if i < len(lines):
                lines[i] = " " * len(lines[i])
    return "\n".join(lines)


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not match:
        return [path]
    return [p for part in match.group(1).split(",")
            for p in _expand_braces(path[: match.start()] + part + path[match.end() :])]


def named_paths(text: str) -> Iterator[tuple[int, str, bool]]:
    """``(line, path, is_link)`` for each relative link target and each backticked word with a
    ``/`` (a path, a folder or a glob) outside code blocks and comments."""
    prose = _mask(_without_fences(text), COMMENT)
    for match in LINK.finditer(prose):
        target = match.group(1).split("#")[0]
        if target and not re.match(r"^[a-z]+:", target):
            yield _line_of(prose, match.start()), target, True
    for match in CODE_SPAN.finditer(prose):
        word = match.group(2).strip().split("::")[0]
        if "/" in word and not re.search(r"\s|^[-/~]|^[a-z]+:", word):
            for path in _expand_braces(word):
                yield _line_of(prose, match.start()), path, False


def _resolve(root: Path, doc: Path, path: str, is_link: bool) -> list[Path]:
    """The files ``path`` may name (it names one of them), or none when it is not a path of the
    checkout. A link is relative to its document; a backticked word to the checkout or to its
    document's folder, and counts only where its first part (after any ``..``) exists. A part with a
    placeholder (``<task>``, ``{a}``, ``...``) ends it: the folder before must exist."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    kept = []
    for part in parts:
        if PLACEHOLDER.search(part) and "*" not in part:
            break
        kept.append(part)
    if not kept:
        return []
    if is_link:
        return [doc.parent.joinpath(*kept)]
    # where it counts: its first part after any `..` exists there (`../shared/...` beside the checkout)
    ups = next((i for i, part in enumerate(kept) if part != ".."), len(kept))
    return [base.joinpath(*kept) for base in dict.fromkeys((root, doc.parent))
            if ups < len(kept) and base.joinpath(*kept[: ups + 1]).exists()]


def _exists(target: Path) -> bool:
    return any(target.parent.glob(target.name)) if "*" in target.name else target.exists()


def missing_paths(root: Path, outputs: bool = False) -> list[str]:
    """``doc:line: path`` for each path the documentation names that does not exist. Without
    ``outputs``, a path git ignores (an output a command makes: results/, resources/) is not
    required; the newcomer test asks for them after running every command."""
    missing = []
    for doc in doc_files(root):
        rel = doc.relative_to(root).as_posix()
        for line, path, is_link in named_paths(doc.read_text(encoding="utf-8")):
            targets = _resolve(root, doc, path, is_link)
            if targets and not any(_exists(t) for t in targets) and (outputs or not _ignored(root, targets[0])):
                missing.append(f"{rel}:{line}: {path}")
    return list(dict.fromkeys(missing))


def _ignored(root: Path, path: Path) -> bool:
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return True  # outside the checkout (../shared/...): not the repository's to hold
    done = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "--no-index", str(relative)],
                          capture_output=True)
    return done.returncode == 0


# ---------------------------------------------------------------------------------------------
# Values from committed sources


_SEGMENT = re.compile(r"\[(\w+)=([^\]]+)\]|\[(\d+)\]|([^.\[\]]+)")
_CSV_EXPR = re.compile(r"^(count|sum|mean|median|min|max)\((\w*)\)(?:\s+where\s+(.+))?$")
_ARITH = re.compile(r"^(.*?)\s*([*/])\s*([\d.e+-]+)$")


def _json_value(data: Any, path: str) -> Any:
    for match in _SEGMENT.finditer(path):
        key, value, index, name = match.groups()
        if key is not None:
            data = next((item for item in data if str(item.get(key)) == value), None)
            if data is None:
                raise PromptworthError(f"no item with {key}={value}")
        elif index is not None:
            data = data[int(index)]
        else:
            data = data[name]
    return data


def _csv_value(rows: list[dict[str, str]], expr: str) -> float:
    match = _CSV_EXPR.match(expr)
    if not match:
        raise PromptworthError(f"{expr!r} is not AGG(COLUMN) [where COLUMN=VALUE, ...] (AGG: count, sum, mean, "
                               "median, min, max)")
    agg, column, where = match.groups()
    for condition in (where or "").split(","):
        if condition.strip():
            key, sep, value = condition.partition("=")
            if not sep:
                raise PromptworthError(f"{expr!r}: {condition.strip()!r} is not COLUMN=VALUE")
            rows = [r for r in rows if r.get(key.strip()) == value.strip()]
    if agg == "count":
        return len(rows)
    values = [float(r[column]) for r in rows if r.get(column, "") != ""]
    if not values:
        raise PromptworthError(f"{expr!r}: no rows with a value of {column!r}")
    return {"sum": sum, "mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}[agg](values)


def value(root: Path, source: str, spec: str) -> str:
    """One figure: ``EXPR [* N | / N] [| FORMAT]`` of ``source`` (JSON or YAML: a key path such as
    ``ours.step_s`` or ``[task=CB].advantage``; CSV: ``median(wall_s) where task=trec``),
    formatted with the Python format spec FORMAT (``.2f``, ``,.0f``, ``d``)."""
    expr, _, spec_format = spec.partition("|")
    expr, scale = expr.strip(), None
    arith = _ARITH.match(expr)
    if arith:
        expr, scale = arith.group(1), (arith.group(2), float(arith.group(3)))
    path = root / source
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                number = _csv_value(list(csv.DictReader(handle)), expr)
        elif path.suffix in (".yaml", ".yml"):
            number = _json_value(yaml.safe_load(path.read_text(encoding="utf-8")), expr)
        else:
            number = _json_value(json.loads(path.read_text(encoding="utf-8")), expr)
        if scale is not None:
            number = number * scale[1] if scale[0] == "*" else number / scale[1]
        spec_format = spec_format.strip()
        return format(round(number) if spec_format == "d" else number, spec_format)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PromptworthError(f"{source}: cannot read {spec!r} ({type(exc).__name__}: {exc})") from None
    except PromptworthError as exc:
        raise PromptworthError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Generated regions


def _include(root: Path, source: str, *rows: str) -> str:
    """A markdown table file, or its header and the rows whose first cell is one of ``rows``."""
    text = (root / source).read_text(encoding="utf-8")
    if not rows:  # the whole file, its notes under the table too (a blank line keeps them out of the table)
        return text.strip() + "\n"
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("|")]
    lines = lines[:2] + [ln for ln in lines[2:] if _cells(ln)[0] in rows]
    return "\n".join(lines) + "\n"


def _lescao(root: Path, folder: str, *comparisons: str) -> str:
    """Our advantage on Le Scao & Rush's exports against their Table 1: per comparison and task,
    ours by their procedure (max over runs, leave-one-out std), the same in the prompt-vs-head
    window, and theirs."""
    base = root / folder
    rows = csv.DictReader((base / "published.csv").read_text(encoding="utf-8").splitlines())
    published = {(r["treatment"], r["baseline"], r["task"]): r for r in rows}
    window = len(comparisons) != 1
    header = ["comparison", "task", "ours, their procedure", "ours, `--window-from prompt:head`", "published"] if window \
        else [comparisons[0].replace(":", " vs "), "ours", "published"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for comparison in comparisons or ("prompt:head", "prompt:null", "null:head"):
        treatment, baseline = comparison.split(":")
        name = f"{treatment}-vs-{baseline}"
        ours = json.loads((base / "advantage" / f"{name}.json").read_text(encoding="utf-8"))
        shared = json.loads((base / "advantage" / f"{name}-window.json").read_text(encoding="utf-8"))
        for row in ours:
            paper = published[(treatment, baseline, row["task"])]
            cells = [f"{row['advantage']:.1f} ± {row['std']:.1f}"]
            if window:
                other = next(r for r in shared if r["task"] == row["task"])
                same = f"{other['advantage']:.1f} ± {other['std']:.1f}"
                cells = [f"{treatment} vs {baseline}", row["task"], cells[0],
                         "(same)" if same == cells[0] else f"**{same}**"]
            else:
                cells = [row["task"], *cells]
            lines.append("| " + " | ".join([*cells, f"{paper['advantage']} ± {paper['std']}"]) + " |")
    return "\n".join(lines) + "\n"


def _methods(root: Path) -> str:
    """The built-in methods of the registry: parts, strategy, training defaults, paper."""
    from promptworth.methods.specs import BUILTINS

    lines = ["| method | objective + tuning | extras | strategy | steps | default learning rate | size 0 | paper |",
             "|---|---|---|---|---|---|---|---|"]
    for spec in BUILTINS:
        trains, defaults = spec.tuning_spec.steps, spec.training_defaults()
        rate = defaults.get("learning_rate")
        # a method whose defaults set the protocol (setfit: one epoch of its pairs) does not take the study's steps
        steps = f"{defaults['epochs']:g} epoch" if defaults.get("protocol") == "epochs" else "the study's"
        template = f" (template `{spec.template}`)" if spec.template else ""
        cells = [f"`{spec.name}`", f"{spec.objective} + {spec.tuning}{template}", ", ".join(spec.extras) or "-",
                 spec.strategy, steps if trains else "0",
                 (f"{rate:g}" if rate is not None else "the study's") if trains else "-",
                 "yes" if spec.runs_at_size_zero else "-", spec.paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _source(root: Path, source: str, *names: str) -> str:
    """The definitions ``names`` (classes or functions) of a Python file, as a python block that the
    newcomer test does not run (definitions, not a command: the file's own tests run them)."""
    text = (root / source).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    found = {node.name: node for node in ast.parse(text).body
             if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in names}
    missing = [name for name in names if name not in found]
    if missing:
        raise KeyError(f"{source} defines no {missing[0]}")
    blocks = ["".join(lines[found[name].lineno - 1:found[name].end_lineno]) for name in names]
    skip = f"<!-- newcomer: skip (definitions from {source}, run by its tests) -->\n"
    return skip + "```python\n" + "\n\n".join(blocks) + "```\n"


GENERATORS: dict[str, Callable[..., str]] = {"include": _include, "lescao": _lescao, "methods": _methods,
                                              "source": _source}


def generate(root: Path, spec: str) -> str:
    """The text of one generated region: ``NAME ARGS...`` (``include FILE [ROW ...]``,
    ``lescao FOLDER [TREATMENT:BASELINE]``, ``methods``, ``source FILE NAME ...``)."""
    name, *args = shlex.split(spec)
    if name not in GENERATORS:
        raise PromptworthError(f"unknown generated region {name!r}; known: {', '.join(GENERATORS)}")
    try:
        return GENERATORS[name](root, *args)
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        raise PromptworthError(f"generated region {spec!r}: {type(exc).__name__}: {exc}") from None


def refresh(root: Path, text: str) -> str:
    """``text`` with every generated region rewritten from its source."""
    def fill(match: re.Match) -> str:
        return f"<!-- generated: {match.group(1)} -->\n{generate(root, match.group(1))}<!-- /generated -->"
    return GENERATED.sub(fill, text)


def write_generated(root: Path) -> list[Path]:
    """Rewrite the generated regions of every document; the files that changed."""
    from promptworth.files import atomic_path

    changed = []
    for doc in doc_files(root):
        text = doc.read_text(encoding="utf-8")
        new = refresh(root, text)
        if new != text:
            with atomic_path(doc) as tmp:
                tmp.write_text(new, encoding="utf-8")
            changed.append(doc)
    return changed


# ---------------------------------------------------------------------------------------------
# Quotes


@dataclass(frozen=True)
class Quote:
    """A sentence of a document with ``{placeholders}``, each a figure of ``source``; or, with
    no values, a sentence whose numbers are not results (``why`` says what they are)."""

    doc: str
    text: str
    source: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    why: str | None = None

    def render(self, root: Path) -> str:
        if not self.values:
            return self.text
        return self.text.format(**{name: value(root, self.source or "", spec) for name, spec in self.values})


def load_quotes(root: Path) -> list[Quote]:
    path = root / QUOTES
    if not path.is_file():
        return []
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as exc:
        raise PromptworthError(f"{QUOTES}: not valid YAML ({exc})") from None
    quotes = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"doc", "text"} <= entry.keys() or \
                not entry.keys() <= {"doc", "text", "source", "values", "why"}:
            raise PromptworthError(f"{QUOTES}: entry {i + 1} needs doc and text, and source and values or why")
        values = entry.get("values") or {}
        if bool(values) == bool(entry.get("why")) or bool(values) != bool(entry.get("source")):
            raise PromptworthError(f"{QUOTES}: entry {i + 1} ({entry['doc']}): give source and values, or why")
        quotes.append(Quote(entry["doc"], " ".join(entry["text"].split()), entry.get("source"),
                            tuple((str(k), str(v)) for k, v in values.items()), entry.get("why")))
    return quotes


def _normalized(text: str) -> tuple[str, list[int]]:
    """``text`` with every run of whitespace as one space, and each character's index in ``text``."""
    out, index = [], []
    for i, char in enumerate(text):
        if char.isspace():
            if out and out[-1] == " ":
                continue
            char = " "
        out.append(char)
        index.append(i)
    return "".join(out), index


def _quote_spans(text: str, rendered: str) -> list[tuple[int, int]]:
    norm, index = _normalized(text)
    spans, start = [], norm.find(rendered)
    while start >= 0:
        spans.append((index[start], index[start + len(rendered) - 1] + 1))
        start = norm.find(rendered, start + 1)
    return spans


# ---------------------------------------------------------------------------------------------
# The check


def check(root: Path, outputs: bool = False) -> list[str]:
    """Every problem of the documentation, one line each: a missing path, a stale generated
    region, a quote that does not match its source, a result-like number with no source, an
    untagged code block."""
    problems = [f"{where}: no such file or folder" for where in missing_paths(root, outputs)]
    quotes = load_quotes(root)
    docs = {doc.relative_to(root).as_posix(): doc.read_text(encoding="utf-8") for doc in doc_files(root)}
    scanned = {p.relative_to(root).as_posix() for pattern in FIGURE_DOCS for p in root.glob(pattern)}
    spans: dict[str, list[tuple[int, int]]] = {name: [] for name in docs}
    for quote in quotes:
        if quote.doc not in docs:
            problems.append(f"{QUOTES}: {quote.doc} is not a document ({', '.join(DOCS)})")
            continue
        try:
            rendered = quote.render(root)
        except PromptworthError as exc:
            problems.append(f"{QUOTES}: {quote.doc}: {exc}")
            continue
        found = _quote_spans(docs[quote.doc], rendered)
        if not found:
            source = f" (from {quote.source})" if quote.source else ""
            problems.append(f"{quote.doc}: does not say {rendered!r}{source}")
        spans[quote.doc] += found
    for name, text in docs.items():
        for match in GENERATED.finditer(text):
            try:
                fresh = generate(root, match.group(1))
            except PromptworthError as exc:
                problems.append(f"{name}:{_line_of(text, match.start())}: {exc}")
                continue
            if fresh != match.group(2):
                problems.append(f"{name}:{_line_of(text, match.start())}: generated region {match.group(1)!r} is "
                                "stale: run `python -m tools.doccheck write`")
        for line, lang, _, _ in fences(text):
            if not lang:
                problems.append(f"{name}:{line}: a code block without a language: tag it (bash or python to run "
                                "it, text otherwise)")
        if name in scanned:
            problems += [f"{name}:{line}: {figure!r} is quoted without a source (see {QUOTES})"
                         for line, figure in unsourced_figures(text, spans[name])]
    return problems


def unsourced_figures(text: str, quoted: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """``(line, figure)`` of each result-like number outside code, comments, generated and
    unchecked regions and the ``quoted`` spans."""
    masked = _without_fences(text)
    for pattern in (GENERATED, UNCHECKED, COMMENT, CODE_SPAN, LINK):
        masked = _mask(masked, pattern)
    chars = list(masked)
    for start, end in quoted:
        chars[start:end] = [c if c == "\n" else " " for c in chars[start:end]]
    masked = "".join(chars)
    return [(_line_of(masked, m.start()), m.group(0).strip()) for m in FIGURE.finditer(masked)]
