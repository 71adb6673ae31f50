"""``head``: a new classification head on the same backbone (``AutoModelForSequenceClassification``):
the [CLS] token for masked LMs, the last real token for causal LMs. The input is ``text_a`` and,
as a second segment, the other text fields joined by spaces (causal models: all joined). A row
whose input text is empty (every field blank) is an error naming its ``idx``: the head would read
a padding position (causal) or a bare [CLS], never the row. Choice tasks (COPA) are multiple
choice: each (premise, "<question>: <choice>") pair gets one score from a one-output head, and the
choices' scores are the label scores. Regression (STS-B): a one-output head trained with MSE."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from promptworth.backbones import load
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.features import Batch, Feature, base_batch, flat_index, model_inputs
from promptworth.methods.frozen_features import FrozenFeatures, dropout_free
from promptworth.methods.objectives.base import Method, MethodParts


# Row fields that are bookkeeping, never model input.
NON_INPUT_FIELDS = {"idx", "label", "group"}


def choice_fields(task: TaskSpec) -> list[str]:
    """``choice1``, ``choice2``, ... when the task's labels pick one of them (COPA)."""
    names = [f"choice{i + 1}" for i in range(task.num_labels)]
    return names if not task.is_regression and all(n in task.fields for n in names) else []


def head_segments(task: TaskSpec, row: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The head's input: one (text_a, rest) pair per sequence; several for choice tasks."""
    choices = choice_fields(task)
    skip = NON_INPUT_FIELDS | set(choices) | {"question"} if choices else NON_INPUT_FIELDS
    rest = [
        str(row[name]).strip() for name in task.text_fields
        if name != "text_a" and name not in skip and not name.endswith("_index") and row.get(name) is not None
    ]
    first = str(row["text_a"]).strip()
    if choices:
        question = f"{row['question']}: " if row.get("question") else ""
        return [(first, " ".join(rest + [question + str(row[c]).strip()]).strip()) for c in choices]
    return [(first, " ".join(rest))] if rest else [(first,)]


class HeadMethod(Method):
    model_class = "sequence_classification"

    def __init__(
        self, task: TaskSpec, backbone: load.Backbone, max_length: int, parts: MethodParts, template_name: str | None = None
    ) -> None:
        super().__init__(task, backbone, max_length, parts)
        self.multiple_choice = bool(choice_fields(task))
        self.outputs = 1 if (task.is_regression or self.multiple_choice) else task.num_labels
        self.kept: FrozenFeatures | None = None  # a frozen backbone's features, once kept (keep_frozen_features)

    def load_objective_model(self) -> torch.nn.Module:
        return load.load_model(
            self.backbone.ref, self.model_class, num_labels=self.outputs, pad_token_id=self.tokenizer.pad_token_id
        )

    def encode(self, row: Mapping[str, Any]) -> Feature:
        feature = Feature(sequences=[], label=float(row["label"]))
        causal = self.backbone.kind == "causal"
        for segments in head_segments(self.task, row):
            if not any(segments):
                raise PromptworthError(
                    f"{self.task.name} row idx {row.get('idx')}: its input text is empty; the head "
                    "would read no token of it (remove the row from the split)"
                )
            if causal:
                encoded = self.tokenizer(" ".join(segments), truncation=True, max_length=self.max_length)
            else:
                encoded = self.tokenizer(*segments, truncation=True, max_length=self.max_length)
            ids = list(encoded["input_ids"])
            if not ids:
                raise PromptworthError(f"{self.task.name} row idx {row.get('idx')}: its input text gives no token")
            feature.sequences.append(ids)
            if "token_type_ids" in encoded and not causal:
                feature.type_ids = (feature.type_ids or []) + [list(encoded["token_type_ids"])]
            feature.read.append(len(ids) - 1 if causal else 0)
        return feature

    def frozen_features(self, model: torch.nn.Module) -> bool:
        """A causal backbone's states read explicitly (below) by a head, nothing of the backbone
        trained, nothing added before the input, no dropout: the linear probe of a frozen LM."""
        return (self.backbone.kind == "causal" and isinstance(getattr(model, "score", None), torch.nn.Module)
                and not any(p.requires_grad for p in model.base_model.parameters())
                and not self.input_vectors and not self.prefix_positions and dropout_free(model))

    def keep_frozen_features(self) -> None:
        self.kept = FrozenFeatures()

    def collate(self, features: Sequence[Feature]) -> Batch:
        if self.kept is not None:
            batch = self.kept.collate(features, self.tokenizer.pad_token_id)
        else:
            batch = base_batch(features, self.tokenizer.pad_token_id)
            batch["read"] = torch.tensor([r for f in features for r in f.read])
        # the classifier, once per sequence
        batch.update(output_rows=self.outputs, reads=sum(len(f.sequences) for f in features))
        return batch

    @staticmethod
    def _read_states(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The backbone's state at the read position of each sequence: the last real token of each
        right-padded (or packed) sequence, read explicitly."""
        hidden = model.base_model(**model_inputs(batch)).last_hidden_state
        sequences = torch.arange(len(batch["read"]), device=hidden.device)
        return hidden.reshape(-1, hidden.shape[-1])[flat_index(batch, sequences, batch["read"])]

    def scores(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        score = getattr(model, "score", None)
        if self.kept is not None:
            logits = score(self.kept.states_of(batch, lambda new: self._read_states(model, new)))
        elif self.backbone.kind == "causal" and isinstance(score, torch.nn.Module):
            logits = score(self._read_states(model, batch))
        else:
            logits = model(**model_inputs(batch)).logits
        logits = logits.float()
        if self.multiple_choice:
            return logits.view(batch["n_examples"], -1)
        if self.task.is_regression:
            return logits.view(-1, 1)
        return logits

    def loss(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.task.is_regression:
            return F.mse_loss(scores[:, 0], batch["labels"])
        return super().loss(scores, batch)

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        return scores[:, 0] if self.task.is_regression else super().predict(scores)
