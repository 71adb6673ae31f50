"""Training hyperparameters, shared by ``promptworth train`` and the workflow (no torch import)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

from promptworth.errors import PromptworthError

PROTOCOLS = ("steps", "epochs")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULES = ("linear", "constant")
# How a run computes, apart from what it trains (promptworth.training.engine says what each does).
ENGINES = ("v2", "v3", "v4", "v5")
# Per-step metrics a run writes beside its record (promptworth.training.watch); none: no file.
METRICS = ("none", "csv", "tensorboard")
# The settings that say what a run writes beside its record, not what it trains, each with its
# value that writes nothing: a record lists them in its own keys (step_metrics, weights), not among
# its hyperparameters, and a study reuses a record that wrote more than it asks for.
OUTPUT_SETTINGS: dict[str, Any] = {"metrics": "none", "save_weights": False}


# The training settings an objective that trains through a library of its own reads (TrainConfig
# fields): its records list these only, and a study compares these only (promptworth.study.reuse).
SETTINGS_READ_BY_OBJECTIVE: dict[str, tuple[str, ...]] = {
    "setfit": ("protocol", "max_steps", "min_steps", "epochs", "learning_rate", "batch_size", "eval_batch_size",
               "warmup_ratio", "weight_decay", "max_length"),
}


def selects_on_dev(objective: str) -> bool:
    """Whether a run of ``objective`` evaluates dev as it trains, keeps its best state and can be
    stopped by patience; one that trains through a library of its own (SetFit) scores dev once, at
    the end, and ends at its cap."""
    read = SETTINGS_READ_BY_OBJECTIVE.get(objective)
    return read is None or "patience" in read


def settings_read(objective: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (a record's hyperparameters, or what a study asks) as a run of ``objective``
    records them: every one, or only those its own training reads; never :data:`OUTPUT_SETTINGS`."""
    read = SETTINGS_READ_BY_OBJECTIVE.get(objective)
    kept = {name: value for name, value in settings.items() if name not in OUTPUT_SETTINGS}
    return kept if read is None else {name: kept[name] for name in read}


def parse_switch(text: str | bool) -> bool:
    """``--save-weights`` (alone: on), ``--save-weights false``: the one reading of a switch's text."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise PromptworthError(f"a switch such as --save-weights is true or false, got {text!r}")


def format_switch(value: bool) -> str:
    """The flag's text of a switch (read by :func:`parse_switch`)."""
    return "true" if value else "false"


def parse_budgets(text: str) -> tuple[int, ...]:
    """One word of ``--budgets``: ``50`` -> ``(50,)``, ``50,200`` -> ``(50, 200)`` (the form the workflow
    passes); the one reading of the flag's text (a config gives a list; :class:`TrainConfig` checks the
    numbers either way)."""
    items = [item.strip() for item in str(text).split(",")]
    if items == [""]:
        return ()
    try:
        return tuple(int(item) for item in items)
    except ValueError:
        raise PromptworthError(f"training setting budgets must be step counts separated by commas (e.g. 50,200), "
                               f"got {text!r}") from None


def format_budgets(budgets: Sequence[int]) -> str:
    """The flag's text of a list of budgets: ``[50, 200]`` -> ``50,200`` (read by :func:`parse_budgets`)."""
    return ",".join(str(steps) for steps in budgets)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters; :func:`promptworth.cli.options.training` turns each field into a CLI flag."""

    protocol: str = field(default="steps", metadata={"choices": PROTOCOLS, "help": "steps: exactly max_steps (LM-BFF); epochs: epochs clamped to [min_steps, max_steps] (Le Scao & Rush)"})
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps (steps), or the most steps (epochs)"})
    min_steps: int = field(default=0, metadata={"help": "the fewest steps (epochs protocol)"})
    epochs: float = field(default=10.0, metadata={"help": "passes over the training set (epochs protocol)"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate of AdamW"})
    batch_size: int = field(default=8, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=32, metadata={"help": "evaluation batch size"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "share of the steps with a linear warmup"})
    schedule: str = field(default="linear", metadata={"choices": SCHEDULES, "help": "learning rate after the warmup: linear: decays to 0 at the end of the step budget; constant: stays at the peak (a run's first B steps are then a B-step run)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    max_length: int = field(default=128, metadata={"help": "tokens per sequence; the longest text field is cut"})
    eval_every: int = field(default=100, metadata={"help": "evaluate on dev every N steps (0: only at the end)"})
    patience: int = field(default=0, metadata={"help": "stop once N dev evaluations in a row have not beaten the best dev score (0: off, train the whole budget)"})
    min_epochs_before_patience: int = field(default=0, metadata={"help": "patience stops a run only once it has read each training example at least N times (N epochs' steps; 0: at any dev evaluation)"})
    min_steps_before_patience: int = field(default=0, metadata={"help": "patience stops a run only from this step on (0: at any dev evaluation)"})
    precision: str = field(default="auto", metadata={"choices": PRECISIONS, "help": "auto: bf16 autocast where the hardware has fast bf16 (a CPU with avx512_bf16 or AMX, an Ampere or later GPU), else fp32; fp16: autocast with loss scaling, on CUDA only (GPUs without bf16)"})
    engine: str = field(default="v2", metadata={"choices": ENGINES, "help": "how a run computes, not what it trains (docs/performance.md): v2: the second edition's pipeline; v3: the third edition's speed levers (eager attention at short lengths, clipping inside the fused AdamW step, AdamW on an embedding's touched rows, a frozen backbone's features computed once); v4: v3 and training batches packed without padding (causal Llama and Gemma-3 backbones); v5: v4 and a packed row's attention computed sequence by sequence; the numbers differ by bf16 rounding"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: none)"})
    budgets: tuple[int, ...] = field(default=(), metadata={
        "parse": parse_budgets, "format": format_budgets, "shown": "none", "list": True,
        "help": "step budgets, e.g. 50 200 (50,200 is read too: the workflow passes that form): at each, also evaluate test with the best dev state so far, as a run "
                "of that many steps would (multiples of eval_every; needs schedule constant and no warmup)"})
    # what a run writes beside its record (OUTPUT_SETTINGS): no hyperparameter, nothing it computes changes
    metrics: str = field(default="none", metadata={"choices": METRICS, "help": "every training step's loss and learning rate, and each dev score, written beside the record while the run trains: csv (<record>.metrics.csv) or tensorboard (event files in <record>.tensorboard/; needs the package tensorboard); promptworth train only"})
    save_weights: bool = field(default=False, metadata={
        "parse": parse_switch, "format": format_switch, "switch": True, "shown": "false",
        "help": "save the reported (best dev) checkpoint's trained weights in <record>.weights/ (safetensors; only the "
                "trained parameters of a parameter-efficient method), checksummed in the record; promptworth train only"})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type not in ("int", "float"):
                continue
            # inf or nan would train and then fail writing the record
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PromptworthError(f"training setting {f.name} must be a finite number, got {value!r}")
            if f.type == "int" and not isinstance(value, int):  # 2.5 steps would compare, count and loop oddly
                raise PromptworthError(f"training setting {f.name} must be an integer, got {value!r}")
        checks = {
            "protocol": self.protocol in PROTOCOLS,
            "precision": self.precision in PRECISIONS,
            "engine": self.engine in ENGINES,
            "max_steps": self.max_steps >= 1,
            "min_steps": 0 <= self.min_steps <= self.max_steps,
            "epochs": self.epochs > 0,
            "learning_rate": self.learning_rate > 0,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "weight_decay": self.weight_decay >= 0,
            "max_length": self.max_length >= 8,
            "eval_every": self.eval_every >= 0,
            "patience": self.patience >= 0,
            "min_epochs_before_patience": self.min_epochs_before_patience >= 0,
            "min_steps_before_patience": self.min_steps_before_patience >= 0,
            "max_grad_norm": self.max_grad_norm >= 0,
            "schedule": self.schedule in SCHEDULES,
            "metrics": self.metrics in METRICS,
            "save_weights": isinstance(self.save_weights, bool),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise PromptworthError(f"training setting {name} has an invalid value: {getattr(self, name)!r}")
        if self.patience and not self.eval_every:  # dev is then read once, at the end: nothing to stop on
            raise PromptworthError(
                f"training setting patience {self.patience} needs dev evaluations during training: eval_every is 0"
            )
        object.__setattr__(self, "budgets", self._checked_budgets())

    def _checked_budgets(self) -> tuple[int, ...]:
        """The budgets, sorted; each a positive whole number of steps at a dev evaluation, in a run
        whose first B steps are exactly a B-step run (constant rate, no warmup)."""
        budgets = self.budgets
        if isinstance(budgets, str) or not isinstance(budgets, Sequence):
            raise PromptworthError(f"training setting budgets must be a list of step counts, got {budgets!r}")
        for steps in budgets:
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise PromptworthError(f"training setting budgets must hold positive whole numbers of steps, got {steps!r}")
        if len(set(budgets)) != len(budgets):
            raise PromptworthError(f"training setting budgets names a budget twice: {list(budgets)}")
        if budgets and (self.schedule != "constant" or self.warmup_ratio):
            # a linear decay or a warmup follows the whole budget: step B of a longer run would not be
            # step B of a B-step run
            raise PromptworthError(
                f"training setting budgets {format_budgets(budgets)} needs schedule constant and warmup_ratio 0 "
                f"(got schedule {self.schedule}, warmup_ratio {self.warmup_ratio:g}): only then is a run's state at "
                "step B the state a B-step run ends with"
            )
        if budgets and not self.eval_every:
            raise PromptworthError(f"training setting budgets {format_budgets(budgets)} needs dev evaluations during "
                                   "training: eval_every is 0")
        for steps in budgets:
            if steps % self.eval_every:
                raise PromptworthError(
                    f"training setting budgets: {steps} is not a multiple of eval_every {self.eval_every}: a budget's "
                    "best state is chosen among the dev evaluations up to it, so it must fall on one"
                )
        return tuple(sorted(budgets))

    def total_steps(self, train_size: int) -> int:
        if self.protocol == "steps":
            return self.max_steps
        per_epoch = math.ceil(train_size / self.batch_size)
        return int(min(max(round(self.epochs * per_epoch), self.min_steps), self.max_steps))

    def patience_from(self, train_size: int) -> int:
        """The first step at which patience may stop a run on ``train_size`` examples: once it has
        taken ``min_steps_before_patience`` steps and read each example ``min_epochs_before_patience``
        times (that many epochs of ``ceil(train_size / batch_size)`` steps, ``loop.train_batches``' order)."""
        per_epoch = math.ceil(train_size / self.batch_size)
        return max(self.min_steps_before_patience, self.min_epochs_before_patience * per_epoch)


def examples_read(train_size: int, steps: int, batch_size: int) -> int:
    """How many of the training examples a run of ``steps`` steps read at least once: training
    batches walk a fresh permutation each epoch (``loop.train_batches``), so every example once
    the first epoch's ``ceil(train_size / batch_size)`` batches are done, else ``steps`` full batches."""
    if steps >= math.ceil(train_size / batch_size):
        return train_size
    return steps * batch_size


def epochs_read(train_size: int, steps: int, batch_size: int) -> float:
    """How many passes over the training set a run of ``steps`` steps made: its steps over an
    epoch's ``ceil(train_size / batch_size)`` (2.5: two whole passes and half the third's batches)."""
    return round(steps / math.ceil(train_size / batch_size), 4)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_from_mapping(settings: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a study's ``training`` section (unset keys keep their defaults)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise PromptworthError(f"unknown training setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return TrainConfig(**settings)


def training_args(settings: Mapping[str, Any]) -> list[str]:
    """``promptworth train`` flags for the keys of a study's ``training`` section, checked, in the
    order of :class:`TrainConfig`'s fields: the same settings in another order give the same flags."""
    config = config_from_mapping(settings)
    # a field with a format of its own gives its checked value (budgets sorted: [200, 50] is 50,200)
    return [item for f in fields(TrainConfig) if f.name in settings for item in (
        flag_of(f.name), f.metadata["format"](getattr(config, f.name)) if "format" in f.metadata else str(settings[f.name]))]
