"""What a verb prints on stdout: its result, as text or (``--json``) as one JSON document.

A handler of a verb that prints a result returns an :class:`Output`; :func:`promptworth.cli.main`
prints it. Handlers write to stdout through nothing else, so ``--json`` leaves nothing but the
document there (log lines and warnings go to stderr).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Output:
    """A verb's result: ``data`` (JSON values, paths and numpy numbers; :func:`jsonable`), the
    same as text for a reader, and the exit status that goes with it (1 where the result is itself
    a failure: a reproduction that does not agree with the published study)."""

    data: Any
    text: str
    status: int = 0

    def render(self, as_json: bool) -> str:
        return json.dumps(jsonable(self.data), indent=2, allow_nan=False) if as_json else self.text


def jsonable(value: Any) -> Any:
    """``value`` as JSON values: a path as text, NaN as null, ±inf as "inf"/"-inf" (as
    :meth:`promptworth.analysis.advantage.AdvantageResult.to_dict` writes them), a tuple as a list,
    a numpy number as a Python one."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "item"):  # a numpy scalar
        return jsonable(value.item())
    raise TypeError(f"no JSON form for {type(value).__name__}")


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as one JSON object per row (a missing value as null)."""
    return [{key: None if _missing(value) else value for key, value in row.items()}
            for row in frame.to_dict(orient="records")]


def _missing(value: Any) -> bool:
    import pandas as pd

    return not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value))


def written(out_dir: Path, files: list[Path]) -> dict[str, Any]:
    """What a verb that writes a folder of files wrote: the folder and its files' names."""
    return {"out_dir": out_dir, "files": sorted(path.name for path in files)}
