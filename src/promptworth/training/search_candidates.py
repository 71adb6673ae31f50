"""The candidates of LM-BFF's searches: label words ranked by their log-probability at the answer slot, templates from a T5 generator or from the offline pool of the task's own templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from promptworth.backbones import load
from promptworth.backbones.architecture import lm_parts
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods import prompt_encoding, templates as prompts, verbalizers
from promptworth.methods.features import pad


# Phrases the offline template pool puts before the answer slot, in place of a template's own.
BRIDGES = ("It was", "It is", "This is", "All in all, it was", "In summary, it was", "Overall, it was",
           "The answer is", "")


# The most tokens the T5 generator adds (both spans together, LM-BFF's default length).
T5_MAX_NEW_TOKENS = 20


def word_vocabulary(tokenizer: Any) -> dict[int, str]:
    """The tokens that are whole words a label can be: one token that decodes to letters only and
    that the space-prefixed word (as the answer slot holds it) tokenizes to, alone."""
    specials = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in specials]
    words = {i: text.strip() for i in ids if (text := tokenizer.decode([i])).strip().isalpha()}
    encoded = tokenizer([" " + word for word in words.values()], add_special_tokens=False)["input_ids"]
    return {i: word for (i, word), tokens in zip(words.items(), encoded) if list(tokens) == [i]}


@torch.no_grad()
def slot_logprobs(model: torch.nn.Module, encoder: prompt_encoding.PromptEncoder, rows: Sequence[Mapping[str, Any]],
                  batch_size: int) -> torch.Tensor:
    """Log-probabilities over the vocabulary at the answer slot, one row per input row (the token
    after the text before the slot for a causal LM, the mask for a masked LM)."""
    base, head = lm_parts(model)
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(rows), batch_size):
        encoded = [encoder.encode(row) for row in rows[start : start + batch_size]]
        ids = pad([e.input_ids for e in encoded], pad_id)
        mask = pad([[1] * len(e.input_ids) for e in encoded], 0)
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        read = torch.tensor([e.slot - 1 if encoder.kind == "causal" else e.slot for e in encoded])
        out.append(torch.log_softmax(head(hidden[torch.arange(len(encoded)), read]).float(), dim=-1))
    return torch.cat(out)


def top_words(class_sums: torch.Tensor, vocabulary: Sequence[int], k: int) -> list[list[int]]:
    """The ``k`` vocabulary ids with the highest summed log-probability, per class (a row of
    ``class_sums``); ties keep the vocabulary's order."""
    if k > len(vocabulary):
        raise PromptworthError(
            f"words_k {k} is more than the {len(vocabulary)} words of the model's vocabulary that a label "
            "can be (whole words of one token): lower words_k"
        )
    ids = torch.tensor(list(vocabulary))
    order = torch.argsort(class_sums[:, ids], dim=1, descending=True, stable=True)[:, :k]
    return [ids[row].tolist() for row in order]


def accuracy(logprobs: torch.Tensor, labels: torch.Tensor, words: Sequence[int]) -> float:
    """Zero-shot accuracy of the rows whose label has a word in ``words`` (class i -> words[i]),
    each predicted as the class of its most likely word."""
    rows = labels < len(words)
    if not bool(rows.any()):
        return 0.0
    predicted = logprobs[rows][:, list(words)].argmax(dim=1)
    return float((predicted == labels[rows]).float().mean())


def rank_assignments(candidates: Sequence[Sequence[int]], logprobs: torch.Tensor, labels: Sequence[int],
                     n: int) -> list[tuple[tuple[int, ...], float]]:
    """The ``n`` best assignments (one distinct word per class, from each class's candidates, in
    their order of likelihood) by zero-shot accuracy on ``logprobs``' rows, built class by class:
    each class's words extend the ``n`` best partial assignments, scored on the rows of the classes
    assigned so far (with two classes: every pair). Ties go to the more likely words."""
    gold = torch.as_tensor(list(labels), dtype=torch.long)
    rank = [{word: i for i, word in enumerate(words)} for words in candidates]
    beam: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    for words in candidates:
        extended = [assigned + (word,) for assigned, _ in beam for word in words if word not in assigned]
        if not extended:
            raise PromptworthError("no assignment of distinct words to the classes: raise words_k")
        scored = [(a, accuracy(logprobs, gold, a)) for a in extended]
        scored.sort(key=lambda item: (-item[1], sum(rank[c][w] for c, w in enumerate(item[0])), item[0]))
        beam = scored[:n]
    return beam


@dataclass(frozen=True)
class WordRanking:
    sums: torch.Tensor  # (classes, vocabulary): log-probabilities summed over each class's training rows
    per_class: list[list[int]]  # each class's candidate words (ids), most likely first
    assignments: list[tuple[tuple[int, ...], float]]  # the best assignments and their zero-shot dev accuracy


def rank_words(model: torch.nn.Module, encoder: prompt_encoding.PromptEncoder, rows: Mapping[str, Sequence[Mapping[str, Any]]],
               num_labels: int, vocabulary: Mapping[int, str], k: int, n: int, batch_size: int) -> WordRanking:
    """Steps 1 and 2 of the word search (see the module) with ``encoder``'s template."""
    train_lp = slot_logprobs(model, encoder, rows["train"], batch_size)
    dev_lp = slot_logprobs(model, encoder, rows["dev"], batch_size)
    train_labels = torch.tensor([int(row["label"]) for row in rows["train"]])
    sums = torch.stack([train_lp[train_labels == c].sum(dim=0) for c in range(num_labels)])
    per_class = top_words(sums, list(vocabulary), k)
    assignments = rank_assignments(per_class, dev_lp, [int(row["label"]) for row in rows["dev"]], n)
    return WordRanking(sums, per_class, assignments)


def template_source(parts: Sequence[prompts.Part]) -> str:
    """A template's parts written back in the template language."""
    out = []
    for part in parts:
        if isinstance(part, prompts.Text):
            out.append(part.text.replace("{", "{{").replace("}", "}}"))
        elif isinstance(part, prompts.Slot):
            out.append("{" + prompts.SLOT + "}")
        else:
            filters = "".join("|" + ":".join((name, *args)) for name, args in part.filters)
            out.append("{" + part.name + filters + "}")
    return "".join(out)


def pool_templates(task: TaskSpec) -> list[str]:
    """The offline candidates: the task's templates, and each with every phrase of
    :data:`BRIDGES` in place of the text right before its answer slot (in order, no repeats)."""
    out = list(task.templates.values())
    for source in task.templates.values():
        template = prompts.parse_template(source)
        slot = template.slot_index
        if not slot or not isinstance(template.parts[slot - 1], prompts.Text):
            continue
        for bridge in BRIDGES:
            text = f" {bridge} " if bridge else " "
            parts = (*template.parts[: slot - 1], prompts.Text(text), *template.parts[slot:])
            out.append(template_source(parts))
    return list(dict.fromkeys(out))


def usable_templates(sources: Sequence[str], verbalizer: verbalizers.Verbalizer, backbone: load.Backbone,
                     max_length: int) -> tuple[list[str], list[dict[str, str]]]:
    """``(usable, dropped)``: the candidates that are templates this backbone can read (one answer
    slot; for a causal LM input before it and none after it), and why each other one is not. None
    usable is an error."""
    usable, dropped = [], []
    for source in dict.fromkeys(sources):
        try:
            prompt_encoding.PromptEncoder(template=prompts.parse_template(source), verbalizer=verbalizer,
                                  tokenizer=backbone.tokenizer, kind=backbone.kind, max_length=max_length)
        except PromptworthError as exc:
            dropped.append({"template": source, "why": str(exc)})
            continue
        usable.append(source)
    if not usable:
        first = f" (first: {dropped[0]['why']})" if dropped else ""
        raise PromptworthError(
            f"a template without an answer slot from the search: none of its {len(dropped)} candidates is a "
            f"template the model can read{first}"
        )
    return usable, dropped


def t5_fill(tokens: Sequence[int], sentinels: Sequence[int], stop: set[int], tokenizer: Any) -> tuple[str, str]:
    """The two spans of a T5 output: the text after ``<extra_id_0>`` and after ``<extra_id_1>``,
    up to ``<extra_id_2>``, the end of the sequence or another special token."""
    spans: list[list[int]] = [[], []]
    current = None
    for token in tokens:
        if token in sentinels[:2]:
            current = list(sentinels[:2]).index(token)
        elif token in stop:
            break
        elif current is not None:
            spans[current].append(token)
    first, second = (tokenizer.decode(span, skip_special_tokens=True).strip() for span in spans)
    return first, second


def filled_template(first: str, second: str, pair: bool) -> str:
    """LM-BFF's template from T5's spans: ``{text_a} <first> {mask} <second>`` (pairs: then ``{text_b}``)."""
    def literal(text: str) -> str:
        return (" " + text.replace("{", "{{").replace("}", "}}")) if text else ""

    return "{text_a}" + literal(first) + " {mask}" + literal(second) + (" {text_b}" if pair else "")


@torch.no_grad()
def t5_templates(generator: str, rows: Sequence[Mapping[str, Any]], words: Sequence[str], pair: bool,
                 beam: int, max_new_tokens: int = T5_MAX_NEW_TOKENS) -> list[tuple[str, float]]:
    """LM-BFF's template generation: T5 reads each training row as ``<text_a> <extra_id_0> <its
    label word> <extra_id_1>`` (pairs: then ``<text_b>``); one beam search decodes the spans, each
    hypothesis scored by its log-probability summed over the rows. ``(template, score)`` for the
    ``beam`` best, best first."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(generator)
        model = AutoModelForSeq2SeqLM.from_pretrained(generator).eval()
    except (OSError, ValueError) as exc:
        raise PromptworthError(f"cannot load the template generator {generator}: {exc}") from None
    sentinels = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(3)]
    if tokenizer.unk_token_id in sentinels or None in sentinels:
        raise PromptworthError(f"the template generator {generator} has no sentinel tokens <extra_id_0..2> (a T5 model)")
    texts = [f"{row['text_a']} <extra_id_0> {word} <extra_id_1>" + (f" {row['text_b']}" if pair else "")
             for row, word in zip(rows, words)]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
    encoded = model.get_encoder()(**inputs)
    start = model.config.decoder_start_token_id
    stop = {tokenizer.eos_token_id, sentinels[2], *(i for i in tokenizer.all_special_ids if i not in sentinels[:2])}
    live: list[tuple[list[int], float]] = [([start, sentinels[0]], 0.0)]
    done: list[tuple[list[int], float]] = []
    for _ in range(max_new_tokens):
        grown = []
        for tokens, score in live:
            decoder_ids = torch.tensor([tokens]).expand(len(rows), -1)
            logits = model(encoder_outputs=encoded, attention_mask=inputs["attention_mask"],
                           decoder_input_ids=decoder_ids).logits[:, -1]
            summed = torch.log_softmax(logits.float(), dim=-1).sum(dim=0)
            best = torch.topk(summed, beam)
            grown += [(tokens + [int(t)], score + float(s)) for s, t in zip(best.values, best.indices)]
        grown.sort(key=lambda item: -item[1])
        live = []
        for tokens, score in grown[:beam]:
            (done if tokens[-1] in stop else live).append((tokens, score))
        if not live:
            break
    done += live  # what reached the length limit counts too
    done.sort(key=lambda item: -item[1])
    out = [(filled_template(*t5_fill(tokens[1:], sentinels, stop, tokenizer), pair), score)
           for tokens, score in done[:beam]]
    best: dict[str, float] = {}
    for source, score in out:  # best first: a template decoded twice keeps its better score
        best.setdefault(source, score)
    return list(best.items())
