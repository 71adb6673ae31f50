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
from typing import Any, Mapping

import torch

from promptworth.backbones import flops, load, resolve
from promptworth.backbones.registry import LoadOptions
from promptworth.data.split_folder import manifest_sha256
from promptworth.data.task_files import find_task
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods import prompt_encoding, templates as prompts, verbalizers
from promptworth.methods.build import build_method
from promptworth.methods.objectives.base import Method
from promptworth.methods.objectives.head import choice_fields
from promptworth.methods.registry import EXTRAS, search_kind
from promptworth.methods.search_result import FORMAT
from promptworth.methods.specs import MethodSpec
from promptworth.methods.templates import Chosen, SEARCHED_TEMPLATE
from promptworth.paths import study_relative
from promptworth.training.evaluation import evaluate
from promptworth.training.loop import fit
from promptworth.training.run import load_rows
from promptworth.training.runtime import git_commit, pick_device, resolve_precision, seed_everything, versions
from promptworth.training.search_candidates import (
    BRIDGES,
    pool_templates,
    rank_words,
    t5_templates,
    usable_templates,
    word_vocabulary,
)
from promptworth.training.settings import TrainConfig


@dataclass(frozen=True)
class SearchRequest:
    task: str
    method: MethodSpec
    split_dir: Path
    model: str
    seed: int
    config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model_options: LoadOptions = LoadOptions()  # the weights' dtype, trust_remote_code
    template: str | None = None  # the task template (registry name) the word search starts from
    # LM-BFF's template generator, a T5 folder or pinned hub id (None: the offline pool)
    generator: str | None = None
    threads: int = 0
    device: str = "auto"  # --device (promptworth.training.devices)
    progress: bool = True  # a progress bar for each fine-tune
    task_files: tuple[Path, ...] = ()  # task files whose tasks join the built-in ones (``task`` may be theirs)


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
        method = self.method(chosen)
        method.see_split(self.rows)
        dev = [method.encode(row) for row in self.rows["dev"]]
        result = evaluate(method, model, dev, self.task, self.request.config, self.device, self.precision,
                          "dev (zero-shot)", flops.model_shape(model))
        return result.metrics[self.task.metric]

    def finetuned(self, chosen: Chosen) -> float:
        """The dev score of the method fine-tuned with ``chosen`` (the run's settings and seed)."""
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
    template = context.request.method.run_template(context.request.template)
    name, source = prompts.task_template(task, template, backbone.kind)
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
        t5 = resolve.resolve_model(request.generator)
        generated = t5_templates(t5.path, context.rows["train"], words, pair, options["templates_beam"])
        sources = [source for source, _ in generated]
        generator: dict[str, Any] = {"kind": "t5", "path": request.generator, "sha256": resolve.weights_sha256(t5),
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
    start = time.perf_counter()
    spec = request.method
    kind = search_kind(spec)
    if kind is None:
        raise PromptworthError(f"method {spec.name} searches nothing: give a method with the extra autowords or "
                               "autotemplate (e.g. prompt-autowords)")
    if request.threads:
        torch.set_num_threads(request.threads)
    task = find_task(request.task, request.task_files)
    backbone = load.open_backbone(request.model, request.model_options)
    rows = load_rows(task, request.split_dir, None, spec)
    device = pick_device(request.device)
    context = _Context(request, task, backbone, rows, device, resolve_precision(request.config.precision, device))
    extra = next(e for e in spec.extras if EXTRAS[e].search)
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
