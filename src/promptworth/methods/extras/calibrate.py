"""``calibrate``: contextual calibration (Zhao et al. 2021): label probabilities divided by their mean
over content-free inputs (:data:`CONTENT_FREE` in every field the template reads), then normalised."""

from __future__ import annotations

from typing import Any

import torch

from promptworth.errors import PromptworthError
from promptworth.methods.extras.base import ExtraBehaviour
from promptworth.methods.features import Feature
from promptworth.methods.templates import FieldRef

# Content-free inputs of contextual calibration (Zhao et al. 2021, their defaults): every text
# field of a row set to each of them.
CONTENT_FREE = ("N/A", "", "[MASK]")


def calibrate(scores: torch.Tensor, content_free_scores: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): label log-probabilities (a softmax over
    ``scores``' labels) minus the log of the content-free inputs' mean probabilities, normalised
    again; i.e. ``q = normalise(p / mean_cf(p_cf))``, in log space. Both are (examples, labels)."""
    reference = torch.softmax(content_free_scores.float(), dim=-1).mean(dim=0)
    return torch.log_softmax(torch.log_softmax(scores.float(), dim=-1) - torch.log(reference), dim=-1)


class Calibrate(ExtraBehaviour):
    def check(self, method: Any) -> None:
        task = method.task
        if task.is_regression or method.choice_task:
            raise PromptworthError(f"method {method.name}: calibration needs a classification task with fixed label "
                                   f"words; {task.name} has {'scores' if task.is_regression else 'row-dependent words'}")

    def content_free(self, method: Any) -> list[Feature]:
        fields = {part.name for part in method.encoder.template.parts if isinstance(part, FieldRef)}
        return [method.encode({**{name: text for name in fields}, "label": 0}) for text in CONTENT_FREE]

    def rescore(self, scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return calibrate(scores, reference)
