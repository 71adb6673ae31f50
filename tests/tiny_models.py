"""Tiny randomly initialised backbones with tokenizers built on the spot (no hub access needed).

- ``bert`` and ``roberta``: masked LMs with a word-level vocabulary (unknown words -> [UNK]);
- ``gpt2`` and ``llama``: causal LMs with a byte-level BPE tokenizer (leading spaces matter).

Each is saved once per test session to a temporary folder and loaded through the same code path
as a real checkpoint (``--model <folder>``).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

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


def _model(kind: str, vocab_size: int, tokenizer: Any) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if kind == "bert":
        config = tf.BertConfig(vocab_size=vocab_size, max_position_embeddings=MAX_POSITIONS,
                               pad_token_id=tokenizer.pad_token_id, **small)
        return tf.BertForMaskedLM(config)
    if kind == "roberta":
        config = tf.RobertaConfig(vocab_size=vocab_size, max_position_embeddings=MAX_POSITIONS + 2,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                                  eos_token_id=tokenizer.sep_token_id, **small)
        return tf.RobertaForMaskedLM(config)
    if kind == "gpt2":
        config = tf.GPT2Config(vocab_size=vocab_size, n_positions=MAX_POSITIONS, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        return tf.GPT2LMHeadModel(config)
    config = tf.LlamaConfig(vocab_size=vocab_size, max_position_embeddings=MAX_POSITIONS, num_key_value_heads=1,
                            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                            tie_word_embeddings=True, **small)
    return tf.LlamaForCausalLM(config)


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="promptworth-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.cache
def tiny_model(kind: str) -> Path:
    """Folder of the tiny ``kind`` backbone (built once per session)."""
    if kind not in KINDS:
        raise ValueError(kind)
    tokenizer = _wordlevel(kind) if kind in ("bert", "roberta") else _bytelevel()
    model = _model(kind, len(tokenizer), tokenizer)
    folder = _root() / kind
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentiment_rows(n: int, seed: int, words: int = 6) -> list[dict[str, Any]]:
    """A learnable toy SST-2: label 1 iff the sentence holds positive words."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        label = i % 2
        pool = POSITIVE if label else NEGATIVE
        picks = torch.randint(len(pool), (2,), generator=generator).tolist()
        fill = torch.randint(len(FILLER), (words,), generator=generator).tolist()
        tokens = [FILLER[j] for j in fill]
        tokens[1], tokens[4] = pool[picks[0]], pool[picks[1]]
        rows.append({"idx": i, "text_a": " ".join(tokens) + " .", "label": label})
    return rows


def write_split(folder: Path, train: Sequence[dict], dev: Sequence[dict], test: Sequence[dict]) -> Path:
    """A split folder in our layout (jsonl files; no manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    return folder


def sentiment_split(folder: Path, n_train: int = 32, n_eval: int = 16) -> Path:
    return write_split(folder, sentiment_rows(n_train, 1), sentiment_rows(n_eval, 2), sentiment_rows(n_eval, 3))
