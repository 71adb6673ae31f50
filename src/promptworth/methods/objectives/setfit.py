"""``setfit``: SetFit (Tunstall et al. 2022), with the setfit package. A sentence encoder (a
sentence-transformers folder; all-MiniLM-L6-v2 in a study, the objective's own backbone:
:data:`promptworth.methods.registry.OBJECTIVE_BACKBONES`) is tuned on pairs of training examples
(cosine similarity 1 for the same class, 0 for another: the tuning ``contrastive``), then a logistic
regression (scikit-learn's, setfit's default head) is fit on its embeddings of the training
examples, and predicts every label.

SetFit trains through its own library, not the step loop (``trains_itself``:
:mod:`promptworth.training.setfit_training`), in fp32 (setfit's own precision). Its input is one text:
the row's text fields joined by a space (a sentence pair as one text). Classification only: a
regression task (STS-B) or a choice task (COPA) is refused. A training set of one class (a small
random draw may hold one) has no pair of another class to tune on and no second class for the
logistic regression: the model then predicts that class for every row, as any classifier that saw
one class would, without a step (:attr:`SetFitMethod.only_class`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from promptworth.backbones import flops, load
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.features import Feature
from promptworth.methods.objectives.base import Method, MethodParts
from promptworth.methods.objectives.head import choice_fields, head_segments
from promptworth.methods.tunings.base import ParameterCount, prepare

# The record's method_parts.head: setfit's default head, scikit-learn's defaults (sklearn warns when its fit
# does not converge)
HEAD = "scikit-learn LogisticRegression, its defaults (setfit's default head)"
SETFIT_INSTALL = "pip install --no-deps 'setfit==1.2.0' 'evaluate==0.4.6' (or run `make`)"


class SetFitMethod(Method):
    """A sentence encoder and a logistic-regression head, trained by the setfit package (see the module)."""

    trains_itself = True
    fixed_precision = "fp32"
    # the one class of a training set that holds one (see_split; None: two or more): predicted for every row
    only_class: int | None = None

    def __init__(
        self, task: TaskSpec, backbone: load.Backbone, max_length: int, parts: MethodParts, template_name: str | None = None
    ) -> None:
        super().__init__(task, backbone, max_length, parts)
        if task.is_regression or choice_fields(task):
            kind = "a regression task" if task.is_regression else "a multiple-choice task"
            raise PromptworthError(f"method {self.name}: SetFit's logistic regression picks a class; task {task.name} "
                                   f"is {kind}")
        for package in ("setfit", "sentence_transformers", "sklearn"):
            if importlib.util.find_spec(package) is None:
                raise PromptworthError(f"method {self.name} needs the package {package}: {SETFIT_INSTALL}")
        if backbone.ref.options.dtype != "fp32":
            raise PromptworthError(f"method {self.name} trains in fp32 (setfit's own training): give the model "
                                   f"{backbone.ref.name} no dtype {backbone.ref.options.dtype}")
        if not (Path(backbone.ref.path) / "modules.json").is_file():
            raise PromptworthError(f"method {self.name} trains a sentence encoder (a sentence-transformers folder, with "
                                   f"modules.json), such as all-minilm-l6-v2, its own; model {backbone.ref.name} is not one")

    def parts(self) -> dict[str, Any]:
        """The parts, and the head (known before training: a pilot run of the lr_grid that this run
        repeats must plan the same parts; a fit that does not converge warns in the run's log)."""
        return {**super().parts(), "head": HEAD}

    def text(self, row: Mapping[str, Any]) -> str:
        """The one text SetFit reads of a row: its text fields (the head objective's segments) joined by a space."""
        text = " ".join(segment for segment in head_segments(self.task, row)[0] if segment)
        if not text:
            raise PromptworthError(f"{self.task.name} row idx {row.get('idx')}: its input text is empty (remove the row "
                                   "from the split)")
        return text

    def encode(self, row: Mapping[str, Any]) -> Feature:
        """The row's tokens as the encoder reads them (cut at max_length): what its FLOPs count."""
        ids = self.tokenizer(self.text(row), truncation=True, max_length=self.max_length)["input_ids"]
        return Feature(sequences=[list(ids)], label=float(row["label"]))

    def see_split(self, rows: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0) -> None:
        classes = {int(row["label"]) for row in rows["train"]}
        self.only_class = classes.pop() if len(classes) == 1 else None

    def load_model(self) -> Any:
        """A ``setfit.SetFitModel``: the encoder from its folder (never the hub), every weight trainable,
        and an unfitted logistic regression."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from sentence_transformers import SentenceTransformer
        from setfit import SetFitModel
        from sklearn.linear_model import LogisticRegression

        transformers.utils.logging.disable_progress_bar()  # as promptworth.backbones.load.load_model
        body = SentenceTransformer(self.backbone.ref.path, local_files_only=True)
        body.max_seq_length = self.max_length
        self.parameter_count = prepare(self.tuning, body, self.options, self.spec.objective)
        return SetFitModel(model_body=body, model_head=LogisticRegression())

    def head_fitted(self, model: Any) -> None:
        """Count the fitted head's parameters in: its weights and biases."""
        head = model.model_head
        weights = int(head.coef_.size + head.intercept_.size)
        assert self.parameter_count is not None
        self.parameter_count = ParameterCount(self.parameter_count.trainable + weights, self.parameter_count.total + weights)

    def model_shape(self, model: Any) -> flops.ModelShape:
        return flops.model_shape(model.model_body[0].auto_model)

    def predict_texts(self, model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """The label index the fitted model predicts for each text."""
        if not texts:
            return np.zeros(0, dtype=np.int64)
        predicted = model.predict(list(texts), batch_size=batch_size, as_numpy=True, use_labels=False,
                                  show_progress_bar=False)
        return np.asarray(predicted, dtype=np.int64)
