"""Tiny randomly initialised backbones with tokenizers built on the spot (no hub access needed).

For tests and smoke runs of the workflow (``promptworth tiny-model``, ``config/studies/tiny.yaml``):

- ``bert`` and ``roberta``: masked LMs with a word-level vocabulary (unknown words -> [UNK]);
- ``gpt2`` and ``llama``: causal LMs with a byte-level BPE tokenizer (any text tokenizes; leading
  spaces matter, as in real BPE models).

They are saved like any checkpoint and loaded through the same code path (``--model <folder>``).
Their scores mean nothing.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch

from promptworth.errors import PromptworthError
from promptworth.files import publish_folder, staging_folder

POSITIVE = ["good", "great", "fun", "lovely", "superb", "wonderful", "charming", "bright"]
NEGATIVE = ["bad", "terrible", "dull", "awful", "boring", "poor", "ugly", "grim"]
FILLER = ["the", "movie", "film", "plot", "was", "is", "a", "and", "it", "this", "story", "very", "really"]
EXTRA = [
    "It", "This", "Yes", "No", "Maybe", "cat", "dog", "tree", "car", "shoe", "lamp", "okay", "correct",
    "incorrect", "subjective", "objective", "Description", "Entity", "Expression", "Human", "Location",
    "Number", "Question", "Answer", "so", "because", "or", "type", "does", "this", "mean", "man", "woman",
]
PUNCT = [".", ",", "?", "!", ":", '"', "'", "-", "(", ")", ";", "/"]
KINDS = ("bert", "roberta", "gpt2", "llama")
MAX_POSITIONS = 256


def corpus() -> list[str]:
    words = POSITIVE + NEGATIVE + FILLER + EXTRA
    lines = [" ".join(words[i : i + 7]) + " ." for i in range(0, len(words), 3)]
    return lines + [f"{a} {b} ? {c} , {d} !" for a, b, c, d in zip(words, words[5:], words[9:], words[13:])]


def _wordlevel(kind: str) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if kind == "bert":
        specials = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    else:
        specials = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}
    order = ["cls", "pad", "sep", "unk", "mask"] if kind == "roberta" else ["pad", "unk", "cls", "sep", "mask"]
    vocab = {specials[name]: i for i, name in enumerate(order)}
    for word in dict.fromkeys(POSITIVE + NEGATIVE + FILLER + EXTRA + PUNCT):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    cls, sep = specials["cls"], specials["sep"]
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if kind == "bert" else f"{cls} $A {sep} {sep} $B {sep}"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair, special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=specials["pad"], unk_token=specials["unk"], cls_token=cls,
        sep_token=sep, mask_token=specials["mask"], bos_token=cls, eos_token=sep,
    )


def _bytelevel() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def _model(kind: str, vocab_size: int, tokenizer: Any, positions: int) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if kind == "bert":
        config = tf.BertConfig(vocab_size=vocab_size, max_position_embeddings=positions,
                               pad_token_id=tokenizer.pad_token_id, **small)
        return tf.BertForMaskedLM(config)
    if kind == "roberta":
        config = tf.RobertaConfig(vocab_size=vocab_size, max_position_embeddings=positions + 2,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                                  eos_token_id=tokenizer.sep_token_id, **small)
        return tf.RobertaForMaskedLM(config)
    if kind == "gpt2":
        config = tf.GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        return tf.GPT2LMHeadModel(config)
    config = tf.LlamaConfig(vocab_size=vocab_size, max_position_embeddings=positions, num_key_value_heads=1,
                            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                            tie_word_embeddings=True, **small)
    return tf.LlamaForCausalLM(config)


def build_tiny_model(kind: str, out: Path, positions: int = MAX_POSITIONS) -> Path:
    """Save the tiny ``kind`` backbone and its tokenizer to ``out`` (built in full, then moved in place);
    ``positions``: the longest sequence it reads."""
    if kind not in KINDS:
        raise PromptworthError(f"unknown tiny model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if positions < 1:
        raise PromptworthError(f"a tiny model reads at least 1 position, got {positions}")
    tokenizer = _wordlevel(kind) if kind in ("bert", "roberta") else _bytelevel()
    model = _model(kind, len(tokenizer), tokenizer, positions)
    out = Path(out)
    with staging_folder(out.parent, "the tiny model") as staging:
        built = staging / out.name
        # transformers draws a progress bar for its one shard: a refusal below stays one line
        with contextlib.redirect_stderr(io.StringIO()):
            model.save_pretrained(built)
            tokenizer.save_pretrained(built)
        return publish_folder(built, out)
