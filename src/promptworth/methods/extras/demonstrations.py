"""Demonstrations: training examples with their label words beside the input (:mod:`promptworth.methods.demo_sampling`).

- ``context`` (:class:`InContext`): in-context learning: up to ``demos`` training examples, chosen
  and ordered by the train seed, as many as fit ``max_length`` untruncated.
- ``demos`` (:class:`SampledDemos`): LM-BFF's demonstrations: one example per class, sampled afresh
  for each input at each step; dev and test average the label scores over ``sets`` sampled sets.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from promptworth.errors import PromptworthError
from promptworth.methods import demo_sampling
from promptworth.methods.extras.base import ExtraBehaviour, Rows
from promptworth.methods.features import Feature
from promptworth.methods.prompt_encoding import EncodedPrompt
from promptworth.methods.templates import Template


class Demonstrations(ExtraBehaviour):
    """What both extras share: the split's training rows by label, and a row with demonstrations."""

    def __init__(self) -> None:
        self.method: Any = None
        self.demo_words: list[str] = []
        self.embed = demo_sampling.sentence_embeddings  # the sbert filter's embedding function
        self.seed = 0
        self.rows: Rows | None = None
        self.train_labels: list[int] = []
        self.train_position: dict[int, int] = {}  # id(row) -> its index in the training split

    def check(self, method: Any) -> None:
        task = method.task
        if task.is_regression or method.verbalizer.row_dependent:
            raise PromptworthError(
                f"method {method.name}: demonstrations need a classification task with fixed label words; "
                f"{task.name} has {'scores' if task.is_regression else 'row-dependent words'} (not supported)")
        self.method = method
        self.demo_words = [w[0] for w in method.verbalizer.for_row({})]

    def where(self) -> str:
        causal = self.method.backbone.kind == "causal"
        return "before the input (causal LM)" if causal else "after the input, one answer slot (masked LM)"

    def see_split(self, method: Any, rows: Rows, seed: int) -> None:
        self.seed, self.rows = seed, rows
        self.train_labels = [int(row["label"]) for row in rows["train"]]
        self.train_position = {id(row): i for i, row in enumerate(rows["train"])}

    def _rows(self) -> Rows:
        if self.rows is None:
            raise PromptworthError(f"method {self.method.name}: see_split must give it the split before rows are encoded")
        return self.rows

    def demo_input(self, row: Mapping[str, Any], chosen: Sequence[int]) -> tuple[dict[str, Any], Template]:
        """The row with the training examples ``chosen`` as demonstrations, and its template."""
        train = self._rows()["train"]
        words = [self.demo_words[self.train_labels[i]] for i in chosen]
        method = self.method
        template = demo_sampling.composite(method.encoder.template, words, method.backbone.kind == "causal")
        return demo_sampling.composite_row(row, [train[i] for i in chosen]), template

    def with_demos(self, row: Mapping[str, Any], chosen: Sequence[int]) -> EncodedPrompt:
        return self.method.encoder.encode(*self.demo_input(row, chosen))


class InContext(Demonstrations):
    def __init__(self) -> None:
        super().__init__()
        self.context: list[int] = []  # the in-context demonstrations, in order
        self.context_used: list[int] = []  # how many each dev and test input took

    def parts(self, method: Any) -> dict[str, Any]:
        used = self.context_used
        return {"demonstrations": {
            "listed": len(self.context), "where": self.where(),
            "used": {"min": min(used), "max": max(used), "mean": round(sum(used) / len(used), 2)} if used else None,
            "rule": "as many as fit max_length untruncated; those farthest from the input are dropped first",
        }}

    def see_split(self, method: Any, rows: Rows, seed: int) -> None:
        super().see_split(method, rows, seed)
        self.context = demo_sampling.context_order(len(rows["train"]), method.options["demos"], seed)

    def encodings(self, method: Any, row: Mapping[str, Any]) -> list[EncodedPrompt]:
        return [self.context_prompt(row)]

    def context_prompt(self, row: Mapping[str, Any]) -> EncodedPrompt:
        """The row after (a masked LM: before) as many of the in-context demonstrations as fit
        ``max_length`` untruncated; those farthest from the row are dropped first."""
        self._rows()
        method = self.method
        own = self.train_position.get(id(row))
        order = [i for i in self.context if i != own]
        causal = method.backbone.kind == "causal"

        def chosen(k: int) -> list[int]:
            return order[len(order) - k:] if causal else order[:k]

        k = demo_sampling.largest_fitting(
            len(order), lambda k: method.encoder.length(*self.demo_input(row, chosen(k))) <= method.max_length)
        if k == 0:
            raise PromptworthError(
                f"method {method.name}: not one demonstration fits beside row idx {row.get('idx')} in max_length "
                f"{method.max_length} (the row alone takes {method.encoder.length(row)} tokens); raise --max-length")
        if own is None and row.get("idx") is not None:  # a dev or test input (not a content-free one)
            self.context_used.append(k)
        return self.with_demos(row, chosen(k))


class SampledDemos(Demonstrations):
    def __init__(self) -> None:
        super().__init__()
        self.similarities: demo_sampling.Similarities | None = None

    def check(self, method: Any) -> None:
        super().check(method)
        if method.options["filter"] == "sbert":
            demo_sampling.sbert_folder()  # missing packages fail here, before any data is read

    def parts(self, method: Any) -> dict[str, Any]:
        return {"demonstrations": {
            "per_class": 1, "where": self.where(), "eval_sets": method.options["sets"],
            "rule": "sampled from the training split (never the input itself): afresh for each input at each "
                    "step; dev and test average the label log-scores over eval_sets sets",
        }}

    def see_split(self, method: Any, rows: Rows, seed: int) -> None:
        super().see_split(method, rows, seed)
        if method.options["filter"] == "sbert":
            self.similarities = demo_sampling.Similarities.of(rows, method.encoder.template.fields, self.embed)

    def demo_pools(self, row: Mapping[str, Any]) -> list[list[int]]:
        """The training indices each class's demonstration is drawn from for ``row``."""
        self._rows()
        method = self.method
        pools = demo_sampling.class_pools(self.train_labels, method.verbalizer.num_labels, self.train_position.get(id(row)))
        if self.similarities is not None:
            pools = demo_sampling.keep_most_similar(pools, self.similarities.to_train(row), method.options["keep"])
        return pools

    def encodings(self, method: Any, row: Mapping[str, Any]) -> list[EncodedPrompt]:
        pools = self.demo_pools(row)
        return [self.with_demos(row, demo_sampling.sample_set(pools, demo_sampling.rng(self.seed, "eval", row.get("idx"), k),
                                                              method.task.labels))
                for k in range(method.options["sets"])]

    def train_feature(self, method: Any, features: Sequence[Feature], index: int, step: int) -> Feature:
        row = self._rows()["train"][index]
        chosen = demo_sampling.sample_set(self.demo_pools(row), demo_sampling.rng(self.seed, "train", step, index),
                                          method.task.labels)
        return method.feature([self.with_demos(row, chosen)], row["label"])
