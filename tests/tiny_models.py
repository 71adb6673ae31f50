"""Tiny backbones for the tests (built once per session by ``promptworth.backbones.tiny_models``) and toy splits."""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from promptworth.data import split_folder
from promptworth.backbones.tiny_models import FILLER, KINDS, NEGATIVE, POSITIVE, build_tiny_model


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
    return build_tiny_model(kind, _root() / kind)


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


def write_split(
    folder: Path, train: Sequence[dict], dev: Sequence[dict], test: Sequence[dict], task: str = "SST-2",
    size: int | None = None,
) -> Path:
    """A split folder of ``task`` in our layout (jsonl files) with its manifest, so it verifies as
    one written by ``promptworth split``; the data seed comes from a ``<size>-<seed>`` name. With
    ``size`` the manifest states the training-set size (as a ladder's does; 0: the zero-shot point)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    seed = folder.name.rpartition("-")[2]
    info = {"layout": "rows", "task": task, "data_seed": int(seed) if seed.isdigit() else None}
    if size is not None:
        info["size"] = size
    split_folder.write_manifest(folder, info, {})
    return folder


def sentiment_split(folder: Path, n_train: int = 32, n_eval: int = 16) -> Path:
    return write_split(folder, sentiment_rows(n_train, 1), sentiment_rows(n_eval, 2), sentiment_rows(n_eval, 3))


@functools.cache
def tiny_sentence_encoder() -> Path:
    """Folder of a tiny sentence encoder: the tiny BERT with mean pooling, saved as a
    sentence-transformers model (modules.json), as all-MiniLM-L6-v2 is (built once per session)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    out = _root() / "sentence-bert"
    torch.manual_seed(0)  # BERT's pooler, which the masked LM lacks, starts random (mean pooling never reads it)
    with contextlib.redirect_stderr(io.StringIO()):  # the pooler's load report
        word = Transformer(str(tiny_model("bert")), max_seq_length=64)
        pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
        SentenceTransformer(modules=[word, pooling], device="cpu").save(str(out))
    return out


def hub_cache_model(cache: Path, repo_id: str, kind: str, commit: str, refs: Sequence[str] = ("main",)) -> Path:
    """The tiny ``kind`` backbone laid out in a Hugging Face hub cache at ``cache`` as a download of
    ``repo_id`` at ``commit`` leaves it (``models--<org>--<name>/``: files in ``blobs/`` by content,
    linked from ``snapshots/<commit>/``, each of ``refs`` naming the commit); returns the snapshot folder."""
    from promptworth.files import sha256_file

    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for source in sorted(tiny_model(kind).iterdir()):
        blob = storage / "blobs" / sha256_file(source)
        shutil.copyfile(source, blob)
        (snapshot / source.name).symlink_to(Path("..", "..", "blobs", blob.name))
    for ref in refs:
        (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot
