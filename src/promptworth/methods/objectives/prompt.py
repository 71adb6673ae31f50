"""Training methods: each turns a batch into label scores and a loss; the training loop never
branches on the method.

A method is an objective with a tuning (:mod:`promptworth.methods.specs` names them and every
built-in method). The objective's class here knows which model it needs (``model_class``), how to
encode a row (``encode``), how to pad a list of encoded rows into tensors (``collate``), how to
score a batch (``scores``: one row per example, one column per label), and its loss and
predictions; the tuning (:mod:`promptworth.methods.tunings`) decides which of the loaded model's
parameters train. The objectives:

- ``prompt``: the task's template and label words; label scores are the (log-)probabilities of the
  label words at the answer slot, trained with cross-entropy over the labels (LM-BFF, PET).
- ``null``: the same with the task's ``null_words`` (Le Scao & Rush's "null verbalizer").
- ``head``: a new classification head on the same backbone (``AutoModelForSequenceClassification``):
  the [CLS] token for masked LMs, the last real token for causal LMs. The input is ``text_a`` and,
  as a second segment, the other text fields joined by spaces (causal models: all joined). A row
  whose input text is empty (every field blank) is an error naming its ``idx``: the head would
  read a padding position (causal) or a bare [CLS], never the row.
  Choice tasks (COPA) are multiple choice: each (premise, "<question>: <choice>") pair gets one
  score from a one-output head, and the choices' scores are the label scores.
- ``majority``: no model; every example gets the evaluation (test) set's most frequent class,
  LM-BFF's reference row. The training split's majority class is recorded too; ties go to the
  class listed first in the task's labels (on balanced K-shot splits every class ties).

Extras: ``calibrate`` (prompt objectives) is Zhao et al.'s contextual calibration: the label
probabilities are divided by their mean over content-free inputs (``method_specs.CONTENT_FREE``
in every field the template reads), then normalised (:func:`calibrate`). ``context`` (in-context
learning) and ``demos`` (LM-BFF's sampled demonstrations) put training examples with their label
words beside the input (:mod:`promptworth.methods.demo_sampling`); with ``demos`` an example at dev and
test is ``sets`` sequences, one per sampled set, whose label scores the candidate mean averages.

Regression (STS-B) as LM-BFF: ``prompt`` scores the two label words ("No" = low, "Yes" = high),
the prediction is ``low + (high - low) * P("Yes")`` and the loss is the KL divergence to the soft
target ``(y - low) / (high - low)``; ``head`` is a one-output regression head trained with MSE.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods import demo_sampling as demos, prompt_encoding, templates as prompts, tunings, verbalizers
from promptworth.backbones import load
from promptworth.methods.registry import CONTENT_FREE
from promptworth.methods.features import Batch, Feature, base_batch, model_inputs
from promptworth.methods.objectives.head import choice_fields
from promptworth.methods.templates import SEARCHED_TEMPLATE, Chosen
from promptworth.methods.specs import MethodSpec
from promptworth.backbones.architecture import lm_parts
from promptworth.methods.objectives.base import Method

# Score range of regression tasks (LM-BFF's ``bound_mapping``).
REGRESSION_RANGES: dict[str, tuple[float, float]] = {"STS-B": (0.0, 5.0)}


# ---------------------------------------------------------------------------------------------
# Prompt-based fine-tuning


class PromptMethod(Method):
    words_key = "label_words"

    def __init__(
        self, task: TaskSpec, backbone: load.Backbone, max_length: int, spec: MethodSpec,
        template_name: str | None = None, chosen: Chosen | None = None,
    ) -> None:
        super().__init__(task, backbone, max_length, spec)
        self.model_class = "masked_lm" if backbone.kind == "mlm" else "causal_lm"
        chosen = chosen or Chosen()
        if chosen.template is not None:
            self.template_name, source = SEARCHED_TEMPLATE, chosen.template
        else:
            self.template_name, source = prompts.task_template(task, template_name, backbone.kind)
        words = chosen.label_words if chosen.label_words is not None else getattr(task, self.words_key)
        if not words:
            raise PromptworthError(f"task {task.name} has no {self.words_key}: method {self.name!r} cannot run on it")
        try:
            self.verbalizer = verbalizers.build_verbalizer(task.labels, words, self.words_key)
            self.encoder = prompt_encoding.PromptEncoder(
                template=prompts.parse_template(source), verbalizer=self.verbalizer,
                tokenizer=self.tokenizer, kind=backbone.kind, max_length=max_length,
            )
        except PromptworthError as exc:
            raise PromptworthError(f"task {task.name}, template {self.template_name!r}: {exc}") from None
        if "calibrate" in spec.extras and (task.is_regression or choice_fields(task)):
            raise PromptworthError(f"method {self.name}: calibration needs a classification task with fixed label "
                                   f"words; {task.name} has {'scores' if task.is_regression else 'row-dependent words'}")
        if task.is_regression:
            if task.name not in REGRESSION_RANGES:
                raise PromptworthError(f"regression task {task.name} has no score range in methods.REGRESSION_RANGES")
            self.low, self.high = REGRESSION_RANGES[task.name]
        # demonstrations (extras context and demos): set up by see_split
        self.demo_extra = next((extra for extra in spec.extras if extra in ("context", "demos")), None)
        if self.demo_extra:
            if task.is_regression or self.verbalizer.row_dependent:
                raise PromptworthError(
                    f"method {self.name}: demonstrations need a classification task with fixed label words; "
                    f"{task.name} has {'scores' if task.is_regression else 'row-dependent words'} (not supported)")
            if self.demo_extra == "demos" and self.options["filter"] == "sbert":
                demos.sbert_folder()  # missing packages fail here, before any data is read
        self.demo_words = [] if self.verbalizer.row_dependent else [w[0] for w in self.verbalizer.for_row({})]
        self.embed = demos.sentence_embeddings  # the sbert filter's embedding function
        self.seed = 0
        self.rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
        self.train_labels: list[int] = []
        self.train_position: dict[int, int] = {}  # id(row) -> its index in the training split
        self.similarities: demos.Similarities | None = None
        self.context: list[int] = []  # the in-context demonstrations, in order
        self.context_used: list[int] = []  # how many each dev and test input took

    def parts(self) -> dict[str, Any]:
        parts = super().parts()
        causal = self.backbone.kind == "causal"
        where = "before the input (causal LM)" if causal else "after the input, one answer slot (masked LM)"
        if self.demo_extra == "context":
            used = self.context_used
            parts["demonstrations"] = {
                "listed": len(self.context), "where": where,
                "used": {"min": min(used), "max": max(used), "mean": round(sum(used) / len(used), 2)} if used else None,
                "rule": "as many as fit max_length untruncated; those farthest from the input are dropped first",
            }
        elif self.demo_extra == "demos":
            parts["demonstrations"] = {
                "per_class": 1, "where": where, "eval_sets": self.options["sets"],
                "rule": "sampled from the training split (never the input itself): afresh for each input at each "
                        "step; dev and test average the label log-scores over eval_sets sets",
            }
        return parts

    def see_split(self, rows: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0) -> None:
        if not self.demo_extra:
            return
        self.seed, self.rows = seed, rows
        self.train_labels = [int(row["label"]) for row in rows["train"]]
        self.train_position = {id(row): i for i, row in enumerate(rows["train"])}
        if self.demo_extra == "context":
            self.context = demos.context_order(len(rows["train"]), self.options["demos"], seed)
        elif self.options["filter"] == "sbert":
            self.similarities = demos.Similarities.of(rows, self.encoder.template.fields, self.embed)

    def describe(self) -> dict[str, Any]:
        return {"template": self.encoder.template.source, "template_name": self.template_name,
                "verbalizer": self.verbalizer.source}

    def content_free(self) -> list[Feature]:
        if "calibrate" not in self.spec.extras:
            return []
        fields = {part.name for part in self.encoder.template.parts if isinstance(part, prompts.FieldRef)}
        return [self.encode({**{name: text for name in fields}, "label": 0}) for text in CONTENT_FREE]

    def template_ids(self) -> list[int]:
        text = " ".join(part.text.strip() for part in self.encoder.template.parts if isinstance(part, prompts.Text))
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, row: Mapping[str, Any]) -> Feature:
        return self.feature(self.encodings(row), row["label"])

    def encodings(self, row: Mapping[str, Any]) -> list[prompt_encoding.EncodedPrompt]:
        """The row encoded: once, or (extra demos) once per demonstration set."""
        if self.demo_extra == "context":
            return [self.context_prompt(row)]
        if self.demo_extra == "demos":
            pools = self.demo_pools(row)
            return [self.with_demos(row, demos.sample_set(pools, demos.rng(self.seed, "eval", row.get("idx"), k),
                                                          self.task.labels)) for k in range(self.options["sets"])]
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
        if self.demo_extra != "demos":
            return features[index]
        row = self._rows()["train"][index]
        chosen = demos.sample_set(self.demo_pools(row), demos.rng(self.seed, "train", step, index), self.task.labels)
        return self.feature([self.with_demos(row, chosen)], row["label"])

    def _rows(self) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        if self.rows is None:
            raise PromptworthError(f"method {self.name}: see_split must give it the split before rows are encoded")
        return self.rows

    def demo_pools(self, row: Mapping[str, Any]) -> list[list[int]]:
        """The training indices each class's demonstration is drawn from for ``row``."""
        self._rows()
        pools = demos.class_pools(self.train_labels, self.verbalizer.num_labels, self.train_position.get(id(row)))
        if self.similarities is not None:
            pools = demos.keep_most_similar(pools, self.similarities.to_train(row), self.options["keep"])
        return pools

    def demo_input(self, row: Mapping[str, Any], chosen: Sequence[int]) -> tuple[dict[str, Any], prompts.Template]:
        """The row with the training examples ``chosen`` as demonstrations, and its template."""
        train = self._rows()["train"]
        words = [self.demo_words[self.train_labels[i]] for i in chosen]
        template = demos.composite(self.encoder.template, words, self.backbone.kind == "causal")
        return demos.composite_row(row, [train[i] for i in chosen]), template

    def with_demos(self, row: Mapping[str, Any], chosen: Sequence[int]) -> prompt_encoding.EncodedPrompt:
        return self.encoder.encode(*self.demo_input(row, chosen))

    def context_prompt(self, row: Mapping[str, Any]) -> prompt_encoding.EncodedPrompt:
        """The row after (a masked LM: before) as many of the in-context demonstrations as fit
        ``max_length`` untruncated; those farthest from the row are dropped first."""
        self._rows()
        own = self.train_position.get(id(row))
        order = [i for i in self.context if i != own]
        causal = self.backbone.kind == "causal"

        def chosen(k: int) -> list[int]:
            return order[len(order) - k:] if causal else order[:k]

        k = demos.largest_fitting(
            len(order), lambda k: self.encoder.length(*self.demo_input(row, chosen(k))) <= self.max_length)
        if k == 0:
            raise PromptworthError(
                f"method {self.name}: not one demonstration fits beside row idx {row.get('idx')} in max_length "
                f"{self.max_length} (the row alone takes {self.encoder.length(row)} tokens); raise --max-length")
        if own is None and row.get("idx") is not None:  # a dev or test input (not a content-free one)
            self.context_used.append(k)
        return self.with_demos(row, chosen(k))

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
        hidden = tunings.backbone_states(model, base, model_inputs(batch))
        # read only the answer positions: the LM head never runs over the whole sequence
        keys = batch["term_seq"] * hidden.shape[1] + batch["term_pos"]
        unique, where = torch.unique(keys, return_inverse=True)
        states = hidden.reshape(-1, hidden.shape[-1])[unique]
        output = model.get_output_embeddings()
        if batch["restricted"] and head is output:
            vocab, column = torch.unique(batch["term_tok"], return_inverse=True)
            bias = output.bias[vocab] if getattr(output, "bias", None) is not None else None
            logits = F.linear(states, output.weight[vocab], bias).float()
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


class NullMethod(PromptMethod):
    words_key = "null_words"


# ---------------------------------------------------------------------------------------------
# Head-based fine-tuning
