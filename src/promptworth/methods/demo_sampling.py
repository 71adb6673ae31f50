"""Demonstrations: training examples shown beside the input, each the task's template with its
label word filled in at the answer slot (no torch import).

Two extras use them (:data:`promptworth.methods.registry.EXTRAS`):

- ``context`` (in-context learning, GPT-3 style): one list of up to ``demos`` training examples,
  chosen and ordered by the train seed, shared by every input. The input takes as many of them as
  fit ``max_length`` untruncated; the demonstrations farthest from the input are dropped first
  (:func:`largest_fitting`).
- ``demos`` (LM-BFF's demonstrations): one training example per class, in label order, sampled
  for each input (:func:`sample_set`): afresh at each training step, and ``sets`` times at dev and
  test (the label log-scores are averaged over the sets). The ``sbert`` filter samples each class
  only among its ``keep`` % most similar examples to the input (:func:`keep_most_similar`,
  all-MiniLM-L6-v2 embeddings, :func:`sentence_embeddings`).

Demonstrations come only from the training split; a training example is never its own
demonstration. A causal LM reads them *before* the input, so that the answer slot stays last and
is scored as the continuation; a masked LM reads them *after* it, in the same sequence, with one
answer slot (LM-BFF). Segments are joined by a space.

Sampling and filtering are pure functions of (labels, similarities, seed) here; the prompt
method (:class:`promptworth.methods.objectives.prompt.PromptMethod`) encodes the composite template
(:func:`composite`) with the input's fields and the demonstrations' renamed ones, so that
truncation cuts the demonstrations' text before the input's (``prompts.CUT_ORDER``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from promptworth.backbones.registry import MINILM, PACKAGED_MODELS
from promptworth.backbones.resolve import packaged_folder
from promptworth.errors import PromptworthError
from promptworth.methods.templates import FieldRef, Part, Slot, Template, Text

# The sentence-embedding model of the sbert filter: all-MiniLM-L6-v2 (LM-BFF used SBERT too),
# shipped inside a PyPI package and loaded from its folder, never from the hub (a packaged model:
# promptworth.backbones.registry.PACKAGED_MODELS, which SetFit's backbone is too).
_SBERT = PACKAGED_MODELS[MINILM]
SBERT_PACKAGE, SBERT_DIST = _SBERT.package, _SBERT.distribution
SBERT_INSTALL = f"pip install sentence-transformers && {_SBERT.install}"


def rng(seed: int, *key: Any) -> random.Random:
    """A generator determined by the train seed and ``key`` (a string seed: the same on every
    machine and Python run)."""
    return random.Random(":".join(str(k) for k in (seed, *key)))


# ---------------------------------------------------------------------------------------------
# Which training examples


def class_pools(labels: Sequence[int], num_labels: int, exclude: int | None = None) -> list[list[int]]:
    """The training indices of each class, without ``exclude`` (the input's own index)."""
    pools: list[list[int]] = [[] for _ in range(num_labels)]
    for index, label in enumerate(labels):
        if index != exclude:
            pools[int(label)].append(index)
    return pools


def keep_most_similar(pools: Sequence[Sequence[int]], similarity: Sequence[float], keep: int) -> list[list[int]]:
    """Each class's ``keep`` % most similar examples (``similarity[index]`` to the input; ties go
    to the lower index): ``ceil(keep / 100 * n)`` of the class's ``n``, at least one."""
    kept = []
    for pool in pools:
        ranked = sorted(pool, key=lambda i: (-similarity[i], i))
        kept.append(ranked[: max(1, math.ceil(keep * len(ranked) / 100))] if ranked else [])
    return kept


def sample_set(pools: Sequence[Sequence[int]], generator: random.Random, label_names: Sequence[str]) -> list[int]:
    """One demonstration per class, in label order, each drawn uniformly from its pool."""
    empty = [name for name, pool in zip(label_names, pools) if not pool]
    if empty:
        raise PromptworthError(
            f"demonstrations: class {empty[0]!r} has no training example to show (a training example is never "
            "its own demonstration): the training split needs two examples of each class"
        )
    return [generator.choice(list(pool)) for pool in pools]


def context_order(n_train: int, limit: int, seed: int) -> list[int]:
    """The in-context demonstrations: ``min(limit, n_train)`` training indices in a seeded order."""
    return rng(seed, "context").sample(range(n_train), min(limit, n_train))


def largest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k`` in ``0..n`` with ``fits(k)``, for ``fits`` true up to some k and false
    after (binary search); 0 when even one does not fit."""
    low, high = 0, n
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


# ---------------------------------------------------------------------------------------------
# The composite template


def demo_parts(template: Template, key: str, word: str) -> list[Part]:
    """``template`` as a demonstration: its fields renamed ``<key>.<field>`` (cut first), the
    answer slot replaced by ``word`` (a space before it unless the text before ends with one)."""
    parts: list[Part] = []
    for part in template.parts:
        if isinstance(part, FieldRef):
            parts.append(FieldRef(f"{key}.{part.name}", part.filters, demo=True))
            continue
        text = part.text if isinstance(part, Text) else word
        if isinstance(part, Slot) and not (parts and isinstance(parts[-1], Text) and parts[-1].text[-1:].isspace()):
            text = " " + word
        if parts and isinstance(parts[-1], Text):
            parts[-1] = Text(parts[-1].text + text)
        else:
            parts.append(Text(text))
    return parts


def composite(query: Template, words: Sequence[str], causal: bool) -> Template:
    """The query's template with one demonstration per word (its label word), joined by spaces:
    demonstrations first for a causal LM, after the query for a masked LM. The demonstrations'
    fields are ``demo<j>.<field>`` (:func:`composite_row`)."""
    demos: list[Part] = []
    for j, word in enumerate(words):
        demos += [*demo_parts(query, f"demo{j}", word), Text(" ")]
    parts = [*demos, *query.parts] if causal else [*query.parts, Text(" "), *demos[:-1]]
    return Template(source=f"{query.source} (with {len(words)} demonstrations)", parts=tuple(parts))


def composite_row(row: Mapping[str, Any], demos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The query row with each demonstration's fields as ``demo<j>.<field>``."""
    out = dict(row)
    for j, demo in enumerate(demos):
        out.update({f"demo{j}.{name}": value for name, value in demo.items()})
    return out


# ---------------------------------------------------------------------------------------------
# Sentence embeddings (the sbert filter)


def embedding_text(row: Mapping[str, Any], fields: Sequence[str]) -> str:
    """What is embedded of a row: the template's fields joined by a space (sentence pairs as one
    text, as LM-BFF does)."""
    return " ".join(str(row[name]).strip() for name in fields if row.get(name) is not None)


def sbert_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside its installed package; a clear error if the package or
    sentence-transformers is missing (neither is imported here)."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise PromptworthError(f"the sbert filter of extra demos needs the package sentence-transformers: {SBERT_INSTALL}")
    folder = packaged_folder(MINILM)
    if folder is not None:
        return folder
    raise PromptworthError(f"the sbert filter of extra demos needs the sentence-embedding model of the package "
                           f"{SBERT_DIST}: {SBERT_INSTALL}")


def sentence_embeddings(texts: Sequence[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings of ``texts`` (one row each), from the local
    package folder only (no hub access)."""
    folder = sbert_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class Similarities:
    """Cosine similarities of any row of the split to the training rows (rows known by identity)."""

    train: np.ndarray  # (n_train, dim), unit rows
    vectors: dict[int, np.ndarray]  # id(row) -> unit vector

    @classmethod
    def of(cls, rows: Mapping[str, Sequence[Mapping[str, Any]]], fields: Sequence[str],
           embed: Callable[[Sequence[str]], np.ndarray]) -> "Similarities":
        every = [row for part in rows.values() for row in part]
        vectors = np.asarray(embed([embedding_text(row, fields) for row in every]), dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        by_row = {id(row): vector for row, vector in zip(every, vectors)}
        return cls(train=np.stack([by_row[id(row)] for row in rows["train"]]), vectors=by_row)

    def to_train(self, row: Mapping[str, Any]) -> np.ndarray:
        if id(row) not in self.vectors:
            raise PromptworthError(f"row {row.get('idx')} was not embedded: demonstrations are sampled for the rows "
                                   "the method saw (see_split)")
        return self.train @ self.vectors[id(row)]
