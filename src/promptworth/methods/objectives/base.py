"""The base class of the objectives: what every method does whatever it scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from promptworth.backbones import flops, load
from promptworth.backbones.architecture import position_limit
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.extras.base import ExtraBehaviour
from promptworth.methods.features import Batch, Feature, base_batch
from promptworth.methods.specs import MethodSpec
from promptworth.methods.tunings.base import ParameterCount, TuningBehaviour, prepare


def length_problem(max_length: int, limit: int | None, added: int, method: str, model: str) -> str | None:
    """Why ``max_length`` tokens of input, after the ``added`` positions a tuning puts before them
    (a soft prompt's vectors, a prefix's keys: its option ``tokens``), do not fit the ``limit``
    positions a model reads; None when they do (or the model has no limit)."""
    if limit is None or max_length + added <= limit:
        return None
    where = "training setting max_length (--max-length, a study's training.max_length)"
    if not added:
        return f"training setting max_length {max_length} is more than {model} reads ({limit} positions); lower {where}"
    if added >= limit:
        return (f"method {method} puts {added} positions before the input (its option tokens), but {model} reads "
                f"{limit} positions in all; lower the option tokens (--option tokens=N, or the method's options)")
    return (f"training setting max_length {max_length} and the {added} positions method {method} puts before the "
            f"input (its option tokens) exceed the {limit} positions {model} reads: lower {where} to at most "
            f"{limit - added}, or the option tokens")


@dataclass(frozen=True)
class MethodParts:
    """A method's spec with the behaviours of its tuning and extras (:func:`promptworth.methods.build.build_method`
    resolves them from the registry), so that no objective branches on a part's name."""

    spec: MethodSpec
    tuning: TuningBehaviour
    extras: tuple[ExtraBehaviour, ...] = ()


class Method:
    """Base class of the objectives; subclasses set ``model_class`` and implement the hooks."""

    model_class: str = ""
    # True: the method trains and predicts through a library of its own (SetFit: the setfit package,
    # promptworth.training.setfit_training), not the step loop
    trains_itself: bool = False
    # the precision it always trains in, whatever the training setting (None: the setting's)
    fixed_precision: str | None = None

    def __init__(self, task: TaskSpec, backbone: load.Backbone, max_length: int, parts: MethodParts) -> None:
        spec = parts.spec
        self.spec = spec
        self.name = spec.name
        self.tuning = parts.tuning
        self.extras = parts.extras
        # the tuning's options, with those that depend on the model decided (fixlayers' layers)
        self.options = self.tuning.resolve_options(spec.resolved_options(), backbone.config, f"method {spec.name}")
        self.parameter_count: ParameterCount | None = None  # known once the model is loaded
        # positions a tuning adds before the input: a soft prompt's vectors, a prefix's keys
        self.input_vectors = self.tuning.input_vectors(self.options)
        self.prefix_positions = self.tuning.prefix_positions(self.options)
        problem = length_problem(max_length, position_limit(backbone.config), self.input_vectors + self.prefix_positions,
                                 spec.name, backbone.ref.name)
        if problem is not None:
            raise PromptworthError(problem)
        self.task = task
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.max_length = max_length

    # what the run record says about the method
    def describe(self) -> dict[str, Any]:
        return {"template": None, "template_name": None, "verbalizer": None}

    def parts(self) -> dict[str, Any]:
        """The record's ``method_parts``: objective, tuning and its options, extras."""
        return {"objective": self.spec.objective, "tuning": self.spec.tuning, "options": self.options,
                "extras": list(self.spec.extras)}

    def load_model(self) -> torch.nn.Module:
        """The objective's model, with the tuning applied (its trainable parameters set)."""
        model = self.load_objective_model()
        self.parameter_count = prepare(self.tuning, model, self.options, self.spec.objective, self.template_ids())
        if self.parameter_count.trainable == 0 and self.spec.tuning_spec.steps:
            raise PromptworthError(f"tuning {self.spec.tuning} leaves nothing to train in {type(model).__name__}")
        return model

    def template_ids(self) -> list[int]:
        """The tokens of the template's own text (none without a template)."""
        return []

    def load_objective_model(self) -> torch.nn.Module:
        return load.load_model(self.backbone.ref, self.model_class)

    def encode(self, row: Mapping[str, Any]) -> Feature:
        raise NotImplementedError

    def collate(self, features: Sequence[Feature]) -> Batch:
        return base_batch(features, self.tokenizer.pad_token_id)

    def scores(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(scores.float(), batch["labels"].long())

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.argmax(-1)

    def model_shape(self, model: torch.nn.Module) -> flops.ModelShape:
        """What the FLOP count needs of the model the method runs."""
        return flops.model_shape(model)

    def see_split(self, rows: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0) -> None:
        """Called once with the split's rows (train, dev, test) and the train seed before any row
        is encoded; a method that reads something of the split itself (the majority class, the
        demonstrations) takes it here."""

    def train_feature(self, features: Sequence[Feature], index: int, step: int) -> Feature:
        """The training example ``index`` as the training step ``step`` reads it: the feature
        encoded once, unless the method encodes it afresh at each step (sampled demonstrations)."""
        return features[index]

    def content_free(self) -> list[Feature]:
        """Features of the content-free inputs a calibrated method divides by (none: no calibration)."""
        return [feature for extra in self.extras for feature in extra.content_free(self)]

    def rescore(self, scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """An evaluation's label scores rescored by the content-free inputs' (``reference``)."""
        for extra in self.extras:
            scores = extra.rescore(scores, reference)
        return scores

    def frozen_features(self, model: torch.nn.Module) -> bool:
        """Whether this method's scores are a trained head over features a frozen backbone computes
        the same way at every step (nothing before the head trains, no dropout): features that
        could be computed once (:meth:`keep_frozen_features`). None here; the head objective's probe."""
        return False

    def keep_frozen_features(self) -> None:
        """From now on compute each distinct sequence's frozen features once and keep them for the
        run (only where :meth:`frozen_features` says they are)."""
        raise NotImplementedError(f"method {self.name} has no frozen features to keep")

    def extra(self, cls: type) -> Any:
        """The method's extra of behaviour ``cls`` (None: it has none)."""
        return next((extra for extra in self.extras if isinstance(extra, cls)), None)
