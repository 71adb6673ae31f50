"""All of a study's figures at once: one per task, the overview, the methods and, for several
models, the advantage against the model (``promptworth figures``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.joins import comparison_runs
from promptworth.analysis.plots import file_stem, method_styles, overview_figure, save_figure, task_figure, task_panels
from promptworth.analysis.summary_plots import methods_figure, scale_figure
from promptworth.files import write_files
from promptworth.methods.specs import DEFAULT_BASELINE, DEFAULT_TREATMENT


def figures(
    results: pd.DataFrame, out_dir: Path, treatment: str = DEFAULT_TREATMENT, baseline: str = DEFAULT_BASELINE,
    options: AdvantageOptions = AdvantageOptions(), in_place_of: str | None = None,
) -> list[Path]:
    """Write ``<task>.png/.pdf`` per task, ``overview.png/.pdf`` and ``methods.png/.pdf`` into
    ``out_dir``, and where the results hold several models ``scale.png/.pdf`` (all or nothing).
    They draw the runs the comparisons read (:func:`promptworth.analysis.joins.comparison_runs`,
    ``in_place_of`` as there; the methods figure each method's own runs, without borrowed points)."""
    panels = task_panels(comparison_runs(results, in_place_of).frame, treatment, baseline, options)
    own_runs = comparison_runs(results, in_place_of, untrained_points=False).frame
    styles = method_styles(list(dict.fromkeys(m for p in panels for m in p.methods)))

    def write(tmp: Path) -> None:
        for task in dict.fromkeys(panel.task for panel in panels):
            of_task = [panel for panel in panels if panel.task == task]
            save_figure(task_figure(of_task, styles, treatment, baseline, options.confidence), tmp / file_stem(task))
        save_figure(overview_figure(panels, styles, treatment, baseline, options.confidence), tmp / "overview")
        save_figure(methods_figure(own_runs, styles, options.confidence), tmp / "methods")
        if len({panel.model for panel in panels}) > 1:
            save_figure(scale_figure(panels, treatment, baseline), tmp / "scale")

    return write_files(out_dir, write)
