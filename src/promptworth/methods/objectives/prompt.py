"""``prompt``, ``null`` and ``misleading``: the task's template and label words (``null``: its
``null_words``, Le Scao & Rush's "null verbalizer"; ``misleading``: its ``misleading_words``, each
label another's word, Webson & Pavlick); label scores are the (log-)probabilities of the label words
at the answer slot, trained with cross-entropy over the labels (LM-BFF, PET).

A method is an objective with a tuning and extras (:mod:`promptworth.methods.registry`); the
objective's class knows which model it needs (``model_class``), how to encode a row (``encode``),
pad encoded rows into tensors (``collate``), score a batch (``scores``: one row per example, one
column per label), and its loss and predictions. The tuning's behaviour
(:mod:`promptworth.methods.tunings`) decides which parameters train and how the backbone's states
are read; the extras' behaviours (:mod:`promptworth.methods.extras`: calibration, demonstrations)
change the input or the scores through hooks, never by a branch on their names here.

Regression (STS-B) as LM-BFF: ``prompt`` scores the two label words ("No" = low, "Yes" = high),
the prediction is ``low + (high - low) * P("Yes")`` and the loss is the KL divergence to the soft
target ``(y - low) / (high - low)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from promptworth.backbones import load
from promptworth.backbones.architecture import lm_parts
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods import prompt_encoding, templates, verbalizers
from promptworth.methods.features import Batch, Feature, base_batch, flat_index, model_inputs
from promptworth.methods.objectives.base import Method, MethodParts
from promptworth.methods.objectives.head import choice_fields
from promptworth.methods.registry import WORDS_KEYS
from promptworth.methods.templates import Chosen, SEARCHED_TEMPLATE

# Score range of regression tasks (LM-BFF's ``bound_mapping``).
REGRESSION_RANGES: dict[str, tuple[float, float]] = {"STS-B": (0.0, 5.0)}


# ---------------------------------------------------------------------------------------------
# Prompt-based fine-tuning


def _rows(model: torch.nn.Module, weight: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """The output layer's rows of the label words; where the layer is the input embedding and its
    gradient is its rows (training.engine's sparse embedding), read so too: the same values."""
    embedding = model.get_input_embeddings()
    if getattr(embedding, "sparse", False) and weight is embedding.weight:
        return F.embedding(vocab, weight, sparse=True)
    return weight[vocab]


class PromptMethod(Method):
    def __init__(
        self, task: TaskSpec, backbone: load.Backbone, max_length: int, parts: MethodParts,
        template_name: str | None = None, chosen: Chosen | None = None,
    ) -> None:
        super().__init__(task, backbone, max_length, parts)
        self.words_key = WORDS_KEYS[parts.spec.objective]
        self.model_class = "masked_lm" if backbone.kind == "mlm" else "causal_lm"
        chosen = chosen or Chosen()
        if chosen.template is not None:
            self.template_name, source = SEARCHED_TEMPLATE, chosen.template
        else:
            self.template_name, source = templates.task_template(task, template_name, backbone.kind)
        words = chosen.label_words if chosen.label_words is not None else getattr(task, self.words_key)
        if not words:
            raise PromptworthError(f"task {task.name} has no {self.words_key}: method {self.name!r} cannot run on it")
        try:
            self.verbalizer = verbalizers.build_verbalizer(task.labels, words, self.words_key)
            self.encoder = prompt_encoding.PromptEncoder(
                template=templates.parse_template(source), verbalizer=self.verbalizer,
                tokenizer=self.tokenizer, kind=backbone.kind, max_length=max_length,
            )
        except PromptworthError as exc:
            raise PromptworthError(f"task {task.name}, template {self.template_name!r}: {exc}") from None
        self.choice_task = bool(choice_fields(task))
        for extra in self.extras:  # in the registry's order (build_method): calibration's check comes first
            extra.check(self)
        if task.is_regression:
            if task.name not in REGRESSION_RANGES:
                raise PromptworthError(f"regression task {task.name} has no score range in methods.REGRESSION_RANGES")
            self.low, self.high = REGRESSION_RANGES[task.name]

    def parts(self) -> dict[str, Any]:
        parts = super().parts()
        for extra in self.extras:
            parts.update(extra.parts(self))
        return parts

    def see_split(self, rows: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0) -> None:
        for extra in self.extras:
            extra.see_split(self, rows, seed)

    def describe(self) -> dict[str, Any]:
        return {"template": self.encoder.template.source, "template_name": self.template_name,
                "verbalizer": self.verbalizer.source}

    def template_ids(self) -> list[int]:
        text = " ".join(part.text.strip() for part in self.encoder.template.parts if isinstance(part, templates.Text))
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, row: Mapping[str, Any]) -> Feature:
        return self.feature(self.encodings(row), row["label"])

    def encodings(self, row: Mapping[str, Any]) -> list[prompt_encoding.EncodedPrompt]:
        """The row encoded: once, or as an extra encodes it (with demonstrations; once per set)."""
        for extra in self.extras:
            encoded = extra.encodings(self, row)
            if encoded is not None:
                return encoded
        return [self.encoder.encode(row)]

    def feature(self, encoded_prompts: Sequence[prompt_encoding.EncodedPrompt], label: float) -> Feature:
        """One feature of one or more encodings of a row; every encoding's candidates count, so a
        label's score is the mean over the encodings (and the label's words)."""
        feature = Feature(sequences=[], label=float(label))
        causal = self.backbone.kind == "causal"
        candidate = 0
        for encoded in encoded_prompts:
            multi = any(len(ids) > 1 for words in encoded.words for ids in words)
            base = len(feature.sequences)
            if not (causal and multi):
                feature.sequences.append(encoded.input_ids)
            for label_index, words in enumerate(encoded.words):
                for ids in words:
                    if causal and multi:
                        # teacher forcing: the word's tokens but the last follow the prompt
                        seq = len(feature.sequences)
                        feature.sequences.append(encoded.input_ids + ids[:-1])
                        start = encoded.slot - 1
                    elif causal:
                        seq, start = base, encoded.slot - 1
                    else:
                        seq, start = base, encoded.slot
                    feature.terms.extend((seq, start + j, token, candidate) for j, token in enumerate(ids))
                    feature.candidate_label.append(label_index)
                    candidate += 1
        return feature

    def train_feature(self, features: Sequence[Feature], index: int, step: int) -> Feature:
        for extra in self.extras:
            feature = extra.train_feature(self, features, index, step)
            if feature is not None:
                return feature
        return features[index]

    def collate(self, features: Sequence[Feature]) -> Batch:
        batch = base_batch(features, self.tokenizer.pad_token_id)
        seq_offset, cand_offset = 0, 0
        term_seq, term_pos, term_tok, term_cand, cand_label = [], [], [], [], []
        n_labels = self.verbalizer.num_labels
        for example, f in enumerate(features):
            for seq, pos, tok, cand in f.terms:
                term_seq.append(seq_offset + seq)
                term_pos.append(pos)
                term_tok.append(tok)
                term_cand.append(cand_offset + cand)
            cand_label.extend(example * n_labels + label for label in f.candidate_label)
            seq_offset += len(f.sequences)
            cand_offset += len(f.candidate_label)
        cand_label_t = torch.tensor(cand_label, dtype=torch.long)
        counts = torch.zeros(len(features) * n_labels).index_add_(0, cand_label_t, torch.ones(len(cand_label)))
        # single-token words all read at one position per example: raw logits of the label words
        # give the same softmax over labels as log-probabilities, without the full vocabulary
        one_read = len(term_seq) == len(cand_label) and len({(s, p) for s, p in zip(term_seq, term_pos)}) == len(features)
        batch.update(
            term_seq=torch.tensor(term_seq), term_pos=torch.tensor(term_pos), term_tok=torch.tensor(term_tok),
            term_cand=torch.tensor(term_cand), cand_label=cand_label_t, label_counts=counts.clamp(min=1),
            n_candidates=len(cand_label), restricted=one_read,
        )
        # what `scores` computes of the output layer (for the FLOP count): the label words' rows,
        # or (several or multi-token words; a masked LM's head with its transform) every row
        reads = len(set(zip(term_seq, term_pos)))
        if one_read and self.backbone.kind == "causal":
            rows = len(set(term_tok))
        else:
            rows = self.backbone.config.vocab_size + (self.backbone.config.hidden_size if self.backbone.kind == "mlm" else 0)
        batch.update(output_rows=rows, reads=reads)
        return batch

    def load_objective_model(self) -> torch.nn.Module:
        model = super().load_objective_model()
        lm_parts(model)  # fail early if the head cannot be found
        return model

    def scores(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        base, head = lm_parts(model)
        hidden = self.tuning.hidden_states(model, base, model_inputs(batch))
        # read only the answer positions: the LM head never runs over the whole sequence
        keys = flat_index(batch, batch["term_seq"], batch["term_pos"])
        unique, where = torch.unique(keys, return_inverse=True)
        states = hidden.reshape(-1, hidden.shape[-1])[unique]
        output = model.get_output_embeddings()
        if batch["restricted"] and head is output:
            vocab, column = torch.unique(batch["term_tok"], return_inverse=True)
            bias = output.bias[vocab] if getattr(output, "bias", None) is not None else None
            logits = F.linear(states, _rows(model, output.weight, vocab), bias).float()
            term_scores = logits[where, column]
        else:
            logprobs = torch.log_softmax(head(states).float(), dim=-1)
            term_scores = logprobs[where, batch["term_tok"]]
        candidates = term_scores.new_zeros(batch["n_candidates"]).index_add(0, batch["term_cand"], term_scores)
        n_labels = self.verbalizer.num_labels
        sums = candidates.new_zeros(batch["n_examples"] * n_labels).index_add(0, batch["cand_label"], candidates)
        return (sums / batch["label_counts"]).view(batch["n_examples"], n_labels)

    def loss(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.task.is_regression:
            target = ((batch["labels"] - self.low) / (self.high - self.low)).clamp(0, 1)
            target = torch.stack([1 - target, target], dim=-1)
            return F.kl_div(torch.log_softmax(scores.float(), -1), target, reduction="batchmean")
        return super().loss(scores, batch)

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        if self.task.is_regression:
            return self.low + (self.high - self.low) * torch.softmax(scores.float(), -1)[:, 1]
        return super().predict(scores)


# ---------------------------------------------------------------------------------------------
# Head-based fine-tuning
