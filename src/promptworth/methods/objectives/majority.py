"""``majority``: no model; every example gets the evaluation (test) set's most frequent class,
LM-BFF's reference row. The training split's majority class is recorded too; ties go to the class
listed first in the task's labels (on balanced K-shot splits every class ties)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.backbones import flops, load
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.features import Batch, Feature, base_batch
from promptworth.methods.objectives.base import Method, MethodParts


def majority_class(labels: Sequence[float], num_labels: int) -> int:
    """The most frequent label; a tie goes to the label listed first (lowest index)."""
    counts = [0] * num_labels
    for label in labels:
        counts[int(label)] += 1
    return max(range(num_labels), key=lambda label: (counts[label], -label))


class MajorityMethod(Method):
    """No model: every example gets the evaluation set's most frequent class (see the module)."""

    def __init__(
        self, task: TaskSpec, backbone: load.Backbone, max_length: int, parts: MethodParts, template_name: str | None = None
    ) -> None:
        super().__init__(task, backbone, max_length, parts)
        if task.is_regression:
            raise PromptworthError(f"method {self.name}: task {task.name} is a regression task; it has no majority class")
        self.classes: dict[str, Any] | None = None  # the classes found, for the record
        self.predicted: int | None = None  # the label index every example gets

    def parts(self) -> dict[str, Any]:
        return {**super().parts(), "majority": self.classes}

    def see_split(self, rows: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0) -> None:
        evaluation = majority_class([row["label"] for row in rows["test"]], self.task.num_labels)
        train = majority_class([row["label"] for row in rows["train"]], self.task.num_labels)
        self.classes = {"evaluation": self.task.labels[evaluation], "train": self.task.labels[train],
                        "rule": "most frequent label; a tie goes to the label listed first"}
        self.predicted = evaluation

    def load_objective_model(self) -> torch.nn.Module:
        return torch.nn.Module()  # nothing to load: the prediction needs no model

    def model_shape(self, model: torch.nn.Module) -> flops.ModelShape:
        return flops.ModelShape(non_embedding_params=0, layers=0, hidden=0)

    def encode(self, row: Mapping[str, Any]) -> Feature:
        return Feature(sequences=[[]], label=float(row["label"]))

    def collate(self, features: Sequence[Feature]) -> Batch:
        batch = base_batch(features, 0)
        batch.update(output_rows=0, reads=0)
        return batch

    def scores(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        scores = torch.zeros(batch["n_examples"], self.task.num_labels)
        scores[:, self.predicted] = 1.0
        return scores
