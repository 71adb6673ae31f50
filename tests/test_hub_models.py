"""Hub models, pinned (issue 31): ``<id>@<revision>`` from the local Hugging Face cache, the weights'
sha256 for every model, the dtype, remote code, encoder-decoder models, and `promptworth prefetch`.
No test reaches the network: a hub model is a tiny one laid out in a cache in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import hub_cache_model, sentiment_split, tiny_model

from promptworth.backbones import hub, load, resolve
from promptworth.backbones.registry import LoadOptions
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file
from promptworth.data.tasks import get_task
from promptworth.methods.build import build_method
from promptworth.training.request import RunRequest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "tiny-org/tiny-llama"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache holding the tiny Llama as ``tiny-org/tiny-llama`` at :data:`COMMIT` (its
    ``main``), offline: nothing may reach the hub."""
    from huggingface_hub import constants

    folder = tmp_path / "hf-cache"
    hub_cache_model(folder, REPO_ID, "llama", COMMIT, refs=("main", "v1.0"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return folder


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


def _train(split: Path, out: Path, model: str, *extra: str) -> int:
    return main(["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model", model,
                 "--seed", "1", "--out", str(out), "--max-steps", "2", "--eval-every", "2", "--learning-rate", "1e-3",
                 "--no-progress", "--precision", "fp32", *extra])


def _expected_sha256(folder: Path) -> str:
    import hashlib

    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in sorted(folder.glob("*.safetensors")))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_a_pinned_hub_model_trains_from_the_cache_and_its_record_names_its_weights_and_commit(cache, split, tmp_path):
    out = tmp_path / "run.json"
    assert _train(split, out, f"{REPO_ID}@{COMMIT}") == 0
    record = json.loads(out.read_text())
    assert record["model"] == "tiny-llama"
    assert record["model_sha256"] == _expected_sha256(tiny_model("llama"))
    assert record["model_hub"] == {"id": REPO_ID, "revision": COMMIT, "commit": COMMIT}
    assert record["model_dtype"] == "fp32"
    assert str(cache) not in out.read_text()  # no machine path


@pytest.mark.parametrize("revision", ["main", "v1.0", hub.UNPINNED])
def test_a_branch_tag_or_unpinned_resolves_to_the_commit_the_cache_names(cache, revision):
    ref = resolve.resolve_model(f"{REPO_ID}@{revision}")
    assert Path(ref.path) == cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert ref.hub.record() == {"id": REPO_ID, "revision": revision, "commit": COMMIT}
    assert resolve.weights_sha256(ref) == _expected_sha256(tiny_model("llama"))


def test_a_hub_id_needs_a_revision_unless_it_opts_out(cache, split, tmp_path, capsys):
    with pytest.raises(PromptworthError, match=r"'roberta-large' is a hub id without a revision: pin it, "
                                               r"roberta-large@<commit>.*roberta-large@unpinned"):
        resolve.hub_model("roberta-large")
    assert resolve.hub_model("roberta-large@unpinned") == hub.HubModel("roberta-large", hub.UNPINNED)
    assert not resolve.hub_model("roberta-large@unpinned").pinned
    assert resolve.hub_model(str(tiny_model("llama"))) is None  # a folder
    out = tmp_path / "run.json"
    assert _train(split, out, REPO_ID) == 2
    assert "is a hub id without a revision" in capsys.readouterr().err and not out.exists()
    # a pinned model the cache lacks: training never downloads, it names the command that does
    assert _train(split, out, "tiny-org/other@main") == 2
    assert "`promptworth prefetch --model tiny-org/other@main`" in capsys.readouterr().err
    with pytest.raises(PromptworthError, match="revision 'a b' is not a commit hash"):
        resolve.hub_model("tiny-org/x@a b")


REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
STUDY = """
model: tiny-org/tiny-llama@{revision}
by_model: {{tiny-org/tiny-llama@{revision}: {{dtype: bf16}}}}
tasks: [SST-2]
methods: [prompt, head]
train_seeds: [1]
splits: {{kind: ladder, sizes: [10], data_seeds: [1], dev_size: 8, test_limit: 16}}
training: {{max_steps: 2, eval_every: 2, precision: fp32}}
comparisons: ["prompt:head"]
"""


def test_a_study_refuses_a_hub_id_without_a_revision():
    from promptworth.study.load import load_study

    config = yaml.safe_load(STUDY.format(revision=hub.UNPINNED))
    study = load_study(config, SCHEMA)
    assert study.load_options_for("tiny-org/tiny-llama@unpinned") == LoadOptions("bf16", False)
    assert study.load_options_for("tiny-org/tiny-llama@unpinned").args() == ["--model-dtype", "bf16"]
    assert study.models_by_label() == {"tiny-org--tiny-llama": "tiny-org/tiny-llama@unpinned"}
    config["by_model"] = {"tiny-org/tiny-llama@unpinned": {"trust_remote_code": True}}
    assert load_study(config, SCHEMA).load_options_for("tiny-org/tiny-llama@unpinned").args() == ["--trust-remote-code"]
    del config["by_model"]
    config["model"] = "roberta-large"
    with pytest.raises(PromptworthError, match="config: model 'roberta-large' is a hub id without a revision"):
        load_study(config, SCHEMA)


@pytest.mark.parametrize("dtype, expected", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_the_weights_load_in_the_dtype_asked_for(dtype, expected):
    backbone = load.open_backbone(str(tiny_model("roberta")), LoadOptions(dtype=dtype))
    for method in ("prompt", "head"):
        model = build_method(method, get_task("SST-2"), backbone, 64).load_model()
        assert {p.dtype for p in model.parameters()} == {expected}


def test_a_run_in_bf16_records_its_dtype(split, tmp_path):
    out = tmp_path / "run.json"
    assert _train(split, out, str(tiny_model("llama")), "--model-dtype", "bf16") == 0
    record = json.loads(out.read_text())
    assert record["model_dtype"] == "bf16" and record["model_hub"] is None
    assert record["model_sha256"] == _expected_sha256(tiny_model("llama"))


def _custom_code_model(folder: Path) -> Path:
    """The tiny Llama as a model with code of its own: config.json's auto_map names classes in the
    folder's *.py files."""
    shutil.copytree(tiny_model("llama"), folder)
    (folder / "configuration_tiny_custom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass TinyCustomConfig(LlamaConfig):\n"
        "    model_type = 'tiny-custom'\n")
    (folder / "modeling_tiny_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_tiny_custom import TinyCustomConfig\n\n\n"
        "class TinyCustomForCausalLM(LlamaForCausalLM):\n    config_class = TinyCustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny-custom", architectures=["TinyCustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_tiny_custom.TinyCustomConfig",
                            "AutoModelForCausalLM": "modeling_tiny_custom.TinyCustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_s_own_code_runs_only_when_trusted(tmp_path, monkeypatch):
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # where transformers copies the code
    folder = _custom_code_model(tmp_path / "tiny-custom")
    with pytest.raises(PromptworthError, match="contains custom code"):
        load.open_backbone(str(folder))
    assert not (tmp_path / "modules").exists()  # refused before any of its code was copied, let alone run
    backbone = load.open_backbone(str(folder), LoadOptions(trust_remote_code=True))
    assert backbone.kind == "causal" and type(backbone.config).__name__ == "TinyCustomConfig"
    model = load.load_model(backbone.ref, "causal_lm")
    assert type(model).__name__ == "TinyCustomForCausalLM"


def test_an_encoder_decoder_model_is_refused_by_name(tmp_path, split, capsys):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)
    folder = tmp_path / "tiny-bart"
    BartForConditionalGeneration(config).save_pretrained(folder)
    with pytest.raises(PromptworthError, match=r"model .*tiny-bart: model type 'bart' \(BartForConditionalGeneration\) "
                                               r"is an encoder-decoder model: promptworth fine-tunes masked LMs"):
        load.open_backbone(str(folder))
    assert _train(split, tmp_path / "run.json", str(folder)) == 2
    assert "is an encoder-decoder model" in capsys.readouterr().err


def test_the_weights_sha256_is_kept_beside_the_model_and_follows_its_files(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model("gpt2"), folder)
    ref = resolve.resolve_model(str(folder))
    expected = _expected_sha256(folder)
    assert resolve.weights_sha256(ref) == expected
    assert not (folder / resolve.WEIGHTS_CACHE).exists()  # small weights are hashed each time
    assert resolve.weights_sha256(ref, cache_from=0) == expected
    kept = json.loads((folder / resolve.WEIGHTS_CACHE).read_text())
    assert kept["files"]["model.safetensors"]["sha256"] == sha256_file(folder / "model.safetensors")
    # the kept sha256 is what a second call reads while the file's size and time stay the same...
    kept["files"]["model.safetensors"]["sha256"] = "0" * 64
    (folder / resolve.WEIGHTS_CACHE).write_text(json.dumps(kept))
    assert resolve.weights_sha256(ref, cache_from=0) != expected
    # ...and a file written since is hashed again
    stat = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert resolve.weights_sha256(ref, cache_from=0) == expected


def test_a_download_takes_the_weights_transformers_loads_and_the_small_files():
    listing = ["config.json", "merges.txt", "vocab.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin",
               "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "onnx/model.onnx", "onnx/config.json",
               "README.md", ".gitattributes", "modeling_x.py", "original/consolidated.safetensors"]
    assert hub.files_to_fetch(listing, trust_remote_code=False) == [
        "config.json", "merges.txt", "model.safetensors", "onnx/config.json", "tokenizer.json", "vocab.json"]
    older = [name for name in listing if not name.endswith(".safetensors")]
    assert "pytorch_model.bin" in hub.files_to_fetch(older, trust_remote_code=False)
    assert "modeling_x.py" in hub.files_to_fetch(listing, trust_remote_code=True)


def test_prefetch_of_a_cached_commit_needs_no_network_and_writes_its_pin(cache, tmp_path, capsys):
    pin = tmp_path / "resources" / "hub" / "tiny-org--tiny-llama.json"
    assert main(["prefetch", "--model", f"{REPO_ID}@{COMMIT}", "--out", str(pin)]) == 0
    written = json.loads(pin.read_text())
    assert written == {"format": "promptworth-model/1", "model": f"{REPO_ID}@{COMMIT}", "name": "tiny-llama",
                       "hub": {"id": REPO_ID, "revision": COMMIT, "commit": COMMIT}, "weights": ["model.safetensors"],
                       "model_sha256": _expected_sha256(tiny_model("llama"))}
    assert f"commit {COMMIT} in the Hugging Face cache" in capsys.readouterr().out
    # offline, a model the cache lacks is one error, and nothing is written
    missing = tmp_path / "missing.json"
    assert main(["prefetch", "--model", "tiny-org/other@main", "--out", str(missing)]) == 2
    assert "HF_HUB_OFFLINE forbids downloading it" in capsys.readouterr().err and not missing.exists()


def test_a_request_carries_its_model_options_to_a_pool_s_worker(split):
    request = RunRequest(task="SST-2", method="prompt", split_dir=split, model="m", seed=1,
                         model_options=LoadOptions("bf16", True))
    assert RunRequest.from_json(json.loads(json.dumps(request.to_json()))).model_options == LoadOptions("bf16", True)


def test_a_study_reuses_a_record_only_of_its_model_s_revision_and_dtype():
    from promptworth.study.load import load_study
    from promptworth.study.planning import plan
    from promptworth.study.reuse import asked, difference
    from test_study_rows import _record_of

    study = load_study(yaml.safe_load(STUDY.format(revision=COMMIT)), SCHEMA)
    wanted = asked(study, plan(study)[0])
    assert wanted.values["model_dtype"] == "bf16" and wanted.values["model_hub.revision"] == COMMIT
    record = _record_of(wanted.values)
    assert difference(study, wanted, record, missing_is_stale=True) is None
    record["model_dtype"] = "fp32"
    assert difference(study, wanted, record, True) == "model_dtype is 'fp32' in the record, the study asks for 'bf16'"
    del record["model_dtype"]  # a record from before the key: its weights were fp32
    assert difference(study, wanted, record, True) == ("model_dtype is absent in the record (its default 'fp32'), "
                                                       "the study asks for 'bf16'")
    record["model_dtype"], record["model_hub"]["revision"] = "bf16", "main"
    assert difference(study, wanted, record, True) == (f"model_hub.revision is 'main' in the record, the study asks "
                                                       f"for '{COMMIT}'")


def test_the_workflow_prefetches_a_hub_model_once_before_its_runs(tmp_path):
    from test_workflow import job_counts, snakemake

    configfile = tmp_path / "study.yaml"
    configfile.write_text(STUDY.format(revision=COMMIT) + f"results_dir: {tmp_path / 'results'}\n")
    result = snakemake("-n", "-p", "--configfile", str(configfile))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["prefetch"] == 1 and counts["train"] == 2  # prompt and head at size 10
    pin = "resources/hub/tiny-org--tiny-llama.json"
    assert f"promptworth prefetch --model tiny-org/tiny-llama@{COMMIT} --out {pin}" in " ".join(result.stdout.split())
    train_jobs = [job for job in result.stdout.split("\n\n") if "rule train:" in job]
    assert len(train_jobs) == 2
    for job in train_jobs:  # each reads the pin file (so runs after prefetch) and asks for the dtype
        assert pin in job and f"--model tiny-org/tiny-llama@{COMMIT} --model-dtype bf16 " in job
