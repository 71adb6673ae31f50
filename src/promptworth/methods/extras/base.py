"""An extra's behaviour: the hooks a prompt method calls, each doing nothing unless the extra needs it.

An extra is one :class:`ExtraBehaviour` subclass plus one entry of
:data:`promptworth.methods.registry.EXTRAS` naming it (``behaviour``). The method (a
:class:`promptworth.methods.objectives.prompt.PromptMethod`) calls every extra's hook where the
hook's name says: ``check`` while it is set up, ``see_split`` once with the split's rows,
``encodings`` for each row it encodes, ``train_feature`` for each training example a step reads,
``content_free`` and ``rescore`` while it evaluates, ``parts`` when the record describes it. An
extra module imports no module of the registry (the registry names it).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.features import Feature
from promptworth.methods.prompt_encoding import EncodedPrompt

Rows = Mapping[str, Sequence[Mapping[str, Any]]]


class ExtraBehaviour:
    """What an extra does to a prompt method (``method``: the method being set up or run)."""

    def check(self, method: Any) -> None:
        """Refuse a task or template the extra cannot work with (a :class:`PromptworthError`)."""

    def parts(self, method: Any) -> dict[str, Any]:
        """What the record's ``method_parts`` says of the extra (merged after the method's own)."""
        return {}

    def see_split(self, method: Any, rows: Rows, seed: int) -> None:
        """The split's rows (train, dev, test) and the train seed, before any row is encoded."""

    def encodings(self, method: Any, row: Mapping[str, Any]) -> list[EncodedPrompt] | None:
        """The row's encodings when the extra changes them (None: the plain encoding)."""
        return None

    def train_feature(self, method: Any, features: Sequence[Feature], index: int, step: int) -> Feature | None:
        """The training example ``index`` as step ``step`` reads it, when the extra encodes it afresh."""
        return None

    def content_free(self, method: Any) -> list[Feature]:
        """Features of inputs whose scores the evaluation's scores are rescored by (none by default)."""
        return []

    def rescore(self, scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The label scores of an evaluation, given the scores of the content-free inputs."""
        return scores
