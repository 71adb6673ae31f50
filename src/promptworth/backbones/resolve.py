"""A ``--model`` value -> where the backbone is (:class:`ModelRef`), the name a run record gives it, and the sha256 of its weights (torch-free).

A ``--model`` value is a short name, a packaged model's name, a local folder or a pinned hub model
(``<id>@<revision>``, :mod:`promptworth.backbones.hub`); each resolves to a local folder."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from promptworth.backbones.hub import HubModel, Snapshot, cached_snapshot, parse_hub_model, weight_files, without_revision
from promptworth.backbones.registry import OFFLINE_MODELS, PACKAGED_MODELS, SHORT_NAMES, LoadOptions
from promptworth.errors import PromptworthError
from promptworth.paths import project_root


@dataclass(frozen=True)
class ModelRef:
    """Where a backbone is: the name run records give it, its local folder, the hub snapshot the
    folder is (None: not a hub model), and how it loads."""

    name: str
    path: str
    hub: Snapshot | None = None
    options: LoadOptions = LoadOptions()


def looks_like_folder(name: str) -> bool:
    """Whether a ``--model`` value is spelled as a folder (leading '.', '/' or '~', or more than one '/')."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.split("/", 1)[-1]


def hub_model(name: str) -> HubModel | None:
    """The hub model ``name`` names, checked (:func:`promptworth.backbones.hub.parse_hub_model`:
    an id without a revision is an error); None for a short name, a packaged model or a folder."""
    if name in SHORT_NAMES or name in PACKAGED_MODELS or looks_like_folder(name) or Path(name).expanduser().is_dir():
        return None
    return parse_hub_model(name)


def record_name(name: str) -> str:
    """The name a run record gives the model ``name`` (:attr:`ModelRef.name`): a short name as it
    is, a folder by its own name, a hub id by its last part (its revision in ``model_hub``); the
    model need not exist yet."""
    if name in SHORT_NAMES or name in PACKAGED_MODELS:
        return name
    folder = Path(name).expanduser()
    if folder.is_dir() or looks_like_folder(name):
        return folder.resolve().name
    return without_revision(name).split("/")[-1]


def model_label(model: str) -> str:
    """A file-name-safe label of a model (the folder of a study's files of its runs): its short
    name, folder name, or hub id with '/' -> '--' (without its revision).

    A folder is recognised by its spelling (leading '.', '/' or '~', or two or more '/'), not by
    its existence, so that the label stays the same before and after the workflow builds it.
    """
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).is_dir():
        return Path(model).expanduser().name
    return without_revision(model).replace("/", "--")


def resolve_model(name: str, root: Path | None = None, options: LoadOptions = LoadOptions()) -> ModelRef:
    """A ``--model`` value as a :class:`ModelRef`: a local folder, a short name (an offline backbone's
    converted folder, a packaged model's folder in its package) or a pinned hub model (its snapshot
    in the local Hugging Face cache, never downloaded here), loading with ``options``."""
    if not name:
        raise PromptworthError("no model given")
    return dataclasses.replace(_locate(name, root), options=options)


def _locate(name: str, root: Path | None) -> ModelRef:
    if name in SHORT_NAMES:
        for base in dict.fromkeys([Path.cwd(), root or project_root()]):
            folder = base / SHORT_NAMES[name]
            if (folder / "config.json").is_file():
                return ModelRef(name=name, path=str(folder.resolve()))
        raise PromptworthError(offline_model_missing(name))
    if name in PACKAGED_MODELS:
        folder = packaged_folder(name)
        if folder is None:
            raise PromptworthError(f"model {name!r} is not installed: {PACKAGED_MODELS[name].install}")
        return ModelRef(name=name, path=str(folder))
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise PromptworthError(f"model folder {folder} has no config.json")
        return ModelRef(name=record_name(name), path=str(folder.resolve()))
    if looks_like_folder(name):
        raise PromptworthError(f"model folder {name} does not exist")
    snapshot = cached_snapshot(parse_hub_model(name))
    return ModelRef(name=record_name(name), path=str(snapshot.folder), hub=snapshot)


def offline_model_missing(name: str) -> str:
    """Why the offline backbone ``name`` cannot be used here, and the commands that make it usable."""
    model = OFFLINE_MODELS[name]
    convert = f"`promptworth convert-model --model {name}` (it writes {SHORT_NAMES[name]})"
    if importlib.util.find_spec(model.package) is None:
        return (f"model {name!r} ({model.title}) is not here: its package {model.distribution} is not installed "
                f"(`pip install promptworth` leaves it out). Install it: `{model.install}`, then convert it once: "
                f"{convert}; `make venv` and the workflow do both")
    return f"model {name!r} is not converted yet: run {convert} first (or `make study`, whose workflow does it)"


def packaged_folder(name: str) -> Path | None:
    """The folder of the packaged model ``name`` (:data:`PACKAGED_MODELS`) inside its installed
    package, found without importing it; None when the package is not installed."""
    model = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(model.package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / model.folder
        if (folder / "config.json").is_file():
            return folder.resolve()
    return None


# Where a model folder keeps the sha256 of its weight files, computed once (:func:`weights_sha256`),
# and from what size on: smaller weights are hashed again each time (a second or less)
WEIGHTS_CACHE = "promptworth-weights.json"
WEIGHTS_CACHE_FORMAT = "promptworth-weights/1"
WEIGHTS_CACHE_MIN_BYTES = 256 << 20


def _unchanged(entry: object, seen: dict[str, int]) -> bool:
    """Whether a cache entry is of a file with the size and modification time ``seen`` now."""
    return (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and all(entry.get(key) == value for key, value in seen.items()))


def _file_sha256s(folder: Path, names: list[str], cache_from: int) -> dict[str, str]:
    """The sha256 of each weight file of ``folder``: from its cache file where the file's size and
    modification time are those the cache saw, else computed (and the cache written, where the
    weights total ``cache_from`` bytes or more and the folder can be written)."""
    import json

    from promptworth.files import sha256_file, write_json

    stats = {name: (folder / name).stat() for name in names}
    seen = {name: {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns} for name, stat in stats.items()}
    try:
        cached = json.loads((folder / WEIGHTS_CACHE).read_text(encoding="utf-8"))
        known = cached["files"] if cached.get("format") == WEIGHTS_CACHE_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        known = {}
    found = {name: known[name]["sha256"] for name in names if _unchanged(known.get(name), seen[name])}
    if len(found) == len(names):
        return found
    found.update({name: sha256_file(folder / name) for name in names if name not in found})
    if sum(stat.st_size for stat in stats.values()) >= cache_from:
        files = {name: {**seen[name], "sha256": found[name]} for name in names}
        try:
            write_json(folder / WEIGHTS_CACHE, {"format": WEIGHTS_CACHE_FORMAT, "files": files})
        except (PromptworthError, OSError):
            pass  # a folder this user cannot write: hashed again next time
    return found


def model_weight_files(ref: ModelRef) -> list[str]:
    """The names of a model folder's weight files (:func:`promptworth.backbones.hub.weight_files`)."""
    names = weight_files(path.name for path in Path(ref.path).iterdir() if path.is_file())
    if not names:
        raise PromptworthError(f"model folder {ref.path} has no weight files (*.safetensors, *.bin, *.pt, *.pth)")
    return names


def weights_sha256(ref: ModelRef, cache_from: int = WEIGHTS_CACHE_MIN_BYTES) -> str:
    """The identity of a model's weights: sha256 over the lines ``"<file> <sha256>\n"`` of its
    weight files (:func:`promptworth.backbones.hub.weight_files`: the top-level ``*.safetensors``,
    else ``*.bin``, ``*.pt``, ``*.pth``), in name order. Each file's sha256 is kept in the folder's
    :data:`WEIGHTS_CACHE` (weights of ``cache_from`` bytes or more) and reused while the file's size
    and modification time stay the same."""
    names = model_weight_files(ref)
    sha256s = _file_sha256s(Path(ref.path), names, cache_from)
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name} {sha256s[name]}\n".encode())
    return digest.hexdigest()
