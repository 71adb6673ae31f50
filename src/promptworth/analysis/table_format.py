"""How the tables write numbers and cells: Markdown and LaTeX grids, scores, advantages, shares, gaps."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import pandas as pd

from promptworth.analysis.estimate import BOUND_SIGNS
from promptworth.errors import PromptworthError


MISSING = "–"  # the paper's mark for "not computed"


NOT_RUN = ""  # an advantage table's cell of a comparison the study did not run on that task


def _is_nan(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _points(value: float) -> str:
    """A number of data points, whole; ±inf as ∞."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.0f}"


def format_advantage(row: object, unit: str = "") -> str:
    """One advantage as a cell (``row``: an :class:`AdvantageResult` or a row of its frame):
    ``91 [81, 103]`` (bootstrap interval), ``69 ± 10`` (leave-one-out std), the number alone
    where there is no interval; a bound as ``> 990`` / ``< -90`` (the curves do not overlap) or
    ``≥ 201`` / ``≤ -43`` (a curve stops below the window's top); ``–`` when undefined. ``unit``
    follows the number (``91 data points [81, 103]``: never read as accuracy points)."""
    kind = getattr(row, "bound_kind", "") or ""
    if not isinstance(kind, str):  # a frame read back: NaN for ""
        kind = ""
    unit = f" {unit}" if unit else ""
    if kind:
        return f"{BOUND_SIGNS[kind]} {_points(float(getattr(row, 'bound')))}{unit}"
    advantage = getattr(row, "advantage")
    if _is_nan(advantage):
        return MISSING
    lower, upper, std = (getattr(row, key, math.nan) for key in ("lower", "upper", "std"))
    if not (_is_nan(lower) or _is_nan(upper)):
        return f"{_points(advantage)}{unit} [{_points(lower)}, {_points(upper)}]"
    if not _is_nan(std):
        return f"{_points(advantage)} ± {_points(std)}{unit}"
    return f"{_points(advantage)}{unit}"


def format_score(mean: float, std: float, scale: float = 100.0) -> str:
    """``81.4 (3.8)`` on a 0-100 scale like LM-BFF; no parentheses for a single run."""
    if _is_nan(mean):
        return MISSING
    if _is_nan(std):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ({std * scale:.1f})"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:"] * (len(header) - 1)
    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)]) + "\n"


def parse_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first pipe table in ``text``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise PromptworthError("no markdown table found")

    def cells(line: str) -> list[str]:
        inner = line.strip()[1:-1].replace("\\|", "\0")
        return [c.strip().replace("\0", "|") for c in inner.split("|")]

    return cells(lines[0]), [cells(ln) for ln in lines[2:]]


def latex(header: Sequence[str], rows: Sequence[Sequence[str]], label_columns: int = 1) -> str:
    spec = "l" * label_columns + "r" * (len(header) - label_columns)
    body = [" & ".join(latex_escape(h) for h in header) + r" \\"]
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def grid_latex(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1, label_columns: int = 1) -> str:
    """A table grid as LaTeX: the first ``text_columns`` cells of each row are text (escaped), the
    others formatted numbers (:func:`_latex_cell`)."""
    cells = [[latex_escape(c) for c in row[:text_columns]] + [_latex_cell(c) for c in row[text_columns:]] for row in rows]
    return latex(header, cells, label_columns)


def _latex_cell(text: str) -> str:
    """A formatted number cell in LaTeX: ± in math mode, the missing mark as --."""
    if text == MISSING:
        return "--"
    if "±" in text:
        value, err = (part.strip() for part in text.split("±"))
        return rf"${value} \pm {err}$"
    maths = {"≥": r"\geq", "≤": r"\leq", ">": ">", "<": "<", "∞": r"\infty"}
    if any(sign in text for sign in maths):
        return "$" + "".join(maths.get(char, char) for char in text) + "$"
    return latex_escape(text)


def format_count(value: float) -> str:
    """A parameter count for people: ``134.5M``, ``184k``, ``1,152``; the mark where unknown."""
    if _is_nan(value):
        return MISSING
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:,.0f}"


def format_share(share: float) -> str:
    """The share of a model a method trains, as a percentage with 3 significant digits (100%, 0.341%)."""
    return f"{100 * share:.3g}%"


def _span(values: pd.Series, show: Callable[[float], str]) -> str:
    """One value, or the smallest and largest where the tasks differ (``1,152–3,456``)."""
    known = values.dropna()
    if not len(known):
        return MISSING
    low, high = show(known.min()), show(known.max())
    return low if low == high else f"{low}–{high}"


def format_gap(gap: float, lower: float, upper: float, scale: float = 100.0) -> str:
    """``+3.4 [-1.2, 8.0]`` in score points x100; no interval for a single seed."""
    if _is_nan(gap):
        return MISSING
    if _is_nan(lower) or _is_nan(upper):
        return f"{gap * scale:+.1f}"
    return f"{gap * scale:+.1f} [{lower * scale:+.1f}, {upper * scale:+.1f}]"


def note_lines(notes: Sequence[str]) -> str:
    """Notes under a table, a paragraph each ("" for none)."""
    return "".join(f"\n{note}\n" for note in notes)
