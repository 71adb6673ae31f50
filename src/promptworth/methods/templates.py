"""Templates and verbalizers: the "prompt" of prompt-based fine-tuning.

Template language (the ``templates`` of ``registry.yaml``)
----------------------------------------------------------
Literal text with placeholders in braces:

- ``{text_a}``, ``{text_b}``, or any other row field (``{choice1}``, ``{word}``, ``{span2_text}``);
- ``{mask}``: the answer slot, exactly once;
- filters after ``|``, applied left to right: ``nopunct`` (drop trailing punctuation),
  ``lowerfirst``, ``upperfirst``, and ``map:key=value:key=value`` (replace a field's value by the
  text given for it, e.g. COPA's ``{question|map:cause= because:effect=, so}``);
- ``{{`` and ``}}`` are literal braces.

Example: ``"{text_a} It was {mask}."`` is LM-BFF's ``*cls**sent_0*_It_was*mask*.*sep+*``.

How a template becomes tokens
-----------------------------
Each piece (literal, field, answer) is tokenized on its own, so truncation can shorten a field
without touching anything else; whitespace at a boundary is given to the piece after it as one
leading space, which keeps byte-level BPE tokenization the same as for the joined string.
The answer slot always holds the *space-prefixed* label word (``" great"``), as LM-BFF does, also
at the start of a template. When the text is too long, the longest field loses tokens from its end,
one token at a time (PET's rule); literal text and the answer slot are never cut.

- Masked LMs: ``[CLS] before [MASK]*n after [SEP]`` (the tokenizer's own special tokens), where n
  is the largest token count of the row's label words (1 for single-token verbalizers). A word of
  m tokens is scored by the sum of the log-probabilities of its tokens at the first m masks (PET's
  multi-mask scoring).
- Causal LMs: ``[BOS if the tokenizer adds one] before``; the label word is scored as the
  continuation: the sum of its tokens' log-probabilities by teacher forcing. Literal text after the
  answer slot is dropped (the model never sees it); a template with a *field* after the answer slot
  is refused for causal models, because the model would never see that input.

Verbalizers
-----------
``label_words`` maps each raw label to a word or a list of words; words may contain placeholders
(COPA: ``"{choice1|nopunct|lowerfirst}"``). With several words per label the label's score is the
mean of its words' scores (PET averages them too).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Union

from promptworth.errors import PromptworthError

SLOT = "mask"
Kind = Literal["mlm", "causal"]


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class FieldRef:
    name: str
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    demo: bool = False  # a demonstration's field: truncation cuts these before the query's


@dataclass(frozen=True)
class Slot:
    pass


Part = Union[Text, FieldRef, Slot]


def _nopunct(value: str, args: tuple[str, ...]) -> str:
    return value.rstrip().rstrip(string.punctuation).rstrip()


def _lowerfirst(value: str, args: tuple[str, ...]) -> str:
    return value[:1].lower() + value[1:]


def _upperfirst(value: str, args: tuple[str, ...]) -> str:
    return value[:1].upper() + value[1:]


def _map(value: str, args: tuple[str, ...]) -> str:
    table = dict(arg.split("=", 1) for arg in args)
    if value not in table:
        raise PromptworthError(f"filter map has no entry for value {value!r} (entries: {sorted(table)})")
    return table[value]


FILTERS: dict[str, Callable[[str, tuple[str, ...]], str]] = {
    "nopunct": _nopunct,
    "lowerfirst": _lowerfirst,
    "upperfirst": _upperfirst,
    "map": _map,
}

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def _parse_filter(text: str, template: str) -> tuple[str, tuple[str, ...]]:
    name, *args = text.split(":")
    name = name.strip()
    if name not in FILTERS:
        raise PromptworthError(f"template {template!r}: unknown filter {name!r} (known: {', '.join(FILTERS)})")
    if name == "map" and (not args or any("=" not in arg for arg in args)):
        raise PromptworthError(f"template {template!r}: filter map needs key=value arguments: map:a=x:b=y")
    return name, tuple(args)


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text, field references and (for prompts) one answer slot."""

    source: str
    parts: tuple[Part, ...]

    @property
    def slot_index(self) -> int | None:
        return next((i for i, part in enumerate(self.parts) if isinstance(part, Slot)), None)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts if isinstance(part, FieldRef))

    def fields_after_slot(self) -> tuple[str, ...]:
        slot = self.slot_index
        if slot is None:
            return ()
        return tuple(part.name for part in self.parts[slot + 1 :] if isinstance(part, FieldRef))

    def render(self, row: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(kind, text)`` pieces with kind ``text`` | ``field`` | ``slot`` (slot text is empty)."""
        pieces = []
        for part in self.parts:
            if isinstance(part, Text):
                pieces.append(("text", part.text))
            elif isinstance(part, Slot):
                pieces.append(("slot", ""))
            else:
                pieces.append(("demo" if part.demo else "field", fill_field(part, row, self.source)))
        return pieces

    def render_text(self, row: Mapping[str, Any], slot_text: str = "[MASK]") -> str:
        """The template filled in as one string (for logs and docs)."""
        return "".join(slot_text if kind == "slot" else text for kind, text in self.render(row))


def parse_template(source: str, *, need_slot: bool = True) -> Template:
    """Parse ``source``; a prompt template (``need_slot``) must have exactly one ``{mask}``."""
    if not isinstance(source, str):
        raise PromptworthError(f"template must be a string, got {source!r}")
    parts: list[Part] = []
    literal: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        literal.append(source[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match.group(1) is None:
            raise PromptworthError(f"template {source!r}: unbalanced brace at position {match.start()}")
        if literal and "".join(literal):
            parts.append(Text("".join(literal)))
        literal = []
        name, *filters = match.group(1).split("|")
        name = name.strip()
        if not name:
            raise PromptworthError(f"template {source!r}: empty placeholder {{}}")
        if name == SLOT:
            if filters:
                raise PromptworthError(f"template {source!r}: the answer slot {{mask}} takes no filters")
            parts.append(Slot())
        else:
            parts.append(FieldRef(name, tuple(_parse_filter(f, source) for f in filters)))
    literal.append(source[position:])
    if "".join(literal):
        parts.append(Text("".join(literal)))
    template = Template(source=source, parts=tuple(parts))
    slots = sum(isinstance(part, Slot) for part in parts)
    if need_slot and slots != 1:
        raise PromptworthError(
            f"template {source!r} must have exactly one answer slot {{mask}}, it has {slots}"
        )
    if not need_slot and slots:
        raise PromptworthError(f"label word {source!r} cannot contain the answer slot {{mask}}")
    return template


def fill_field(part: FieldRef, row: Mapping[str, Any], source: str) -> str:
    if part.name not in row or row[part.name] is None:
        raise PromptworthError(f"template {source!r} uses field {part.name!r}, which the row lacks (fields: {sorted(row)})")
    value = str(row[part.name]).strip()
    for name, args in part.filters:
        value = FILTERS[name](value, args)
    return value


# ---------------------------------------------------------------------------------------------
# Tokenization


def task_template(spec: Any, name: str | None, kind: Kind) -> tuple[str, str]:
    """``(name, template string)``: the named template (one of the task's templates or control
    templates), or the first of its templates that suits a ``kind`` model."""
    if not spec.templates:
        raise PromptworthError(f"task {spec.name} has no templates")
    if name is not None:
        named = {**spec.templates, **spec.control_templates}
        if name not in named:
            raise PromptworthError(
                f"task {spec.name} has no template {name!r}; its templates: {', '.join(named)}"
            )
        return name, named[name]
    for candidate, source in spec.templates.items():
        template = parse_template(source)
        if kind == "mlm" or not template.fields_after_slot():
            return candidate, source
    raise PromptworthError(
        f"task {spec.name} has no template usable by a causal model (its answer slot must come after every field)"
    )


# The template name a run record gives a template that a search chose (the extra autotemplate).
SEARCHED_TEMPLATE = "search"


@dataclass(frozen=True)
class Chosen:
    """What a search chose for a prompt method (:mod:`promptworth.training.search`): label words
    (raw label -> word) or a template; None keeps the task's own."""

    label_words: Mapping[str, Any] | None = None
    template: str | None = None
