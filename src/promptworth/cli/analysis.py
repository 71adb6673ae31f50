"""Analysis verbs: ``aggregate``, ``advantage``, ``import-lescao``, ``tables``, ``paired``, ``protocol``,
``flops``, ``figures``, ``budgets``, ``lmbff-table`` and ``costs`` (Snakemake's benchmarks of the
training jobs -> one CSV).

Every verb checks its input first and writes its output all at once (temp file or folder, then a
rename), so a bad input leaves nothing behind. See ``docs/analysis.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from promptworth.analysis.advantage import AdvantageResult
from promptworth.analysis.estimate import AdvantageOptions
from promptworth.cli.output import Output, frame_rows, written
from promptworth.errors import PromptworthError
from promptworth.files import write_texts
from promptworth.methods.specs import DEFAULT_COMPARISONS


def _options(args: argparse.Namespace) -> AdvantageOptions:
    window_from = None
    if args.window_from:
        window_from = tuple(m for m in args.window_from.split(":") if m)
        if not window_from:
            raise PromptworthError(f"bad --window-from {args.window_from!r}; write METHOD:METHOD")
    return AdvantageOptions(reduction=args.reduction, x_scale=args.x_scale, window=args.window,
                            levels=args.levels, window_from=window_from, interval=args.interval,
                            confidence=args.confidence, resamples=args.resamples, matched=args.ladder == "matched")


def _results(args: argparse.Namespace) -> pd.DataFrame:
    from promptworth.analysis.results import read_table

    table = read_table(args.results)
    if getattr(args, "model", None):
        if "model" not in table.columns:
            raise PromptworthError(f"{args.results}: no 'model' column to filter by --model")
        table = table[table["model"].astype(str) == args.model]
        if table.empty:
            raise PromptworthError(f"{args.results}: no runs of model {args.model!r}")
    return table


# ---------------------------------------------------------------------------------------------
# Handlers


def run_aggregate(args: argparse.Namespace) -> Output:
    from promptworth.analysis.results import collect, cost_summary, stop_summary
    from promptworth.files import write_csv

    peak = args.peak_gflops
    if peak is not None and not (math.isfinite(peak) and peak > 0):
        raise PromptworthError(f"--peak-gflops must be a positive number, got {peak}")
    table = collect(args.paths, study=_study(args.study) if args.study else None, strays=args.strays)
    write_csv(table, args.out)
    data = {"out": args.out, "runs": len(table), "compute": cost_summary(table, peak), "stopped": stop_summary(table)}
    return Output(data, f"[promptworth] {len(table)} runs -> {args.out}\n[promptworth] compute: {data['compute']}\n"
                        f"[promptworth] stopped: {data['stopped']}")


def _study(text: str):
    """The study of ``--study``: a config file, or a config as JSON (the workflow's)."""
    from promptworth.study.config_file import refuse_yte
    from promptworth.study.load import read_study

    if text.lstrip().startswith("{"):
        try:
            config = json.loads(text)
        except ValueError as exc:
            raise PromptworthError(f"--study: not a study config as JSON ({exc})") from None
        refuse_yte(config, "--study")
        return read_study(config)
    return read_study(text)


def _fmt(value: float, digits: int = 0) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def format_results(results: list[AdvantageResult]) -> str:
    from promptworth.analysis.table_format import format_advantage

    header = ["model", "task", "treatment", "baseline", "advantage", "seeds", "window", "sizes", "runs", "note"]
    rows = [[r.model, r.task, r.treatment, r.baseline, format_advantage(r), str(r.n_seeds),
             f"[{_fmt(r.window_lo, 4)}, {_fmt(r.window_hi, 4)}]", r.ladder, r.n_runs, r.reason] for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def run_advantage(args: argparse.Namespace) -> Output:
    from promptworth.analysis.advantage import advantage_table
    from promptworth.analysis.joins import comparison_runs

    runs = comparison_runs(_results(args), args.in_place_of).frame
    results = advantage_table(runs, args.treatment, args.baseline, _options(args), tasks=args.tasks)
    return Output([r.to_dict() for r in results], format_results(results))


def run_import_lescao(args: argparse.Namespace) -> Output:
    from promptworth.analysis.curves import first_duplicate_run
    from promptworth.analysis.lescao import import_lescao
    from promptworth.files import write_csv

    frames = [import_lescao(path, task=args.task, pattern=args.pattern) for path in args.csvs]
    tidy = pd.concat(frames, ignore_index=True)
    first = first_duplicate_run(tidy)
    if first is not None:
        raise PromptworthError(
            f"the files give task {first['task']!r} twice (method {first['method']}, size {first['train_size']}, "
            f"seed {first['seed']}); give each file its own --task or import them separately"
        )
    write_csv(tidy, args.out)
    tasks = list(dict.fromkeys(tidy["task"]))
    return Output({"out": args.out, "runs": len(tidy), "tasks": tasks},
                  f"[promptworth] {len(tidy)} runs of {', '.join(tasks)} -> {args.out}")


def _comparisons(args: argparse.Namespace, table: pd.DataFrame) -> list:
    return _chosen_comparisons(args.comparisons, set(table["method"].astype(str)), str(args.results))


def _chosen_comparisons(given: list[str] | None, present: set[str], source: str) -> list:
    """The comparisons of ``--comparisons``, else the default ones whose methods are both ``present``."""
    from promptworth.analysis.advantage import Comparison

    if given:
        return [Comparison.parse(text) for text in given]
    chosen = [c for c in map(Comparison.parse, DEFAULT_COMPARISONS) if {c.treatment, c.baseline} <= present]
    if not chosen:
        raise PromptworthError(
            f"{source}: none of the default comparisons ({' '.join(DEFAULT_COMPARISONS)}) has both methods "
            f"in the results (methods: {', '.join(sorted(present))}); give --comparisons"
        )
    return chosen


def run_tables(args: argparse.Namespace) -> Output:
    from promptworth.analysis.tables import table_texts

    table = _results(args)
    texts = table_texts(table, _comparisons(args, table), _options(args), args.in_place_of)
    files = write_texts(args.out_dir, texts)
    return Output(written(args.out_dir, files), f"[promptworth] {len(files)} tables -> {args.out_dir}")


def run_paired(args: argparse.Namespace) -> Output:
    from promptworth.analysis.paired import paired_frame, paired_markdown

    records = _records(args)
    present = {record["method"] for record in records.values()}
    comparisons = _chosen_comparisons(args.comparisons, present, ", ".join(map(str, args.paths)))
    frame, left = paired_frame(records, comparisons, args.confidence, args.resamples, args.in_place_of)
    files = write_texts(args.out_dir, {"paired.csv": frame.to_csv(index=False), "paired.md": paired_markdown(frame, left)})
    without = f", {len(left.without_predictions)} left out without per-row predictions" if left.without_predictions else ""
    data = {**written(args.out_dir, files), "rows": frame_rows(frame),
            "without_predictions": [str(path) for path in left.without_predictions]}
    return Output(data, f"[promptworth] {len(frame)} paired rows{without} -> {args.out_dir}")


def _records(args: argparse.Namespace) -> dict:
    """The run records of ``args.paths`` (with ``--study`` and ``--strays``, as aggregate reads them)."""
    from promptworth.analysis.results import read_records

    return read_records(args.paths, study=_study(args.study) if args.study else None, strays=args.strays)


def run_protocol(args: argparse.Namespace) -> Output:
    from promptworth.analysis.protocol import protocol_frames, protocol_markdown

    frame, facts = protocol_frames(_records(args))
    files = write_texts(args.out_dir, {"protocol.csv": frame.to_csv(index=False),
                                        "protocol.md": protocol_markdown(frame, facts)})
    data = {**written(args.out_dir, files), "runs": len(facts), "rows": frame_rows(frame)}
    return Output(data, f"[promptworth] protocol of {len(facts)} runs -> {args.out_dir}")


def run_flops(args: argparse.Namespace) -> Output:
    from promptworth.analysis.flops_cost import cost_figure, cost_texts
    from promptworth.analysis.intervals import check_confidence
    from promptworth.analysis.plots import method_styles, save_figure
    from promptworth.files import write_files

    check_confidence(args.confidence)
    texts, runs = cost_texts(_records(args), args.confidence)
    figure = cost_figure(runs, method_styles(list(dict.fromkeys(runs["method"]))), args.in_place_of, args.confidence)
    files = write_files(args.figures_dir, lambda tmp: save_figure(figure, tmp / "cost"))
    files += write_texts(args.tables_dir, texts)
    data = {"runs": len(runs), "tables_dir": args.tables_dir, "figures_dir": args.figures_dir,
            "files": sorted(path.name for path in files)}
    return Output(data, f"[promptworth] score against training FLOPs of {len(runs)} runs: {len(files)} files -> "
                        f"{args.tables_dir}, {args.figures_dir}")


def run_figures(args: argparse.Namespace) -> Output:
    from promptworth.analysis.figures import figures

    files = figures(_results(args), args.out_dir, args.treatment, args.baseline, _options(args), args.in_place_of)
    return Output(written(args.out_dir, files), f"[promptworth] {len(files)} figures -> {args.out_dir}")


def run_budgets(args: argparse.Namespace) -> Output:
    from promptworth.analysis.budgets import (
        advantage_by_budget, advantage_by_budget_markdown, budgets_figure, scores_by_budget, stop_steps,
    )
    from promptworth.analysis.joins import comparison_runs
    from promptworth.analysis.plots import save_figure
    from promptworth.files import write_files

    table = comparison_runs(_results(args), args.in_place_of).frame
    comparisons = _comparisons(args, table)
    frame = advantage_by_budget(table, comparisons, _options(args))
    texts = {"advantage_by_budget.csv": frame.to_csv(index=False),
             "advantage_by_budget.md": advantage_by_budget_markdown(frame),
             "scores_by_budget.csv": scores_by_budget(table).to_csv(index=False)}
    figure = budgets_figure(frame, comparisons[0], stop_steps(table, comparisons[0]))
    # everything is computed first; the figure (its drawing can fail) is written before the tables
    figure_files = write_files(args.figures_dir, lambda tmp: save_figure(figure, tmp / "budgets"))
    table_files = write_texts(args.tables_dir, texts)
    budgets = list(dict.fromkeys(frame["budget"].astype(str)))
    data = {"budgets": budgets, "tables_dir": args.tables_dir, "figures_dir": args.figures_dir,
            "files": sorted(path.name for path in [*figure_files, *table_files]), "advantage": frame_rows(frame)}
    return Output(data, f"[promptworth] advantage at budgets {', '.join(budgets)}: "
                        f"{len(figure_files) + len(table_files)} files -> {args.tables_dir}, {args.figures_dir}")


def run_lmbff_table(args: argparse.Namespace) -> Output:
    from promptworth.analysis.plots import save_figure
    from promptworth.analysis.summary_plots import published_figure
    from promptworth.analysis.lmbff import published_frame, published_latex, published_markdown
    from promptworth.files import write_files

    frame = published_frame(_results(args))
    texts = {"lmbff.csv": frame.to_csv(index=False), "lmbff.md": published_markdown(frame),
             "lmbff.tex": published_latex(frame)}
    figure = published_figure(frame)

    def write(tmp: Path) -> None:
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        save_figure(figure, tmp / "lmbff")

    files = write_files(args.out_dir, write)
    return Output({**written(args.out_dir, files), "rows": frame_rows(frame)},
                  f"[promptworth] {len(files)} files -> {args.out_dir}")


def run_costs(args: argparse.Namespace) -> Output:
    from promptworth.analysis.costs import cost_table
    from promptworth.files import write_csv

    table = cost_table(args.runs, args.benchmarks)
    write_csv(table, args.out)
    return Output({"out": args.out, "runs": len(table)}, f"[promptworth] costs of {len(table)} runs -> {args.out}")
