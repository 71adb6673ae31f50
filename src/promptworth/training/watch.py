"""Watching a run while it trains: its progress, and (``training.metrics``) every step's numbers.

Progress: on a terminal, a tqdm bar; anywhere else (a log file, a pool's worker, whose output goes
to its client's log) one line after the first step, then one every ``every_s`` seconds
(:data:`PROGRESS_EVERY_S`, ``promptworth train --progress-every``; 0: after every step), and a
last one when training ends. A line is ``progress:`` and ``key=value`` pairs (:func:`progress_line`,
read back by :func:`read_progress_line`), flushed at once:

- ``step``, ``cap``: the steps taken and the step budget (max_steps, or the epochs protocol's count);
- ``loss``: the mean training loss of the steps since the previous line (none since: the last step's);
  ``lr``: the last step's learning rate;
- ``dev``, ``best``, ``best_step``: the last dev score, the best so far and its step (``na`` before
  the first evaluation);
- ``examples_read``, ``epochs``: training examples read at least once, passes over the training set;
- ``elapsed_s``, ``steps_per_s``: since training began, evaluations included (the pace so far);
- ``left_s``: the time to the cap at that pace; with patience also ``stop_from`` and ``left_min_s``:
  the earliest step at which patience can still stop the run (no later evaluation beating the best,
  and not before the minimums before patience) and the time to it;
- the last line: ``stopped`` (cap or patience) instead of the estimates.

Metrics (``training.metrics``): ``csv``, a row per step (step, loss, learning_rate, and dev_score and
best_dev_score on the steps with a dev evaluation; step 0 for a method that takes none), or
``tensorboard``, the same as scalars (``train/loss``, ``train/learning_rate``, ``dev/score``,
``dev/best``) in TensorBoard event files (torch.utils.tensorboard, offline). They are written while
the run trains, into the partial name :mod:`promptworth.training.outputs` gives them.

Nothing here changes what a run computes: it reads numbers the loop already has (a loss already on
the CPU, the learning rate the optimizer holds) and the clock.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from promptworth.errors import PromptworthError
from promptworth.training.settings import TrainConfig, epochs_read, examples_read

PROGRESS_EVERY_S = 30.0
LINE_TAG = "progress:"
CSV_COLUMNS = ("step", "loss", "learning_rate", "dev_score", "best_dev_score")


def progress_line(values: Mapping[str, Any]) -> str:
    """``progress: key=value ...``; a float with 4 significant decimals, None as ``na``."""
    def shown(value: Any) -> str:
        if value is None:
            return "na"
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
        return str(value)

    return " ".join([LINE_TAG, *(f"{key}={shown(value)}" for key, value in values.items())])


def read_progress_line(line: str) -> dict[str, str] | None:
    """The ``key: value`` pairs of a progress line (values as text), None for any other line."""
    parts = line.split()
    if not parts or parts[0] != LINE_TAG:
        return None
    return dict(part.split("=", 1) for part in parts[1:])


def earliest_stop(step: int, cap: int, eval_every: int, patience: int, stale: int, patience_from: int) -> int | None:
    """The earliest step after ``step`` at which patience can stop a run whose best dev score has
    not been beaten for ``stale`` evaluations: if no later evaluation beats it, after ``patience``
    such evaluations (at least one more), never before ``patience_from``. None: patience is off, or
    cannot stop the run before its cap."""
    if not patience or not eval_every:
        return None
    stop = (step // eval_every + max(1, patience - stale)) * eval_every
    stop = max(stop, math.ceil(patience_from / eval_every) * eval_every)
    return stop if stop < cap else None


@dataclass(frozen=True)
class Plan:
    """What the progress lines count against: the run's step budget and what patience waits for."""

    cap: int
    train_size: int
    batch_size: int
    eval_every: int = 0
    patience: int = 0
    patience_from: int = 0


class MetricsLog:
    """Where every step's numbers go: a step's row, a dev evaluation, the end (closing twice is closing once)."""

    def step(self, step: int, loss: float | None, learning_rate: float | None) -> None:
        raise NotImplementedError

    def dev(self, step: int, score: float, best: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CsvMetrics(MetricsLog):
    """A row per step (:data:`CSV_COLUMNS`), written once the step's dev evaluation, if any, is known."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(CSV_COLUMNS)
        self.pending: dict[str, Any] | None = None

    def _write_pending(self) -> None:
        if self.pending is not None:
            self.writer.writerow([self.pending.get(column, "") for column in CSV_COLUMNS])
            self.handle.flush()
            self.pending = None

    def step(self, step: int, loss: float | None, learning_rate: float | None) -> None:
        self._write_pending()
        self.pending = {"step": step, "loss": "" if loss is None else repr(loss),
                        "learning_rate": "" if learning_rate is None else repr(learning_rate)}

    def dev(self, step: int, score: float, best: float) -> None:
        if self.pending is None or self.pending["step"] != step:  # a method that takes no step: step 0
            self._write_pending()
            self.pending = {"step": step}
        self.pending.update(dev_score=repr(score), best_dev_score=repr(best))

    def close(self) -> None:
        if not self.handle.closed:
            self._write_pending()
            self.handle.close()


class TensorBoardMetrics(MetricsLog):
    """The same numbers as scalars in TensorBoard event files (torch's SummaryWriter)."""

    def __init__(self, folder: Path) -> None:
        self.writer = tensorboard_writer(folder)
        self.closed = False

    def step(self, step: int, loss: float | None, learning_rate: float | None) -> None:
        if loss is not None:
            self.writer.add_scalar("train/loss", loss, step)
        if learning_rate is not None:
            self.writer.add_scalar("train/learning_rate", learning_rate, step)

    def dev(self, step: int, score: float, best: float) -> None:
        self.writer.add_scalar("dev/score", score, step)
        self.writer.add_scalar("dev/best", best, step)

    def close(self) -> None:
        if not self.closed:
            self.writer.close()
            self.closed = True


def tensorboard_writer(folder: Path) -> Any:
    """torch's SummaryWriter into ``folder``, or one clear error when the package tensorboard is missing."""
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def check_tensorboard() -> None:
    """``metrics: tensorboard`` needs the package tensorboard (torch writes its event files with it)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise PromptworthError("training setting metrics tensorboard needs the package tensorboard: "
                               "pip install -c constraints.txt 'promptworth[tensorboard]' (or metrics csv)")


def open_metrics(kind: str, path: Path) -> MetricsLog:
    """The metrics log of ``training.metrics`` (csv or tensorboard) at ``path``."""
    return CsvMetrics(path) if kind == "csv" else TensorBoardMetrics(path)


@dataclass
class Watch:
    """How a run is watched besides its bar: progress lines every ``every_s`` seconds (where no
    terminal shows a bar), and where every step's numbers go (None: nowhere)."""

    every_s: float = PROGRESS_EVERY_S
    metrics: MetricsLog | None = None


@dataclass
class Watcher:
    """What a run reports while it trains (see the module); ``progress`` False: no bar and no line."""

    plan: Plan
    description: str
    progress: bool = True
    watch: Watch = field(default_factory=Watch)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        self.lines = self.progress and not interactive
        self.bar = tqdm(total=self.plan.cap, desc=self.description, file=sys.stderr,
                        disable=not (self.progress and interactive), leave=True, mininterval=0.1)
        self.last_line: float | None = None
        self.losses: list[float] = []  # since the previous line
        self.state: dict[str, Any] = {"step": 0, "loss": None, "lr": None, "dev": None, "best": None, "best_step": None,
                                      "stale": 0}

    def step(self, step: int, loss: float | None, learning_rate: float | None = None) -> None:
        """After training step ``step`` (its loss and the learning rate it took)."""
        if loss is not None:
            self.losses.append(loss)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)
        self.state.update(step=step, loss=loss, lr=learning_rate)
        if self.watch.metrics is not None:
            self.watch.metrics.step(step, loss, learning_rate)
        now = time.monotonic()
        if self.lines and (self.last_line is None or now - self.last_line >= self.watch.every_s):
            self._line(self._estimate(now))
            self.last_line = now

    def dev(self, step: int, score: float, best: float, best_step: int, stale: int) -> None:
        """After the dev evaluation at ``step``: its score, the best so far, its step, and how many
        evaluations in a row have not beaten it."""
        self.state.update(dev=score, best=best, best_step=best_step, stale=stale)
        self.bar.set_postfix(dev=f"{score:.4f}", best=f"{best:.4f}", refresh=False)
        if self.watch.metrics is not None:
            self.watch.metrics.dev(step, score, best)

    def close(self, stopped: str | None = None) -> None:
        """Training has ended (``stopped``: how, None when it failed): the last line, the files closed."""
        self.bar.close()
        if self.lines and stopped is not None and self.state["step"]:
            self._line({"elapsed_s": round(time.monotonic() - self.started, 1), "stopped": stopped})
        if self.watch.metrics is not None:
            self.watch.metrics.close()

    def _estimate(self, now: float) -> dict[str, Any]:
        """The pace so far and the time left at it, to the cap and to patience's earliest stop."""
        plan, step = self.plan, self.state["step"]
        elapsed = now - self.started
        pace = step / elapsed if elapsed > 0 else None
        left = {"left_s": round((plan.cap - step) / pace) if pace else None}
        stop = earliest_stop(step, plan.cap, plan.eval_every, plan.patience, self.state["stale"], plan.patience_from)
        if plan.patience:
            left.update(stop_from=stop if stop is not None else plan.cap,
                        left_min_s=round(((stop or plan.cap) - step) / pace) if pace else None)
        return {"elapsed_s": round(elapsed, 1), "steps_per_s": pace, **left}

    def _line(self, tail: Mapping[str, Any]) -> None:
        plan, state = self.plan, self.state
        loss = sum(self.losses) / len(self.losses) if self.losses else state["loss"]  # no step since: the last one's
        self.losses = []
        values = {"step": state["step"], "cap": plan.cap, "loss": loss, "lr": state["lr"], "dev": state["dev"],
                  "best": state["best"], "best_step": state["best_step"],
                  "examples_read": examples_read(plan.train_size, state["step"], plan.batch_size) if plan.train_size else 0,
                  "epochs": epochs_read(plan.train_size, state["step"], plan.batch_size) if plan.train_size else 0.0,
                  **tail}
        print(progress_line(values), file=sys.stderr, flush=True)


def watcher_for(total: int, train_size: int, config: TrainConfig, description: str, progress: bool,
                watch: Watch | None) -> Watcher:
    """The watcher of a run of ``total`` steps on ``train_size`` examples under ``config``."""
    plan = Plan(total, train_size, config.batch_size, config.eval_every, config.patience,
                config.patience_from(train_size))
    return Watcher(plan, description, progress, watch or Watch())
