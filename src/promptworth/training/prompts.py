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
from typing import Any, Callable, Literal, Mapping, Sequence, Union

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
# Verbalizers


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


# ---------------------------------------------------------------------------------------------
# Tokenization


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids the tokenizer puts around one sequence (``[CLS] ... [SEP]``, ``<s> ... </s>``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


def special_tokens(tokenizer: Any, kind: Kind) -> SpecialTokens:
    """Learn the tokenizer's single-sequence special tokens by encoding a probe both ways."""
    probe = "hello"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), None)
    if start is None:
        prefix, suffix = (), ()
    else:
        prefix, suffix = tuple(full[:start]), tuple(full[start + len(plain) :])
    if kind == "mlm" and not prefix and not suffix:
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        prefix = (cls,) if cls is not None else ()
        suffix = (sep,) if sep is not None else ()
    if kind == "causal":
        suffix = ()  # the answer is read after the text: nothing may follow it
    return SpecialTokens(prefix=prefix, suffix=suffix)


def spaced_pieces(pieces: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Move boundary whitespace onto the next piece as one leading space; drop empty pieces.

    The slot keeps its place (its word always gets a leading space when tokenized).
    """
    out: list[tuple[str, str]] = []
    space = False
    for kind, text in pieces:
        if kind == "slot":
            out.append(("slot", ""))
            space = False  # the word carries its own space; text right after it attaches directly
            continue
        if not text.strip():
            space = space or bool(text)
            continue
        lead = space or text[0].isspace()
        core = text.strip()
        if lead and out:
            core = " " + core
        out.append((kind, core))
        space = text[-1].isspace()
    return out


def word_ids(tokenizer: Any, word: str) -> list[int]:
    """Token ids of a label word as it follows other text (space-prefixed, like LM-BFF)."""
    return list(tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"])


def check_word(tokenizer: Any, word: str, ids: Sequence[int]) -> None:
    if not ids:
        raise PromptworthError(f"label word {word!r} tokenizes to nothing")
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids:
        raise PromptworthError(f"label word {word!r} is not in the model's vocabulary (it tokenizes to the unknown token)")


@dataclass
class EncodedPrompt:
    """One row under a template: token ids and where the answer goes.

    ``input_ids`` for a masked LM holds ``n_masks`` mask tokens from ``slot``; for a causal LM it
    ends right before the answer, so ``slot == len(input_ids)``.
    """

    input_ids: list[int]
    slot: int
    n_masks: int
    words: list[list[list[int]]]  # label -> word -> token ids
    truncated: int = 0


# What truncation cuts, in turn: the demonstrations' fields, then the input's own.
CUT_ORDER = ("demo", "field")


def _truncate(tokens: list[list[int]], kinds: Sequence[str], budget: int, where: str) -> int:
    """Cut the longest field from its end until everything fits in ``budget``; tokens removed.
    The demonstrations' fields are cut first (the longest of them), the input's only once those
    are empty."""
    excess = sum(len(t) for t in tokens) - budget
    removed = 0
    for kind in CUT_ORDER:
        fields = [i for i, k in enumerate(kinds) if k == kind]
        while excess > 0:
            longest = max(fields, key=lambda i: len(tokens[i]), default=None)
            if longest is None or not tokens[longest]:
                break
            del tokens[longest][-1]
            excess -= 1
            removed += 1
    if excess > 0:
        demos = " and the demonstrations' text with their label words" if "demo" in kinds else ""
        raise PromptworthError(
            f"{where}: the template's literal text and answer{demos} do not fit in max_length "
            f"(even with every field cut to nothing); raise --max-length"
        )
    return removed


@dataclass
class PromptEncoder:
    """Turns rows into :class:`EncodedPrompt` for one template, verbalizer, tokenizer and kind."""

    template: Template
    verbalizer: Verbalizer
    tokenizer: Any
    kind: Kind
    max_length: int
    specials: SpecialTokens = field(init=False)
    _fixed_words: list[list[list[int]]] | None = field(init=False, default=None)
    # token ids of each piece text seen (demonstrations repeat the same pieces across rows)
    _tokens: dict[str, list[int]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.specials = special_tokens(self.tokenizer, self.kind)
        if self.kind == "causal":
            after = self.template.fields_after_slot()
            if after:
                raise PromptworthError(
                    f"template {self.template.source!r} has input ({', '.join(after)}) after the answer slot; "
                    "a causal model reads the answer right after the text before it and would never see that "
                    "input: choose a template that ends with the answer slot (--template)"
                )
            if not any(isinstance(p, FieldRef) for p in self.template.parts[: self.template.slot_index]):
                raise PromptworthError(
                    f"template {self.template.source!r} has no input before the answer slot, which a causal "
                    "model needs: choose another template (--template)"
                )
        if not self.verbalizer.row_dependent:
            self._fixed_words = [[self._word(w) for w in words] for words in self.verbalizer.for_row({})]
            for words, texts in zip(self._fixed_words, self.verbalizer.for_row({})):
                for ids, text in zip(words, texts):
                    check_word(self.tokenizer, text, ids)

    def _word(self, text: str) -> list[int]:
        return word_ids(self.tokenizer, text)

    def words_for(self, row: Mapping[str, Any]) -> list[list[list[int]]]:
        if self._fixed_words is not None:
            return self._fixed_words
        out = []
        for words in self.verbalizer.for_row(row):
            ids = [self._word(w) for w in words]
            for word, word_tokens in zip(words, ids):
                if not word_tokens:
                    raise PromptworthError(f"label word {word!r} of row {row.get('idx')} tokenizes to nothing")
            out.append(ids)
        return out

    def _piece_ids(self, text: str) -> list[int]:
        ids = self._tokens.get(text)
        if ids is None:
            ids = self._tokens[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(ids)

    def _pieces(self, row: Mapping[str, Any], template: Template) -> tuple[list[str], list[list[int]], int, int]:
        """The row's pieces under ``template`` before truncation: their kinds and token ids, the
        longest label word's length and the tokens the answer needs besides the pieces."""
        words = self.words_for(row)
        longest_word = max(len(ids) for label in words for ids in label)
        pieces = spaced_pieces(template.render(row))
        slot = next(i for i, (kind, _) in enumerate(pieces) if kind == "slot")
        if self.kind == "causal":
            pieces = pieces[:slot]  # text after the answer slot is never seen by a causal model
            answer_len = longest_word - 1  # teacher forcing feeds all but the last word token
        else:
            answer_len = longest_word
        kinds = [kind for kind, _ in pieces]
        tokens = [[] if kind == "slot" else self._piece_ids(text) for kind, text in pieces]
        return kinds, tokens, longest_word, answer_len

    def length(self, row: Mapping[str, Any], template: Template | None = None) -> int:
        """Tokens the row takes under ``template`` (default the encoder's) before any truncation."""
        _, tokens, _, answer_len = self._pieces(row, template or self.template)
        return sum(len(t) for t in tokens) + len(self.specials.prefix) + len(self.specials.suffix) + answer_len

    def encode(self, row: Mapping[str, Any], template: Template | None = None) -> EncodedPrompt:
        """The row under the encoder's template, or under ``template`` (the same template with
        demonstrations around it: :mod:`promptworth.training.demos`)."""
        template = template or self.template
        words = self.words_for(row)
        kinds, tokens, longest_word, answer_len = self._pieces(row, template)
        budget = self.max_length - len(self.specials.prefix) - len(self.specials.suffix) - answer_len
        removed = _truncate(tokens, kinds, budget, f"template {self.template.source!r}, row {row.get('idx')}")
        ids = list(self.specials.prefix)
        position = None
        for kind, piece in zip(kinds, tokens):
            if kind == "slot":
                position = len(ids)
                ids.extend([self.tokenizer.mask_token_id] * longest_word)
            else:
                ids.extend(piece)
        if self.kind == "causal":
            position = len(ids)
            if position == 0:
                raise PromptworthError(f"row {row.get('idx')}: nothing before the answer slot")
        ids.extend(self.specials.suffix)
        return EncodedPrompt(
            input_ids=ids, slot=position, n_masks=longest_word if self.kind == "mlm" else 0,
            words=words, truncated=removed,
        )


def task_template(spec: Any, name: str | None, kind: Kind) -> tuple[str, str]:
    """``(name, template string)``: the named template, or the first that suits a ``kind`` model."""
    if not spec.templates:
        raise PromptworthError(f"task {spec.name} has no templates")
    if name is not None:
        if name not in spec.templates:
            raise PromptworthError(
                f"task {spec.name} has no template {name!r}; its templates: {', '.join(spec.templates)}"
            )
        return name, spec.templates[name]
    for candidate, source in spec.templates.items():
        template = parse_template(source)
        if kind == "mlm" or not template.fields_after_slot():
            return candidate, source
    raise PromptworthError(
        f"task {spec.name} has no template usable by a causal model (its answer slot must come after every field)"
    )
