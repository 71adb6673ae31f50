"""LM-BFF's searches (Gao et al. 2021, section 5): label words and templates found automatically.

A method with the extra ``autowords`` or ``autotemplate`` (:mod:`promptworth.methods.specs`)
trains with what a search chose; the search runs once per (task, split, seed) and writes a result
file (``promptworth search``), which ``promptworth train --search FILE`` applies and its run
record cites (path and sha256). The file holds the choice, every ranked candidate with its scores,
the options, the model's sha256 and the split's manifest sha256.

Label words (``autowords``), as LM-BFF's ``tools/generate_labels.py``:

1. with the task's template, for each class, the ``words_k`` words of the vocabulary with the
   highest log-probability at the answer slot summed over the class's training rows (only whole
   words: a single token that decodes to letters and that the space-prefixed word tokenizes to);
2. assignments (one word per class, distinct words) are built class by class and pruned to the
   ``words_n`` best by zero-shot accuracy on **dev** (LM-BFF prunes on train; issue #15 asks for
   dev), ties to the more likely words; with two classes this is every pair of candidates;
3. the ``words_finetune`` best are fine-tuned (the method's tuning, the run's training settings
   and seed) and the best dev score wins (0: the zero-shot best).

Templates (``autotemplate``): candidates come from a T5 generator when one is given (LM-BFF's
``tools/generate_template.py``: T5 fills ``<extra_id_0>`` and ``<extra_id_1>`` around the label
word after the input, one beam search whose scores are summed over the training rows), else from
the offline pool (the task's registry templates, and each with other phrases, :data:`BRIDGES`,
in place of its text before the answer slot). Candidates that are not usable templates (no answer
slot, or input after it for a causal model) are dropped; the rest are ranked by zero-shot dev
score (the task's metric), the ``templates_n`` best kept, the ``templates_finetune`` best
fine-tuned and the best dev score wins.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from promptworth.data.split_folder import manifest_sha256
from promptworth.data.tasks import TaskSpec, get_task
from promptworth.errors import PromptworthError
from promptworth.backbones import flops, load, resolve
from promptworth.methods import prompt_encoding, templates as prompts, verbalizers
from promptworth.methods.registry import EXTRAS, SEARCH_EXTRAS, search_kind
from promptworth.methods.templates import Chosen, SEARCHED_TEMPLATE
from promptworth.methods.specs import MethodSpec
from promptworth.methods.objectives.base import Method
from promptworth.methods.build import build_method
from promptworth.methods.objectives.head import choice_fields
from promptworth.methods.features import pad
from promptworth.backbones.architecture import lm_parts
from promptworth.training.train_config import TrainConfig
from promptworth.methods.search_result import FORMAT

# Phrases the offline template pool puts before the answer slot, in place of a template's own.
BRIDGES = ("It was", "It is", "This is", "All in all, it was", "In summary, it was", "Overall, it was",
           "The answer is", "")
# The most tokens the T5 generator adds (both spans together, LM-BFF's default length).
T5_MAX_NEW_TOKENS = 20


@dataclass(frozen=True)
class SearchRequest:
    task: str
    method: MethodSpec
    split_dir: Path
    model: str
    seed: int
    config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    template: str | None = None  # the task template (registry name) the word search starts from
    generator: str | None = None  # a T5 folder: LM-BFF's template generator (None: the offline pool)
    threads: int = 0
    progress: bool = True  # a progress bar for each fine-tune


@dataclass(frozen=True)
class Candidate:
    """One ranked candidate: label words or a template, and its scores."""

    choice: Chosen
    zero_shot_dev: float
    finetuned_dev: float | None = None

    def as_dict(self) -> dict[str, Any]:
        what = {"label_words": dict(self.choice.label_words)} if self.choice.label_words is not None else {
            "template": self.choice.template}
        return {**what, "zero_shot_dev": self.zero_shot_dev, "finetuned_dev": self.finetuned_dev}


# ---------------------------------------------------------------------------------------------
# Label words


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


# ---------------------------------------------------------------------------------------------
# Templates


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


# ---------------------------------------------------------------------------------------------
# Running a search


@dataclass
class _Context:
    """What every step of a search reads: the task, backbone, split rows and settings."""

    request: SearchRequest
    task: TaskSpec
    backbone: load.Backbone
    rows: dict[str, list[dict[str, Any]]]
    device: torch.device
    precision: str
    finetunes: int = 0

    def method(self, chosen: Chosen) -> Method:
        return build_method(self.request.method, self.task, self.backbone, self.request.config.max_length,
                            self.request.template, chosen)

    def zero_shot(self, chosen: Chosen, model: torch.nn.Module) -> float:
        from promptworth.training.train import evaluate

        method = self.method(chosen)
        method.see_split(self.rows)
        dev = [method.encode(row) for row in self.rows["dev"]]
        result = evaluate(method, model, dev, self.task, self.request.config, self.device, self.precision,
                          "dev (zero-shot)", flops.model_shape(model))
        return result.metrics[self.task.metric]

    def finetuned(self, chosen: Chosen) -> float:
        """The dev score of the method fine-tuned with ``chosen`` (the run's settings and seed)."""
        from promptworth.training.train import fit, seed_everything

        method = self.method(chosen)
        method.see_split(self.rows)
        features = {part: [method.encode(row) for row in self.rows[part]] for part in ("train", "dev")}
        seed_everything(self.request.seed)
        model = method.load_model().to(self.device)
        result = fit(method, model, features["train"], features["dev"], [], self.task, self.request.config,
                     self.request.seed, self.device, self.precision, progress=self.request.progress)
        self.finetunes += 1
        return float(result.dev_score)


def _choose(context: _Context, ranked: list[Candidate], finetune: int) -> tuple[Candidate, list[Candidate]]:
    """Fine-tune the ``finetune`` best of ``ranked`` and keep the best dev score (ties: the better
    zero-shot rank); with none fine-tuned, the zero-shot best."""
    tuned = [dataclasses.replace(c, finetuned_dev=context.finetuned(c.choice)) if i < finetune else c
             for i, c in enumerate(ranked)]
    best = max(tuned[: max(1, finetune)], key=lambda c: c.finetuned_dev if finetune else c.zero_shot_dev)
    return best, tuned


def _fixed_words(task: TaskSpec, what: str) -> None:
    if task.is_regression or choice_fields(task) or not task.labels:
        raise PromptworthError(f"the {what} search needs a classification task with one word per class; "
                               f"{task.name} has {'scores' if task.is_regression else 'row-dependent words'}")


def search_words(context: _Context, options: Mapping[str, Any]) -> dict[str, Any]:
    task, backbone, config = context.task, context.backbone, context.request.config
    _fixed_words(task, "label-word")
    vocabulary = word_vocabulary(backbone.tokenizer)
    if not vocabulary:
        raise PromptworthError(f"model {backbone.ref.name}: no token of its vocabulary is a whole word")
    name, source = prompts.task_template(task, context.request.template, backbone.kind)
    placeholder = next(iter(vocabulary.values()))  # any one-token word: one mask for a masked LM
    verbalizer = verbalizers.build_verbalizer(task.labels, {label: placeholder for label in task.labels}, own_words=False)
    encoder = prompt_encoding.PromptEncoder(template=prompts.parse_template(source), verbalizer=verbalizer,
                                    tokenizer=backbone.tokenizer, kind=backbone.kind, max_length=config.max_length)
    model = load.load_model(backbone.ref, "masked_lm" if backbone.kind == "mlm" else "causal_lm").eval()
    ranking = rank_words(model, encoder, context.rows, task.num_labels, vocabulary, options["words_k"],
                         options["words_n"], config.eval_batch_size)
    del model
    sums, per_class, assignments = ranking.sums, ranking.per_class, ranking.assignments
    ranked = [Candidate(Chosen(label_words={label: vocabulary[w] for label, w in zip(task.labels, words)}), score)
              for words, score in assignments]
    best, ranked = _choose(context, ranked, options["words_finetune"])
    return {
        "template_name": name, "template": source, "label_words": dict(best.choice.label_words),
        "words_per_class": {label: [{"word": vocabulary[w], "logprob_sum": round(float(sums[c, w]), 4)} for w in words]
                            for c, (label, words) in enumerate(zip(task.labels, per_class))},
        "vocabulary_words": len(vocabulary),
        "candidates": [c.as_dict() for c in ranked],
    }


def search_template(context: _Context, options: Mapping[str, Any]) -> dict[str, Any]:
    task, backbone, request = context.task, context.backbone, context.request
    _fixed_words(task, "template")
    verbalizer = verbalizers.build_verbalizer(task.labels, task.label_words)
    if request.generator:
        words = [verbalizer.for_row({})[int(row["label"])][0] for row in context.rows["train"]]
        pair = "text_b" in task.fields
        generated = t5_templates(request.generator, context.rows["train"], words, pair, options["templates_beam"])
        sources = [source for source, _ in generated]
        generator: dict[str, Any] = {"kind": "t5", "path": request.generator,
                                     "sha256": resolve.weights_sha256(resolve.resolve_model(request.generator)),
                                     "generated": [{"template": s, "score": round(v, 4)} for s, v in generated]}
    else:
        sources = pool_templates(task)
        generator = {"kind": "pool", "bridges": list(BRIDGES)}
    usable, dropped = usable_templates(sources, verbalizer, backbone, request.config.max_length)
    model = load.load_model(backbone.ref, "masked_lm" if backbone.kind == "mlm" else "causal_lm").eval()
    scored = [Candidate(Chosen(template=s), context.zero_shot(Chosen(template=s), model)) for s in usable]
    del model
    order = {s: i for i, s in enumerate(usable)}
    scored.sort(key=lambda c: (-c.zero_shot_dev, order[c.choice.template]))  # ties: the generator's order
    best, ranked = _choose(context, scored[: options["templates_n"]], options["templates_finetune"])
    return {"template_name": SEARCHED_TEMPLATE, "template": best.choice.template, "label_words": dict(task.label_words),
            "generator": generator, "dropped": dropped, "candidates": [c.as_dict() for c in ranked]}


def run_search(request: SearchRequest) -> dict[str, Any]:
    """Run the search of ``request.method`` (its extra ``autowords`` or ``autotemplate``) and
    return the result file's content (see docs/contracts.md); nothing is written here."""
    from promptworth.training.train import (git_commit, load_rows, pick_device, resolve_precision, seed_everything,
                                            study_relative, versions)

    start = time.perf_counter()
    spec = request.method
    kind = search_kind(spec)
    if kind is None:
        raise PromptworthError(f"method {spec.name} searches nothing: give a method with the extra autowords or "
                               "autotemplate (e.g. prompt-autowords)")
    if request.threads:
        torch.set_num_threads(request.threads)
    task = get_task(request.task)
    backbone = load.open_backbone(request.model)
    rows = load_rows(request.task, request.split_dir, None, spec)
    device = pick_device()
    context = _Context(request, task, backbone, rows, device, resolve_precision(request.config.precision, device))
    extra = next(e for e in spec.extras if e in SEARCH_EXTRAS)
    options = spec.resolved_options()
    seed_everything(request.seed)
    found = (search_words if kind == "words" else search_template)(context, options)
    return {
        "format": FORMAT,
        "kind": kind,
        "task": task.name,
        "method": spec.name,
        "method_parts": spec.describe(),
        "options": {o.name: options[o.name] for o in EXTRAS[extra].options},
        "model": backbone.ref.name,
        "model_sha256": resolve.weights_sha256(backbone.ref),
        "model_kind": backbone.kind,
        "split_dir": study_relative(request.split_dir),
        "split_manifest_sha256": manifest_sha256(Path(request.split_dir)),
        "seed": request.seed,
        "hyperparameters": dataclasses.asdict(request.config),
        **found,
        "finetunes": context.finetunes,
        "wall_s": round(time.perf_counter() - start, 3),
        "versions": versions(),
        "git_commit": git_commit(),
    }


# ---------------------------------------------------------------------------------------------
# Applying a result
