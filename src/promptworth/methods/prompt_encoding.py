"""A row and a template -> token ids with the answer slot marked, the longest text field cut to fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from promptworth.errors import PromptworthError
from promptworth.methods.templates import FieldRef, Kind, Template
from promptworth.methods.verbalizers import Verbalizer


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
        demonstrations around it: :mod:`promptworth.methods.demo_sampling`)."""
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
