"""A run's fine-tuned weights (``training.save_weights``): the reported checkpoint's, the state at
``best_step`` that the test set was evaluated with, not the last step's.

One safetensors file, ``weights.safetensors``, in the folder beside the record
(:mod:`promptworth.training.outputs`): the parameters that trained, by their names in the model the
method builds (``model.named_parameters()``, a tied weight once). For full fine-tuning that is every
parameter, the whole model (it loads into the base model's class with ``load_state_dict``); for a
parameter-efficient method only what it trains (LoRA's updates and the new head, a soft prompt,
a prefix, BitFit's biases, a probe's head), which loads into the model the method builds from the
base model (:func:`load_into`). SetFit's are its encoder's parameters (``model_body.*``) and its
logistic regression's ``coef_``, ``intercept_`` and ``classes_`` (``model_head.*``). The file's
metadata names the method, the base model and its sha256. The record's ``weights`` names the
folder and each file with its size and sha256 (docs/contracts.md); the loader checks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from promptworth.errors import PromptworthError
from promptworth.files import plain_file_mode, sha256_file
from promptworth.training.outputs import WEIGHTS_FILE
from promptworth.training.record import read_record

FORMAT = "promptworth-weights/1"
_HEAD_ARRAYS = ("coef_", "intercept_", "classes_")  # what a fitted scikit-learn LogisticRegression predicts with


def _is_setfit(model: Any) -> bool:
    return hasattr(model, "model_body") and hasattr(model, "model_head")


def trained_tensors(model: Any) -> dict[str, torch.Tensor]:
    """The weights training changed, by name (CPU copies)."""
    if _is_setfit(model):
        body = {f"model_body.{name}": tensor for name, tensor in trained_tensors(model.model_body).items()}
        head = {f"model_head.{name}": torch.from_numpy(np.ascontiguousarray(getattr(model.model_head, name)))
                for name in _HEAD_ARRAYS}
        return {**body, **head}
    return {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters()
            if p.requires_grad}


def _every_parameter_trained(model: Any) -> bool:
    module = model.model_body if _is_setfit(model) else model
    return all(p.requires_grad for p in module.parameters())


def save(model: Any, folder: Path, about: Mapping[str, str]) -> dict[str, Any]:
    """Write the model's trained weights into ``folder``; the record's ``weights`` but its ``folder``:
    ``parameters`` (all: every parameter trained, the whole model; trained: only those that did)
    and ``files``."""
    from safetensors.torch import save_file

    path = Path(folder) / WEIGHTS_FILE
    save_file(trained_tensors(model), str(path), metadata={"format": "pt", "promptworth": FORMAT, **about})
    plain_file_mode(path)
    return {"parameters": "all" if _every_parameter_trained(model) else "trained",
            "files": [{"file": WEIGHTS_FILE, "bytes": path.stat().st_size, "sha256": sha256_file(path)}]}


def nothing_trained() -> dict[str, Any]:
    """The record's ``weights`` of a run asked to save them whose method takes no training step."""
    return {"folder": None, "parameters": "none", "files": []}


def checked_file(record: Mapping[str, Any], record_file: Path) -> Path:
    """The weights file a record names, checked against its sha256; one clear error otherwise."""
    entry = record.get("weights")
    if not isinstance(entry, Mapping) or not entry.get("files"):
        raise PromptworthError(f"{record_file}: the run saved no weights (its record's weights is {entry!r})")
    folder = Path(record_file).parent / str(entry["folder"])
    for item in entry["files"]:
        path = folder / item["file"]
        if not path.is_file():
            raise PromptworthError(f"{record_file}: its weights file {path} is missing")
        if sha256_file(path) != item["sha256"]:
            raise PromptworthError(f"{record_file}: its weights file {path} is not the one the run saved (its sha256 differs)")
    return folder / WEIGHTS_FILE


def load_into(model: Any, record_file: Path) -> None:
    """Load the weights the run of ``record_file`` saved into ``model``, built as the run built it
    (the method on the same base model: ``Method.load_model``), checksums checked first. Every
    saved tensor must name a parameter of the model of its shape, and every parameter that trains
    there must be among them."""
    from safetensors.torch import load_file

    record_file = Path(record_file)
    tensors = load_file(str(checked_file(read_record(record_file), record_file)))
    if _is_setfit(model):
        for name in _HEAD_ARRAYS:
            setattr(model.model_head, name, tensors.pop(f"model_head.{name}").numpy())
        tensors = {name.removeprefix("model_body."): tensor for name, tensor in tensors.items()}
        model = model.model_body
    _load_parameters(model, tensors, record_file)


@torch.no_grad()
def _load_parameters(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    untrained = sorted(name for name, p in params.items() if p.requires_grad and name not in tensors)
    if unknown or untrained:
        what = f"no parameter {unknown[0]!r}" if unknown else f"a trained parameter {untrained[0]!r} the file lacks"
        raise PromptworthError(f"{where}: its weights do not fit this model ({what}): build the model as the run did "
                               "(the same method, base model and options)")
    for name, tensor in tensors.items():
        if params[name].shape != tensor.shape:
            raise PromptworthError(f"{where}: its weight {name} has shape {tuple(tensor.shape)}, the model's "
                                   f"{tuple(params[name].shape)}")
        params[name].copy_(tensor)
