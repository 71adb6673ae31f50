"""Templates, filters, verbalizers, rendering and truncation."""

from __future__ import annotations

import re

import pytest
from tiny_models import tiny_model

from promptworth.data import tasks
from promptworth.data.rows import load_rows
from promptworth.errors import PromptworthError
from promptworth.backbones import load as models
from promptworth.methods import prompt_encoding, templates as prompts, verbalizers


@pytest.fixture(scope="module")
def bert():
    return models.open_backbone(str(tiny_model("bert")))


@pytest.fixture(scope="module")
def gpt2():
    return models.open_backbone(str(tiny_model("gpt2")))


def test_parse_parts_and_filters():
    t = prompts.parse_template("{text_a|nopunct}? {mask}, {text_b|lowerfirst} {{x}}")
    kinds = [type(p).__name__ for p in t.parts]
    assert kinds == ["FieldRef", "Text", "Slot", "Text", "FieldRef", "Text"]
    assert t.parts[0].filters == (("nopunct", ()),)
    assert t.fields_after_slot() == ("text_b",)
    row = {"text_a": "A man sleeps.", "text_b": "Nobody sleeps."}
    assert t.render_text(row) == "A man sleeps? [MASK], nobody sleeps. {x}"


@pytest.mark.parametrize(
    "value, filters, expected",
    [
        ("Hello world!!", "nopunct", "Hello world"),
        ("Hello world. ", "nopunct|lowerfirst", "hello world"),
        ("hello", "upperfirst", "Hello"),
        ("cause", "map:cause= because:effect=, so", " because"),
        ("effect", "map:cause= because:effect=, so", ", so"),
    ],
)
def test_filters(value, filters, expected):
    t = prompts.parse_template("{x|" + filters + "}", need_slot=False)
    assert "".join(text for _, text in t.render({"x": value})) == expected


def test_map_filter_keeps_spaces():
    t = prompts.parse_template("{text_a|nopunct}{question|map:cause= because:effect=, so} {mask}.")
    assert t.render_text({"text_a": "He fell.", "question": "cause"}) == "He fell because [MASK]."
    assert t.render_text({"text_a": "He fell.", "question": "effect"}) == "He fell, so [MASK]."
    with pytest.raises(PromptworthError, match="no entry"):
        t.render_text({"text_a": "x", "question": "other"})


@pytest.mark.parametrize(
    "source, message",
    [
        ("{text_a} It was.", "exactly one answer slot"),
        ("{mask} {text_a} {mask}", "exactly one answer slot"),
        ("{text_a|shout} {mask}", "unknown filter"),
        ("{text_a {mask}", "unbalanced"),
        ("{} {mask}", "empty placeholder"),
        ("{mask|lowerfirst}", "takes no filters"),
        ("{x|map:a} {mask}", "key=value"),
    ],
)
def test_template_errors(source, message):
    with pytest.raises(PromptworthError, match=message):
        prompts.parse_template(source)


def test_missing_field_is_clear():
    t = prompts.parse_template("{text_b} {mask}")
    with pytest.raises(PromptworthError, match="text_b"):
        t.render({"text_a": "x"})


def test_verbalizer_lists_and_errors():
    v = verbalizers.build_verbalizer(("0", "1"), {"0": ["bad", "awful"], "1": "good"})
    assert v.for_row({}) == [["bad", "awful"], ["good"]]
    with pytest.raises(PromptworthError, match="no word for label"):
        verbalizers.build_verbalizer(("0", "1"), {"0": "bad"})
    with pytest.raises(PromptworthError, match="unknown label"):
        verbalizers.build_verbalizer(("0", "1"), {"0": "bad", "1": "good", "2": "meh"})
    with pytest.raises(PromptworthError, match="exactly two"):
        verbalizers.build_verbalizer(None, {"0": "No"})


@pytest.mark.parametrize("words, message", [
    ({"0": "great", "1": "great"}, "label_words: 'great' is a word of label '0' and of label '1': each label needs words "
                                   "of its own"),
    ({"0": ["bad", "fine"], "1": ["good", "fine"]}, "'fine' is a word of label '0' and of label '1'"),
    ({"0": "", "1": "great"}, "label_words: label '0' has an empty word"),
    ({"0": "  ", "1": "great"}, "label_words: label '0' has an empty word"),
])
def test_every_label_needs_words_of_its_own(words, message):
    """One word for every label scores every label alike (before: accepted, and the run learned
    nothing); an empty word failed later as "... is empty for row None"."""
    with pytest.raises(PromptworthError, match=re.escape(message)):
        verbalizers.build_verbalizer(("0", "1"), words)


def test_row_dependent_words():
    v = verbalizers.build_verbalizer(("0", "1"), {"0": "{choice1|nopunct|lowerfirst}", "1": "{choice2|nopunct|lowerfirst}"})
    assert v.row_dependent
    assert v.for_row({"choice1": "The sun rose.", "choice2": "It rained!"}) == [["the sun rose"], ["it rained"]]


def _encoder(backbone, source, words, max_length=64, labels=("0", "1")):
    return prompt_encoding.PromptEncoder(
        prompts.parse_template(source), verbalizers.build_verbalizer(labels, words), backbone.tokenizer,
        backbone.kind, max_length,
    )


def test_mlm_encoding_has_mask_and_specials(bert):
    enc = _encoder(bert, "{text_a} It was {mask}.", {"0": "terrible", "1": "great"})
    e = enc.encode({"text_a": "the movie was fun", "label": 1})
    tok = bert.tokenizer
    assert e.input_ids[0] == tok.cls_token_id and e.input_ids[-1] == tok.sep_token_id
    assert e.input_ids[e.slot] == tok.mask_token_id and e.n_masks == 1
    assert tok.convert_ids_to_tokens(e.input_ids[e.slot - 2 : e.slot + 2]) == ["It", "was", "[MASK]", "."]


def test_unknown_label_word_is_refused(bert):
    with pytest.raises(PromptworthError, match="not in the model's vocabulary"):
        _encoder(bert, "{text_a} It was {mask}.", {"0": "zzzyzzy", "1": "great"})


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_truncation_keeps_answer_slot_and_literal_text(kind, bert, gpt2):
    backbone = bert if kind == "bert" else gpt2
    enc = _encoder(backbone, "{text_a} It was {mask}.", {"0": "bad", "1": "good"}, max_length=16)
    long_text = " ".join(["the movie was really very good and fun"] * 20)
    e = enc.encode({"text_a": long_text, "label": 1})
    tok = backbone.tokenizer
    assert e.truncated > 0
    if kind == "bert":
        assert len(e.input_ids) == 16
        assert e.input_ids[e.slot] == tok.mask_token_id
        assert tok.decode(e.input_ids[e.slot - 2 : e.slot]) == "It was"
    else:
        answer = max(len(ids) for words in e.words for ids in words) - 1
        assert len(e.input_ids) + answer == 16
        assert tok.decode(e.input_ids).endswith(" It was")


def test_truncation_cuts_the_longest_field(bert):
    enc = _encoder(bert, "{text_a|nopunct}? {mask}, {text_b}", {"0": "No", "1": "Yes"}, max_length=20)
    e = enc.encode({"text_a": "a man " * 30, "text_b": "the dog is fun .", "label": 0})
    assert bert.tokenizer.decode(e.input_ids).split("[MASK]")[1].strip().startswith(", the dog is fun")


def test_literal_text_too_long_is_an_error(bert):
    enc = _encoder(bert, "{text_a} It was really very good and fun and great {mask}.", {"0": "No", "1": "Yes"}, max_length=8)
    with pytest.raises(PromptworthError, match="max_length"):
        enc.encode({"text_a": "x", "label": 0})


def test_bpe_pieces_tokenize_like_the_joined_string(gpt2):
    tok = gpt2.tokenizer
    enc = _encoder(gpt2, "{text_a} It was {mask}.", {"0": "bad", "1": "good"})
    e = enc.encode({"text_a": "the plot was dull .", "label": 0})
    assert e.input_ids == tok("the plot was dull . It was", add_special_tokens=False)["input_ids"]
    assert e.words[1][0] == tok(" good", add_special_tokens=False)["input_ids"]  # space-prefixed word


def test_causal_refuses_fields_after_slot(gpt2):
    with pytest.raises(PromptworthError, match="after the answer slot"):
        _encoder(gpt2, "{text_a}? {mask}, {text_b}", {"0": "No", "1": "Yes"})
    with pytest.raises(PromptworthError, match="no input before"):
        _encoder(gpt2, "Answer: {mask}.", {"0": "No", "1": "Yes"})


def test_default_template_suits_the_model_kind():
    cb = tasks.get_task("CB")
    assert prompts.task_template(cb, None, "mlm")[0] == "p0"
    assert prompts.task_template(cb, None, "causal")[0] == "qa"
    with pytest.raises(PromptworthError, match="no template 'nope'"):
        prompts.task_template(cb, "nope", "mlm")


def test_every_registry_task_has_templates_and_words():
    for name, spec in tasks.registry().items():
        assert spec.templates, name
        for source in spec.templates.values():
            prompts.parse_template(source)
        verbalizers.build_verbalizer(spec.labels, spec.label_words)
        if spec.null_words:
            verbalizers.build_verbalizer(spec.labels, spec.null_words, "null_words")
        prompts.task_template(spec, None, "causal")  # every task has a template for causal models


def _first_rows(spec, n=3):
    try:
        rows = load_rows(spec, "eval")
    except PromptworthError:
        return None
    return rows[:n]


@pytest.mark.parametrize("name", list(tasks.registry()))
def test_registry_templates_render_real_rows(name, data_dir, bert, gpt2):
    spec = tasks.get_task(name)
    rows = _first_rows(spec)
    if rows is None:
        pytest.skip(f"{name}: evaluation file not in the data mirror")
    for template_name, source in spec.templates.items():
        template = prompts.parse_template(source)
        for backbone in (bert, gpt2):
            if backbone.kind == "causal" and template.fields_after_slot():
                continue
            verbalizer = verbalizers.build_verbalizer(spec.labels, spec.label_words)
            enc = prompt_encoding.PromptEncoder(template, verbalizer, backbone.tokenizer, backbone.kind, 128)
            enc._fixed_words = None if verbalizer.row_dependent else enc._fixed_words
            for row in rows:
                e = enc.encode(row)
                assert len(e.input_ids) <= 128, (name, template_name)
                if backbone.kind == "mlm":
                    assert e.input_ids[e.slot] == backbone.tokenizer.mask_token_id
                else:
                    assert e.slot == len(e.input_ids) > 0
                assert len(e.words) == spec.num_labels
