"""LM-BFF's searches of label words and templates (promptworth.training.search), on tiny models:
a causal LM with a planted answer, a random T5 built here, and the result file a run applies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import sentiment_split, tiny_model

from promptworth.analysis.results import record_row
from promptworth.cli import main
from promptworth.data import tasks
from promptworth.files import sha256_file
from promptworth.errors import PromptworthError
from promptworth.methods import (
    prompt_encoding,
    registry,
    search_result,
    specs as method_specs,
    templates as prompts,
    verbalizers,
)
from promptworth.training import search, search_candidates
from promptworth.backbones import load as models, resolve
from promptworth.backbones.tiny_models import EXTRA, FILLER, NEGATIVE, POSITIVE, PUNCT

REPO = Path(__file__).resolve().parents[1]
SST2 = tasks.get_task("SST-2")
# a few steps: the searches' fine-tunes are whole runs
QUICK = ["--max-steps", "2", "--eval-every", "1", "--precision", "fp32", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "16-1", n_train=16, n_eval=8)


def _search(split: Path, out: Path, method: str = "prompt-autowords", *extra: str) -> int:
    return main(["search", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model",
                 str(tiny_model("llama")), "--seed", "1", "--out", str(out), *QUICK, *extra])


def _train(split: Path, out: Path, method: str, *extra: str) -> int:
    return main(["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model",
                 str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--test-limit", "8", *QUICK, *extra])


# ---------------------------------------------------------------------------------------------
# Label words


def test_the_words_a_label_can_be_are_whole_words_of_one_token():
    backbone = models.open_backbone(str(tiny_model("llama")))
    vocabulary = search_candidates.word_vocabulary(backbone.tokenizer)
    assert {"great", "terrible", "fun", "dull"} <= set(vocabulary.values()) and "good" not in vocabulary.values()
    for token, word in vocabulary.items():  # byte-level BPE: a word follows text with its space
        assert word.isalpha() and prompt_encoding.word_ids(backbone.tokenizer, word) == [token]
        assert backbone.tokenizer.decode([token]) == " " + word
    assert len(vocabulary) < 100 < len(backbone.tokenizer)  # pieces, punctuation and specials are left out


def _planted_model(folder: Path) -> tuple[Path, dict[str, str]]:
    """The tiny LLaMA with its layers silenced (each position's state is its own token's embedding)
    and two output rows planted: after 'fun' the word ' lovely' is by far the most likely, after
    'dull' the word ' grim'."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = tiny_model("llama")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        for cue, answer in (("fun", "lovely"), ("dull", "grim")):
            [cue_id] = prompt_encoding.word_ids(tokenizer, cue)
            [answer_id] = prompt_encoding.word_ids(tokenizer, answer)
            head[answer_id] = 50 * embeddings[cue_id] / embeddings[cue_id].norm()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, {"0": "grim", "1": "lovely"}


def _cue_rows(n: int, offset: int) -> list[dict]:
    """SST-2 rows whose last word tells the class: 'dull' (0) or 'fun' (1)."""
    return [{"idx": offset + i, "text_a": f"{FILLER[i % len(FILLER)]} film was {'fun' if i % 2 else 'dull'}",
             "label": i % 2} for i in range(n)]


def test_the_word_search_finds_the_planted_words(tmp_path):
    folder, planted = _planted_model(tmp_path / "planted")
    backbone = models.open_backbone(str(folder))
    vocabulary = search_candidates.word_vocabulary(backbone.tokenizer)
    template = prompts.parse_template("{text_a} {mask}")  # the cue is the token the answer follows
    verbalizer = verbalizers.build_verbalizer(SST2.labels, {"0": "cat", "1": "dog"})
    encoder = prompt_encoding.PromptEncoder(template=template, verbalizer=verbalizer, tokenizer=backbone.tokenizer,
                                    kind="causal", max_length=32)
    model = models.load_model(backbone.ref, "causal_lm").eval()
    rows = {"train": _cue_rows(8, 0), "dev": _cue_rows(6, 100)}
    ranking = search_candidates.rank_words(model, encoder, rows, 2, vocabulary, k=5, n=4, batch_size=3)
    assert [vocabulary[words[0]] for words in ranking.per_class] == [planted["0"], planted["1"]]
    best, accuracy = ranking.assignments[0]
    assert [vocabulary[w] for w in best] == [planted["0"], planted["1"]] and accuracy == 1.0
    assert len(ranking.assignments) == 4 and all(len(set(a)) == 2 for a, _ in ranking.assignments)
    scores = [score for _, score in ranking.assignments]
    assert scores == sorted(scores, reverse=True)


def test_assignments_are_built_class_by_class_and_ranked_by_accuracy():
    # 3 rows of class 0, 3 of class 1; word 0 wins class 0's rows (word 1 loses them), word 2 wins class 1's
    logprobs = torch.log_softmax(torch.tensor([[3.0, -2, 0, 0]] * 3 + [[0, 0, 3.0, 0]] * 3), dim=1)
    labels = [0, 0, 0, 1, 1, 1]
    ranked = search_candidates.rank_assignments([[1, 0], [0, 2]], logprobs, labels, n=3)
    assert ranked[0] == ((0, 2), 1.0)
    assert len(ranked) == 3 and (1, 1) not in [a for a, _ in ranked]  # one word never serves two classes
    with pytest.raises(PromptworthError, match="no assignment of distinct words"):
        search_candidates.rank_assignments([[0], [0]], logprobs, labels, n=3)


def test_more_candidate_words_than_the_vocabulary_has_is_one_clear_error(split, tmp_path, capsys):
    out = tmp_path / "found" / "words.json"
    status = _search(split, out, "my-words", "--objective", "prompt", "--extra", "autowords",
                     "--option", "words_k=100000")
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"promptworth: error: words_k 100000 is more than the \d+ words of the model's "
                        r"vocabulary that a label can be \(whole words of one token\): lower words_k", error), error
    assert not (tmp_path / "found").exists()  # nothing is written, not even the folder


# ---------------------------------------------------------------------------------------------
# Templates


def _tiny_t5(folder: Path) -> Path:
    """A random T5 with a word-level tokenizer that has the sentinels <extra_id_0..4>."""
    from tokenizers import AddedToken, Tokenizer, models as tok_models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    sentinels = [f"<extra_id_{i}>" for i in range(5)]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in dict.fromkeys(POSITIVE + NEGATIVE + FILLER + EXTRA + PUNCT + ["{", "}"] + sentinels):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([AddedToken(s, special=True) for s in sentinels])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", additional_special_tokens=sentinels)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                      num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("pair", [False, True])
def test_t5_fills_the_spans_around_the_label_word_into_templates_with_one_slot(pair, tmp_path):
    generator = _tiny_t5(tmp_path / "t5")
    rows = [{"text_a": "the film was good", "text_b": "it is fun", "label": 1},
            {"text_a": "a dull plot", "text_b": "it is bad", "label": 0}]
    found = search_candidates.t5_templates(str(generator), rows, ["great", "terrible"], pair, beam=4)
    assert 1 <= len(found) <= 4 and len({t for t, _ in found}) == len(found)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    for source, _ in found:
        template = prompts.parse_template(source)  # exactly one slot, or this raises
        fields = [type(p).__name__ if not isinstance(p, prompts.FieldRef) else p.name for p in template.parts
                  if not isinstance(p, prompts.Text)]
        assert fields == (["text_a", "Slot", "text_b"] if pair else ["text_a", "Slot"]), source
        assert "extra_id" not in source and "</s>" not in source and "<pad>" not in source
    if pair:  # input after the slot: a causal model cannot read it, a masked LM can
        backbone = models.open_backbone(str(tiny_model("llama")))
        verbalizer = verbalizers.build_verbalizer(SST2.labels, SST2.label_words)
        with pytest.raises(PromptworthError, match="a template without an answer slot from the search"):
            search_candidates.usable_templates([t for t, _ in found], verbalizer, backbone, 64)
        masked = models.open_backbone(str(tiny_model("roberta")))
        usable, dropped = search_candidates.usable_templates([t for t, _ in found], verbalizer, masked, 64)
        assert usable == [t for t, _ in found] and not dropped


def test_a_search_without_a_usable_template_is_one_clear_error():
    backbone = models.open_backbone(str(tiny_model("llama")))
    verbalizer = verbalizers.build_verbalizer(SST2.labels, SST2.label_words)
    usable, dropped = search_candidates.usable_templates(["{text_a} no slot", "{text_a} It was {mask}."], verbalizer, backbone, 64)
    assert usable == ["{text_a} It was {mask}."] and dropped[0]["template"] == "{text_a} no slot"
    with pytest.raises(PromptworthError, match=r"^a template without an answer slot from the search: none of its 2 "):
        search_candidates.usable_templates(["{text_a} no slot", "{mask} {text_a}"], verbalizer, backbone, 64)


def test_the_offline_pool_varies_the_text_before_the_slot():
    pool = search_candidates.pool_templates(SST2)
    assert pool[0] == SST2.templates["lmbff"] and len(pool) == len(set(pool))
    assert "{text_a} All in all, it was {mask}." in pool and "{text_a} {mask}." in pool
    for source in pool:
        assert prompts.parse_template(source).fields == ("text_a",)
    copa = search_candidates.pool_templates(tasks.get_task("COPA"))  # filters are written back as they were
    assert all(prompts.parse_template(s) for s in copa)


def test_the_template_search_with_a_t5_generator_writes_its_candidates(split, tmp_path):
    generator = _tiny_t5(tmp_path / "t5")
    out = tmp_path / "template.json"
    assert _search(split, out, "prompt-autotemplate", "--generator", str(generator)) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "template" and result["generator"]["kind"] == "t5"
    assert result["generator"]["sha256"] == resolve.weights_sha256(resolve.resolve_model(str(generator)))
    assert prompts.parse_template(result["template"]).slot_index is not None
    assert result["template"] in [c["template"] for c in result["candidates"]]
    assert result["finetunes"] == 2 and len(result["candidates"]) <= 8


# ---------------------------------------------------------------------------------------------
# The result file: written atomically, applied and cited by a run, reused by the workflow


def test_a_search_result_is_applied_and_cited_by_the_run(split, tmp_path, capsys):
    found = tmp_path / "words.json"
    assert _search(split, found) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["words.json"]  # no temporary file left beside it
    result = json.loads(found.read_text())
    assert result["format"] == search_result.FORMAT and result["kind"] == "words" and result["method"] == "prompt-autowords"
    assert result["options"] == {"words_k": 16, "words_n": 16, "words_finetune": 2} and result["finetunes"] == 2
    assert result["model_sha256"] == resolve.weights_sha256(resolve.resolve_model(str(tiny_model("llama"))))
    assert result["split_manifest_sha256"] == sha256_file(split / "manifest.json")
    assert len(result["candidates"]) == 16 and all(len(words) == 16 for words in result["words_per_class"].values())
    tuned = [c["finetuned_dev"] for c in result["candidates"]]
    assert all(t is not None for t in tuned[:2]) and all(t is None for t in tuned[2:])
    best = max(result["candidates"][:2], key=lambda c: c["finetuned_dev"])
    assert result["label_words"] == best["label_words"]

    record_file = tmp_path / "runs" / "run.json"
    assert _train(split, record_file, "prompt-autowords") == 2  # no result file: say which command makes it
    assert "make the search's file first with `promptworth search`" in capsys.readouterr().err
    assert _train(split, record_file, "prompt-autowords", "--search", str(found)) == 0
    record = json.loads(record_file.read_text())
    cited = record["search"]
    assert cited == {"file": cited["file"], "sha256": sha256_file(found), "kind": "words",
                     "wall_s": result["wall_s"], "label_words": result["label_words"]}
    assert not Path(cited["file"]).is_absolute() and Path(cited["file"]).resolve() == found.resolve()
    # the search's time is part of the run's cost: aggregate's search_s (0 for a method without one)
    assert record_row(record)["search_s"] == result["wall_s"] > 0
    assert record_row({**record, "search": None})["search_s"] == 0.0
    assert record["verbalizer"] == result["label_words"] and record["template"] == result["template"]

    assert _train(split, record_file, "prompt", "--search", str(found)) == 2  # a method that searches nothing
    other = sentiment_split(tmp_path / "other" / "16-2", n_train=8, n_eval=8)
    assert _train(other, record_file, "prompt-autowords", "--search", str(found)) == 2
    assert "its split_manifest_sha256 is" in capsys.readouterr().err


def test_a_template_result_names_its_template_in_the_record(split, tmp_path):
    found = tmp_path / "template.json"
    assert _search(split, found, "prompt-autotemplate") == 0
    result = json.loads(found.read_text())
    assert result["generator"]["kind"] == "pool" and result["template"] in search_candidates.pool_templates(SST2)
    record_file = tmp_path / "run.json"
    assert _train(split, record_file, "prompt-autotemplate", "--search", str(found)) == 0
    record = json.loads(record_file.read_text())
    assert record["template"] == result["template"] and record["template_name"] == "search"
    assert record["search"]["kind"] == "template" and record["search"]["template"] == result["template"]
    assert record["verbalizer"] == SST2.label_words


def test_a_study_of_a_search_method_searches_once_per_run_and_reuses_the_file(tmp_path):
    config = yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text())
    config.update(tasks=["SST-2"], methods=["prompt", "prompt-autowords"], comparisons=["prompt-autowords:prompt"],
                  results_dir="results")
    config["splits"].update(sizes=[8], data_seeds=[1])
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))

    def dry_run() -> str:
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1", "-n",
                   "-p", "--configfile", str(configfile)]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    found = "results/search/tiny-llama/SST-2/prompt-autowords/8-1-1.json"
    output = dry_run()
    assert re.search(r"^search\s+1$", output, re.MULTILINE) and re.search(r"^train\s+2$", output, re.MULTILINE)
    searches = [line for line in output.splitlines() if "promptworth search " in line]
    assert len(searches) == 1 and "--method prompt-autowords" in searches[0] and f"--out {found}" in searches[0]
    trains = {m.group(1): line for line in output.splitlines() if (m := re.search(r"promptworth train .*--method (\S+)", line))}
    assert f"--search {found}" in trains["prompt-autowords"] and "--search" not in trains["prompt"]
    # the split, the model and the result file exist: the search is not run again
    (tmp_path / "resources/models/tiny-llama").mkdir(parents=True)
    manifest = tmp_path / "results/splits/SST-2/8-1/manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    (tmp_path / found).parent.mkdir(parents=True)
    (tmp_path / found).write_text("{}")
    output = dry_run()
    assert not re.search(r"^search\s+\d+$", output, re.MULTILINE) and re.search(r"^train\s+2$", output, re.MULTILINE)


def test_the_search_builtins_come_after_the_tuning_free_ones_and_only_prompt_methods_search():
    names = [spec.name for spec in method_specs.BUILTINS]
    at = names.index("prompt-autowords")
    assert names[at - 1:at + 2] == ["icl", "prompt-autowords", "prompt-autotemplate"]
    # then the third edition's rows, each added last so that every earlier one keeps its figure style
    assert names[-1] == "setfit"
    with pytest.raises(PromptworthError, match="extra autowords does not combine with extra autotemplate"):
        method_specs.make_spec("both", "prompt", "full", extras=["autowords", "autotemplate"])
    with pytest.raises(PromptworthError, match="extra autowords does not combine with objective head"):
        method_specs.make_spec("head-words", "head", "full", extras=["autowords"])
    spec = method_specs.make_spec("w", "prompt", "full", {"words_k": 4, "words_finetune": 0}, extras=["autowords"])
    assert spec.resolved_options() == {"words_k": 4, "words_n": 16, "words_finetune": 0}
    assert registry.search_kind(spec) == "words" and registry.search_kind(method_specs.resolve("prompt")) is None


@pytest.fixture(scope="module")
def words_result(split, tmp_path_factory) -> Path:
    """One word search's result file (made once for the tests that edit copies of it)."""
    found = tmp_path_factory.mktemp("search") / "words.json"
    assert _search(split, found) == 0
    return found


def _drop(key):
    return lambda result: result.pop(key)


def _put(key, value):
    return lambda result: result.update({key: value})


def _swap_choice(result):
    """The label words of a candidate the scores do not choose."""
    result["label_words"] = next(c["label_words"] for c in result["candidates"] if c["label_words"] != result["label_words"])


@pytest.mark.parametrize("edit, message", [
    (_drop("label_words"), r"its label_words must give each label of SST-2 \(0, 1\) a word of its own, got None"),
    (_put("label_words", {"0": "great", "1": "great"}), "its label_words must give each label of SST-2"),
    (_put("label_words", {"0": "", "1": "great"}), "its label_words must give each label of SST-2"),
    (_put("label_words", ["great", "terrible"]), "its label_words must give each label of SST-2"),
    (_drop("wall_s"), "its wall_s must be the search's time in seconds, got None"),
    (_put("wall_s", -3), "its wall_s must be the search's time in seconds, got -3"),
    (_put("candidates", {"a": 1}), "its candidates must be a list of ranked label_words"),
    (_put("candidates", [["great"]]), "its candidates must be a list of ranked label_words"),
    (_put("kind", "both"), "its kind is 'both', not words or template"),
    (_swap_choice, "is not the one its candidates' scores choose"),
])
def test_a_search_result_edited_or_incomplete_is_one_clear_error(split, words_result, tmp_path, capsys, edit, message):
    """(before: a KeyError or TypeError from a missing label_words or wall_s or a list where an
    object belongs, and label words the search did not choose were applied)"""
    result = json.loads(words_result.read_text())
    edit(result)
    edited = tmp_path / "words.json"
    edited.write_text(json.dumps(result), encoding="utf-8")
    capsys.readouterr()
    assert _train(split, tmp_path / "run.json", "prompt-autowords", "--search", str(edited)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run.json").exists()
