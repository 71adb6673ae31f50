"""A ``--model`` value -> where the backbone is (:class:`ModelRef`), the name a run record gives it, and the sha256 of its weights (torch-free)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from promptworth.backbones.registry import OFFLINE_MODELS, PACKAGED_MODELS, SHORT_NAMES
from promptworth.errors import PromptworthError
from promptworth.paths import project_root


@dataclass(frozen=True)
class ModelRef:
    """Where a backbone comes from: its short name (for run records) and a path or hub id."""

    name: str
    path: str
    local: bool


def looks_like_folder(name: str) -> bool:
    """Whether a ``--model`` value is spelled as a folder (leading '.', '/' or '~', or more than one '/')."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.split("/", 1)[-1]


def record_name(name: str) -> str:
    """The name a run record gives the model ``name`` (:attr:`ModelRef.name`): a short name as it
    is, a folder by its own name, a hub id by its last part; the model need not exist yet."""
    if name in SHORT_NAMES or name in PACKAGED_MODELS:
        return name
    folder = Path(name).expanduser()
    if folder.is_dir() or looks_like_folder(name):
        return folder.resolve().name
    return name.split("/")[-1]


def resolve_model(name: str, root: Path | None = None) -> ModelRef:
    """A ``--model`` value as a :class:`ModelRef`: a local folder, a short name (an offline backbone's
    converted folder, a packaged model's folder in its package) or a hub id."""
    if not name:
        raise PromptworthError("no model given")
    if name in SHORT_NAMES:
        for base in dict.fromkeys([Path.cwd(), root or project_root()]):
            folder = base / SHORT_NAMES[name]
            if (folder / "config.json").is_file():
                return ModelRef(name=name, path=str(folder.resolve()), local=True)
        raise PromptworthError(offline_model_missing(name))
    if name in PACKAGED_MODELS:
        folder = packaged_folder(name)
        if folder is None:
            raise PromptworthError(f"model {name!r} is not installed: {PACKAGED_MODELS[name].install}")
        return ModelRef(name=name, path=str(folder), local=True)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise PromptworthError(f"model folder {folder} has no config.json")
        return ModelRef(name=record_name(name), path=str(folder.resolve()), local=True)
    if looks_like_folder(name):
        raise PromptworthError(f"model folder {name} does not exist")
    return ModelRef(name=record_name(name), path=name, local=False)


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


# Files that hold a checkpoint's weights (safetensors, or PyTorch's pickles for older hub models).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_sha256(ref: ModelRef) -> str | None:
    """The identity of a local model's weights: sha256 over the sorted (name, sha256) of its
    weight files. None for a hub id (the hub's revision names it there)."""
    if not ref.local:
        return None
    from promptworth.files import sha256_file

    files = sorted(p for p in Path(ref.path).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise PromptworthError(f"model folder {ref.path} has no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name} {sha256_file(path)}\n".encode())
    return digest.hexdigest()
