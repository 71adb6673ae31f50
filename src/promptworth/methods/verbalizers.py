"""A task's label words (its verbalizer): one or more words per label, rendered for a backbone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from promptworth.errors import PromptworthError
from promptworth.methods.templates import Template, parse_template


@dataclass(frozen=True)
class Verbalizer:
    """Label index -> one or more word templates (fixed words are templates without fields)."""

    words: tuple[tuple[Template, ...], ...]
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_labels(self) -> int:
        return len(self.words)

    @property
    def row_dependent(self) -> bool:
        return any(word.fields for words in self.words for word in words)

    def for_row(self, row: Mapping[str, Any]) -> list[list[str]]:
        return [[render_word(word, row) for word in words] for words in self.words]


def render_word(word: Template, row: Mapping[str, Any]) -> str:
    text = "".join(text for _, text in word.render(row)).strip()
    if not text:
        where = f" for row {row['idx']}" if row.get("idx") is not None else ""
        raise PromptworthError(f"label word {word.source!r} is empty{where}")
    return text


def label_keys(labels: Sequence[str] | None, words: Mapping[str, Any]) -> list[str]:
    """Raw labels in the order of the task's label indices (regression: the words' own order)."""
    return list(words) if labels is None else list(labels)


def build_verbalizer(labels: Sequence[str] | None, words: Mapping[str, Any], what: str = "label_words",
                     own_words: bool = True) -> Verbalizer:
    """A verbalizer from a registry mapping (raw label -> word or list of words); with
    ``own_words`` each label's fixed words are its own (a label-word search's placeholder is not)."""
    if not words:
        raise PromptworthError(f"no {what} defined")
    keys = label_keys(labels, words)
    if labels is None and len(keys) != 2:
        raise PromptworthError(f"regression {what} need exactly two labels (low, high), got {list(words)}")
    missing = [key for key in keys if key not in words]
    if missing:
        raise PromptworthError(f"{what} have no word for label(s) {missing}")
    extra = [key for key in words if key not in keys]
    if extra:
        raise PromptworthError(f"{what} name unknown label(s) {extra}; labels are {keys}")
    parsed = []
    for key in keys:
        entry = words[key]
        entry = [entry] if isinstance(entry, str) else list(entry)
        if not entry:
            raise PromptworthError(f"{what}: label {key!r} has an empty word list")
        parsed.append(tuple(parse_template(str(word), need_slot=False) for word in entry))
    if own_words:
        _check_words_of_their_own(keys, parsed, what)
    return Verbalizer(words=tuple(parsed), source=dict(words))


def _check_words_of_their_own(keys: Sequence[str], parsed: Sequence[tuple[Template, ...]], what: str) -> None:
    """Each fixed word (one without fields) is a word, and no two labels share one: a word of
    every label would score every label alike, and the run would learn nothing."""
    owner: dict[str, str] = {}
    for key, words in zip(keys, parsed):
        for word in words:
            if word.fields:
                continue  # a row's own text (COPA's choices): checked for each row
            text = "".join(text for _, text in word.render({})).strip()
            if not text:
                raise PromptworthError(f"{what}: label {key!r} has an empty word")
            other = owner.setdefault(text, key)
            if other != key:
                raise PromptworthError(f"{what}: {text!r} is a word of label {other!r} and of label {key!r}: each label "
                                       "needs words of its own")
