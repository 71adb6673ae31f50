"""Every objective, tuning and extra a method can be made of (torch-free): a new tuning or extra
is one entry here plus its behaviour's module."""

from __future__ import annotations

from promptworth.backbones.registry import MINILM
from promptworth.methods.parts import Extra, Option, Tuning


OBJECTIVES: dict[str, str] = {
    "prompt": "the task's template; label scores are the label words' log-probabilities at the answer slot",
    "head": "a new classifier on the backbone ([CLS] for masked LMs, the last token for causal LMs)",
    "null": "the task's template with the null verbalizer (null_words)",
    "misleading": "the task's template with misleading label words (misleading_words: each label another's word)",
    "majority": "no model: every example gets the evaluation set's most frequent class (LM-BFF's reference row)",
    "setfit": "SetFit: a logistic regression on a sentence encoder's embeddings, fit on the training examples "
              "after the encoder's contrastive tuning (the setfit package; its own backbone, below)",
}


# Objectives that run on a backbone of their own (a short name), whatever model a study names: a study's
# runs of such a method are planned, filed and recorded under that backbone (StudyConfig.backbone_for).
OBJECTIVE_BACKBONES: dict[str, str] = {"setfit": MINILM}


# The objectives that read labels through a template and label words, each with the task registry
# key its words come from.
WORDS_KEYS: dict[str, str] = {"prompt": "label_words", "null": "null_words", "misleading": "misleading_words"}
PROMPT_OBJECTIVES = tuple(WORDS_KEYS)


# Objectives with parameters that the general tunings train (majority has none; setfit trains
# only with its own tuning, contrastive).
TRAINED_OBJECTIVES = ("prompt", "head", "null", "misleading")


# Where the tunings' default learning rates were chosen (their ``source``).
_CHOSEN_ON = "on SST-2's visible K=16 splits 16-42 and 16-13, 50 steps (config/studies/method-defaults.yaml, reports/method-defaults)"


# Where a soft prompt's vectors or a prefix's keys and values start: the frozen model's own for real
# tokens (the template's words, cycled, where the method has a template; else random vocabulary tokens).
_INIT = Option("init", str, "template", "start from the template's words (cycled) or from random vocabulary tokens",
               choices=("template", "vocab"))


TUNINGS: dict[str, Tuning] = {t.name: t for t in (
    Tuning("full", "every weight", TRAINED_OBJECTIVES, unchanged_at_start=True, behaviour="promptworth.methods.tunings.full:Full"),
    Tuning(
        "lora", "low-rank updates of the attention projections (PEFT's LoRA; its default modules per "
        "architecture); a new head too", TRAINED_OBJECTIVES,
        options=(
            Option("r", int, 8, "rank of the update", minimum=1),
            Option("alpha", float, 16.0, "scale: the update is multiplied by alpha / r", minimum=0),
            Option("dropout", float, 0.0, "dropout on the update's input", minimum=0, maximum=1),
        ),
        unchanged_at_start=True,  # PEFT starts the update's second factor at zero
        training={"learning_rate": 2e-3},
        source=f"chosen from 1e-4, 5e-4, 2e-3 {_CHOSEN_ON}: mean dev 0.78 (5e-4: 0.75, 1e-4: 0.63); the "
        "largest of the grid, as short training favours; Hu et al. 2021 used 4e-4 to 5e-4 for longer runs",
        behaviour="promptworth.methods.tunings.lora:Lora"),
    Tuning(
        "bitfit", "bias terms only (linear layers of the backbone without a bias get one, at zero); a new head too", TRAINED_OBJECTIVES,
        unchanged_at_start=True,
        training={"learning_rate": 1e-3},
        source=f"chosen from 3e-4, 1e-3, 3e-3 {_CHOSEN_ON}: mean dev 0.80 (3e-4: 0.77, 3e-3: 0.75); "
        "Ben Zaken et al. 2022 used 1e-4 to 1e-3",
        behaviour="promptworth.methods.tunings.bitfit:BitFit"),
    Tuning(
        "fixlayers", "every weight but the embeddings and the lowest `layers` layers (LM-BFF's "
        "--fix_layers)", TRAINED_OBJECTIVES,
        options=(Option("layers", int, None, "lower layers frozen (default: half of them)", minimum=0),),
        unchanged_at_start=True,
        behaviour="promptworth.methods.tunings.fixlayers:FixLayers"),
    Tuning(
        "softprompt", "only `tokens` vectors placed before the input (the model frozen; Lester et al. 2021)",
        PROMPT_OBJECTIVES,
        options=(Option("tokens", int, 16, "prompt vectors", minimum=1), _INIT),
        training={"learning_rate": 3e-2},
        source=f"chosen from 3e-3, 3e-2, 3e-1 {_CHOSEN_ON}: mean dev 0.83 (3e-3: 0.70, 3e-1: 0.67); "
        "Lester et al. 2021 used 0.3 with Adafactor",
        behaviour="promptworth.methods.tunings.softprompt:SoftPromptTuning"),
    Tuning(
        "prefix", "only `tokens` key/value vectors at every layer, which every input token attends to (the "
        "model frozen; Li & Liang 2021, P-tuning v2)", PROMPT_OBJECTIVES,
        options=(Option("tokens", int, 16, "prefix positions per layer", minimum=1), _INIT),
        training={"learning_rate": 1e-2},
        source=f"chosen from 1e-3, 1e-2, 1e-1 {_CHOSEN_ON}: mean dev 0.86 (1e-3: 0.75, 1e-1: 0.52, diverged); "
        "P-tuning v2 (Liu et al. 2022) used 5e-3 to 1e-2",
        behaviour="promptworth.methods.tunings.prefix:PrefixTuning"),
    Tuning(
        "ptuning", "every weight, and a prompt encoder (PEFT's: an MLP or an LSTM) that makes `tokens` vectors "
        "placed before the input (P-tuning, Liu et al. 2021)", PROMPT_OBJECTIVES,
        options=(
            Option("tokens", int, 8, "prompt vectors", minimum=1),
            Option("encoder", str, "mlp", "the prompt encoder", choices=("mlp", "lstm")),
        ),
        behaviour="promptworth.methods.tunings.ptuning:PTuning"),
    Tuning("none", "nothing: the model is used as it is, no training step (tuning-free prompting)",
           (*PROMPT_OBJECTIVES, "majority"), steps=False, unchanged_at_start=True, behaviour="promptworth.methods.tunings.none:NoTuning"),
    Tuning(
        "contrastive", "every weight of a sentence encoder, on pairs of training examples (cosine similarity 1 "
        "for the same class, 0 for another: SetFit's first phase); then the setfit objective's head is fit",
        ("setfit",),
        options=(Option("pairs", int, 20, "pairs per training example and per kind (same class, other class): "
                        "SetFit's num_iterations; an epoch is 2 x pairs x the training examples", minimum=1),),
        # protocol epochs: one epoch of pairs, whatever a study's step settings say (max_steps a cap that
        # one epoch stays under up to 4,000 training examples)
        training={"protocol": "epochs", "epochs": 1.0, "min_steps": 0, "max_steps": 10000, "learning_rate": 2e-5,
                  "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_length": 256},
        source="setfit 1.2.0's defaults: body_learning_rate 2e-5, batch_size 16, num_epochs 1, warmup_proportion "
        "0.1, l2_weight 0.01; max_length all-MiniLM-L6-v2's max_seq_length; 20 pairs per example as Tunstall et al. "
        "2022 (R = 20)",
        # every weight of the encoder trains, as full's; the pairs and the head are the objective's
        behaviour="promptworth.methods.tunings.full:Full"),
    Tuning(
        "frozen", "only the new head (a probe of the frozen model)", ("head",),
        training={"learning_rate": 1e-2},
        source=f"chosen from 1e-3, 1e-2, 1e-1 {_CHOSEN_ON}: mean dev 0.73 (1e-1: 0.72, 1e-3: 0.64)",
        behaviour="promptworth.methods.tunings.frozen:Frozen"),
)}


def _ranking_options(prefix: str, what: str, kept: int, lmbff: tuple[int, int] | None) -> tuple[Option, Option]:
    """The last two steps of a search as options: ``<prefix>_n`` candidates (``what``) kept by
    their zero-shot dev score, the ``<prefix>_finetune`` best of them fine-tuned to choose by dev score."""
    n_ref, tuned_ref = (f" (LM-BFF: {lmbff[0]})", f"LM-BFF: {lmbff[1]}; ") if lmbff else ("", "")
    return (Option(f"{prefix}_n", int, kept, f"{what} kept by zero-shot dev score{n_ref}", minimum=1),
            Option(f"{prefix}_finetune", int, 2, f"best {what} fine-tuned to choose by dev score "
                   f"({tuned_ref}0: the zero-shot best)", minimum=0))


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("calibrate", "contextual calibration: the label probabilities divided by those of content-free inputs "
          # the inputs of promptworth.methods.extras.calibrate.CONTENT_FREE (tests/test_method_specs.py ties them)
          "('N/A', '', '[MASK]': every text field set to each, the probabilities averaged), "
          "then normalised", PROMPT_OBJECTIVES, paper="Zhao et al. 2021", behaviour="promptworth.methods.extras.calibrate:Calibrate"),
    Extra("context", "in-context learning: up to `demos` training examples (chosen and ordered by the train seed), "
          "each the template with its label word filled in, before the query (a masked LM: after it); whole "
          "demonstrations, the farthest from the query first, are dropped until the input fits max_length", PROMPT_OBJECTIVES,
          paper="GPT-3 (Brown et al. 2020); LM-BFF (Gao et al. 2021)",
          options=(Option("demos", int, 32, "the most demonstrations in context", minimum=1),),
          training={"max_length": 256}, excludes=("demos",), needs_training_rows=True, behaviour="promptworth.methods.extras.demonstrations:InContext"),
    Extra("demos", "LM-BFF's demonstrations: one training example per class (the template with its label word "
          "filled in) beside the input, sampled afresh for each input at each step; dev and test average the "
          "label log-scores over `sets` sampled sets", PROMPT_OBJECTIVES, paper="LM-BFF (Gao et al. 2021)",
          options=(
              Option("filter", str, "sbert", "which training examples may be sampled: all (random) or each class's "
                     "`keep` % most similar to the input by all-MiniLM-L6-v2 embeddings (sbert)",
                     choices=("sbert", "random")),
              Option("keep", int, 50, "sbert filter: the share (%) of each class kept", minimum=1, maximum=101),
              Option("sets", int, 4, "demonstration sets averaged at dev and test (LM-BFF: 16)", minimum=1),
          ),
          training={"max_length": 256}, excludes=("context", "calibrate"), needs_training_rows=True, behaviour="promptworth.methods.extras.demonstrations:SampledDemos"),
    # LM-BFF's searches (Gao et al. 2021, section 5); their reference values are k = n = 100 and the
    # top 10 fine-tuned; the defaults here are sized for a CPU (docs/methods.md)
    Extra("autowords", "label words found by LM-BFF's search (promptworth search): the top words_k words per "
          "class by summed log-probability at the answer slot over the class's training rows, their "
          "assignments pruned to the words_n best by zero-shot dev accuracy, the words_finetune best of them "
          "fine-tuned and the best kept by dev score", ("prompt",), paper="LM-BFF (Gao et al. 2021)",
          options=(Option("words_k", int, 16, "candidate words per class (LM-BFF: 100)", minimum=1),
                   *_ranking_options("words", "assignments", 16, (100, 10))),
          excludes=("autotemplate", "context", "demos"), needs_training_rows=True, search="words"),
    Extra("autotemplate", "a template found by a search (promptworth search): candidates from a T5 generator "
          "(LM-BFF's, --generator) or, offline, the task's templates with other phrases before the answer "
          "slot; the templates_n best by zero-shot dev score kept, the templates_finetune best fine-tuned and "
          "the best kept by dev score", ("prompt",), paper="LM-BFF (Gao et al. 2021)",
          options=(*_ranking_options("templates", "templates", 8, None),
                   Option("templates_beam", int, 8, "beam width of the T5 generator (LM-BFF: 100)", minimum=1)),
          excludes=("autowords", "context", "demos"), needs_training_rows=True, search="template"),
)}




def search_kind(spec: "MethodSpec") -> str | None:
    """``words`` or ``template`` for a method that applies a search's result, else None."""
    kinds = [EXTRAS[extra].search for extra in spec.extras if EXTRAS[extra].search]
    return kinds[0] if kinds else None
