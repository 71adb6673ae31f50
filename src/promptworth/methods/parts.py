"""The parts a method is made of, declared (torch-free): an option of a part, a tuning, an extra.
The entries themselves are in :mod:`promptworth.methods.registry`."""

from __future__ import annotations

import importlib

from dataclasses import dataclass, field
from typing import Any, Mapping

from promptworth.errors import PromptworthError


@dataclass(frozen=True)
class Option:
    """One option of a tuning: an integer or a number in ``[minimum, maximum)`` (None: unbounded),
    or one of ``choices``; a default of None is decided from the model when the method is built."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None  # exclusive
    choices: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> Any:
        if self.choices:
            if value not in self.choices:
                raise PromptworthError(f"{where}: option {self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        is_int = isinstance(value, int) and not isinstance(value, bool)
        ok = is_int if self.kind is int else (is_int or isinstance(value, float))
        if ok and self.minimum is not None and value < self.minimum:
            ok = False
        if ok and self.maximum is not None and value >= self.maximum:
            ok = False
        if not ok or value != value:  # NaN
            kind = "an integer" if self.kind is int else "a number"
            bounds = (f" >= {self.minimum:g}" if self.minimum is not None else "") + (
                f" and < {self.maximum:g}" if self.maximum is not None else "")
            raise PromptworthError(f"{where}: option {self.name} must be {kind}{bounds}, got {value!r}")
        return self.kind(value)


@dataclass(frozen=True)
class Tuning:
    """Which parameters train. ``training``: default hyperparameters (``TrainConfig`` fields) of
    every method with this tuning, and where they come from (``source``)."""

    name: str
    trains: str
    objectives: tuple[str, ...]
    options: tuple[Option, ...] = ()
    training: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    steps: bool = True  # False: no training step at all (the model is used as it is)
    # True: before its first step the model computes what the pretrained model computes (nothing
    # new, or new parameters that start at a value that changes no output), so a prompt objective
    # can predict with it untrained: at training-set size 0 (MethodSpec.size_zero_problem)
    unchanged_at_start: bool = False
    # "module:Class" of its :class:`promptworth.methods.tunings.base.TuningBehaviour`: what it does to the model
    behaviour: str = ""

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True)
class Extra:
    """A part that changes a prompt objective's input or scores, on top of any tuning."""

    name: str
    does: str
    objectives: tuple[str, ...]
    paper: str = ""
    # options of the extra, set like a tuning's (``--option``, a definition's ``options``); their
    # names never repeat a tuning's, so one mapping holds both (tests/test_method_specs.py)
    options: tuple[Option, ...] = ()
    # default hyperparameters (``TrainConfig`` fields) of a method with this extra, over its tuning's
    training: Mapping[str, Any] = field(default_factory=dict)
    excludes: tuple[str, ...] = ()  # extras it does not combine with
    needs_training_rows: bool = False  # it reads the training set (demonstrations, a search over it)
    # "module:Class" of its :class:`promptworth.methods.extras.base.ExtraBehaviour` (None: it does
    # nothing while a method trains, as a search's extras, whose result file is applied instead)
    behaviour: str | None = None
    # what a search finds for a method with this extra ("words", "template"); None: no search
    search: str | None = None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


def load(path: str) -> type:
    """The class a part's ``behaviour`` names (``"module:Class"``), imported only when a method is built."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
