"""Hugging Face hub models, pinned: ``<hub id>@<revision>`` -> a snapshot folder of the local
Hugging Face cache (torch-free).

A hub model is named by its id and a revision, ``FacebookAI/roberta-large@722cf37b1afa9454edce342e7895e588b6ff1d59``:
a commit hash pins it exactly; a tag or a branch is taken as the hub has it when it is prefetched.
``<id>@unpinned`` opts out of the pin (the hub's main branch as it is when prefetched); an id
without a revision is refused. Only :func:`prefetch` reaches the network (``promptworth
prefetch``, the workflow's rule ``prefetch``); a run reads the snapshot the cache holds
(:func:`cached_snapshot`: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``) and never downloads, so a
compute node needs no internet.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from promptworth.errors import PromptworthError

# The revision that opts out of a pin: the hub's main branch as it is when the model is prefetched.
UNPINNED = "unpinned"
COMMIT = re.compile(r"[0-9a-f]{40}")
# What a snapshot holds besides the weights (weight_files): configs and tokenizer files (JSON, text
# vocabularies, sentencepiece and tiktoken models), sentence-transformers' module folders' JSON
SMALL_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
# Weight files: a folder's top-level *.safetensors; one without any, its PyTorch pickles
SAFETENSORS = ".safetensors"
PICKLES = (".bin", ".pt", ".pth")


def weight_files(names: Iterable[str]) -> list[str]:
    """The weight files among a model folder's files (names relative to it), sorted: the
    top-level ``*.safetensors`` files, or where there is none, the ``*.bin``, ``*.pt`` and
    ``*.pth`` files: what transformers loads, and what a record's ``model_sha256`` hashes."""
    top = sorted(name for name in names if "/" not in name)
    safetensors = [name for name in top if name.endswith(SAFETENSORS)]
    return safetensors or [name for name in top if name.endswith(PICKLES)]


@dataclass(frozen=True)
class HubModel:
    """A hub model as a config or ``--model`` names it: its id and revision (or :data:`UNPINNED`)."""

    id: str
    revision: str

    @property
    def pinned(self) -> bool:
        return self.revision != UNPINNED

    @property
    def hub_revision(self) -> str | None:
        """The revision asked of the hub (None: its default branch)."""
        return self.revision if self.pinned else None

    def __str__(self) -> str:
        return f"{self.id}@{self.revision}"


def without_revision(name: str) -> str:
    """A hub model's name without its ``@<revision>`` (its id)."""
    return name.partition("@")[0]


def parse_hub_model(name: str) -> HubModel:
    """``<id>@<revision>`` as a :class:`HubModel`; an id without a revision, or one that is not a
    hub id, is one error saying how to write it."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    hub_id, sep, revision = name.partition("@")
    try:
        validate_repo_id(hub_id)
    except HFValidationError as exc:
        raise PromptworthError(f"model {name!r} is neither a folder, a short name nor a hub id: {exc}") from None
    if not sep:
        raise PromptworthError(
            f"model {name!r} is a hub id without a revision: pin it, {hub_id}@<commit> (the commit hash of the "
            f"model's 'Files and versions' history on the hub; a tag or branch works too), or write "
            f"{hub_id}@{UNPINNED} to take the hub's main branch as it is when prefetched (records then say "
            f"revision {UNPINNED!r})")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", revision):
        raise PromptworthError(f"model {name!r}: revision {revision!r} is not a commit hash, tag or branch name")
    return HubModel(hub_id, revision)


@dataclass(frozen=True)
class Snapshot:
    """A hub model's files in the local cache: the folder of one commit."""

    model: HubModel
    folder: Path
    commit: str

    def record(self) -> dict[str, Any]:
        """What a run record says of it (``model_hub``)."""
        return {"id": self.model.id, "revision": self.model.revision, "commit": self.commit}


def _hub_problem(model: HubModel, exc: Exception) -> PromptworthError:
    text = str(exc).strip().splitlines()
    return PromptworthError(f"hub model {model}: {type(exc).__name__}: {text[0] if text else exc!r}")


def _complete(model: HubModel, folder: Path) -> Snapshot | None:
    """The snapshot in ``folder`` if it holds a config and weights, else None."""
    names = [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()]
    if "config.json" not in names or not weight_files(names):
        return None
    return Snapshot(model, folder, folder.name)


def cached_snapshot(model: HubModel) -> Snapshot:
    """The snapshot of ``model`` in the local Hugging Face cache, without any network access (a
    branch, tag or ``unpinned`` by the commit the cache's ref names); one error naming the
    command that fetches it when it is not there whole."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(model.id, revision=model.hub_revision, local_files_only=True,
                                        allow_patterns=["config.json"]))
    except (LocalEntryNotFoundError, OSError, ValueError):
        folder = None
    found = _complete(model, folder) if folder is not None else None
    if found is None:
        raise PromptworthError(
            f"hub model {model} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) with its config and "
            f"weights: download it first, `promptworth prefetch --model {model}` (a study's workflow does: rule "
            "prefetch); training never downloads")
    return found


def files_to_fetch(files: Iterable[str], trust_remote_code: bool) -> list[str]:
    """Of a hub repository's files, those a snapshot downloads: the weights transformers loads
    (:func:`weight_files`), configs and tokenizer files (:data:`SMALL_FILES`), and with
    ``trust_remote_code`` the model's own code (``*.py``); never other frameworks' weights."""
    files = list(files)
    small = [name for name in files if any(fnmatch.fnmatch(name, pattern) for pattern in SMALL_FILES)]
    code = [name for name in files if name.endswith(".py")] if trust_remote_code else []
    return sorted({*weight_files(files), *small, *code})


def prefetch(model: HubModel, trust_remote_code: bool = False) -> Snapshot:
    """Download ``model`` into the Hugging Face cache (what :func:`files_to_fetch` chooses) and
    return its snapshot. A commit already cached whole is not asked of the hub again (but for its
    code, with ``trust_remote_code``); a branch, tag or ``unpinned`` is resolved on the hub each
    time (offline: the cached one)."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HTTPError, LocalEntryNotFoundError

    if (COMMIT.fullmatch(model.revision) and not trust_remote_code) or constants.HF_HUB_OFFLINE:
        try:
            return cached_snapshot(model)
        except PromptworthError:
            if constants.HF_HUB_OFFLINE:
                raise PromptworthError(f"hub model {model} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                                       "with its config and weights, and HF_HUB_OFFLINE forbids downloading it: "
                                       "unset HF_HUB_OFFLINE") from None
    try:
        listed = HfApi().list_repo_files(model.id, revision=model.hub_revision)
        wanted = files_to_fetch(listed, trust_remote_code)
        if not weight_files(wanted):
            raise PromptworthError(f"hub model {model} has no weights transformers reads at its top level "
                                   f"(*{SAFETENSORS}, {', '.join('*' + s for s in PICKLES)})")
        folder = Path(snapshot_download(model.id, revision=model.hub_revision, allow_patterns=wanted))
    except (HTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:  # HTTPError: no connection too
        raise _hub_problem(model, exc) from None
    found = _complete(model, folder)
    if found is None:
        raise PromptworthError(f"hub model {model}: the download into {folder} lacks config.json or weights")
    return found
