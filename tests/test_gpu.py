"""GPUs, checked on a CPU: which device a run picks (``--device``, CUDA_VISIBLE_DEVICES), its
precision and loss scaling, the fused optimizer, a pool's workers spread over GPUs, the workflow's
``--device cuda`` for a study that asks for GPUs, and the GPU check (benchmarks/gpu_check.py) in its
tiny CPU variant. CUDA's answers (is it there, how many GPUs, which capability) are set with
monkeypatch; everything else is the real code. What needs a real GPU is the GPU check's to run."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import TINY, snakemake
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.training import devices, engine, loop, pool, runtime
from promptworth.training.settings import TrainConfig
from promptworth.training.sparse_rows import SparseRows

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# --device and CUDA_VISIBLE_DEVICES (torch-free)


@pytest.mark.parametrize("text, parsed", [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), (" CUDA:0 ", "cuda:0"),
                                          ("cuda:12", "cuda:12")])
def test_device_texts_that_parse(text, parsed):
    assert devices.parse_device(text) == parsed
    assert devices.cuda_index(parsed) == ({"cuda": 0, "cuda:0": 0, "cuda:12": 12}.get(parsed))


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:01", "mps", "", "cuda:1,2"])
def test_other_device_texts_are_one_clear_error(text):
    with pytest.raises(PromptworthError, match=r"--device must be auto \(.*\), cpu, cuda .* or cuda:N"):
        devices.parse_device(text)


@pytest.mark.parametrize("value, entries", [
    (None, None), ("", []), ("0,1", ["0", "1"]), ("2, 3", ["2", "3"]),
    ("GPU-8a1f2c3d-aaaa-bbbb,MIG-1a2b/3/4", ["GPU-8a1f2c3d-aaaa-bbbb", "MIG-1a2b/3/4"]),
    ("0,-1,2", ["0"]),  # CUDA stops at the first entry that is no GPU
    ("NoDevFiles", []),  # what SLURM sets in a job without GPUs
])
def test_cuda_visible_devices_reads_as_cuda_reads_it(value, entries):
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert devices.visible_entries(environ) == entries
    assert devices.visible_gpus(environ, lambda: 3) == (["0", "1", "2"] if value is None else entries)


def test_a_pool_spreads_its_workers_over_the_gpus_k_to_a_gpu():
    assert devices.worker_gpus(4, 2, ["0", "1"]) == ["0", "0", "1", "1"]
    assert devices.worker_gpus(3, 2, ["5", "7"]) == ["5", "5", "7"]
    assert devices.worker_gpus(2, 4, ["GPU-a"]) == ["GPU-a", "GPU-a"]
    with pytest.raises(PromptworthError, match=r"--size 5 workers at --runs-per-gpu 2 need 3 GPUs, but 2 are visible "
                                               r"\(0, 1\): lower --size or raise --runs-per-gpu"):
        devices.worker_gpus(5, 2, ["0", "1"])
    with pytest.raises(PromptworthError, match=r"--runs-per-gpu 2: no GPU is visible here"):
        devices.worker_gpus(2, 2, [])
    with pytest.raises(PromptworthError, match=r"--runs-per-gpu must be at least 1, got 0"):
        devices.worker_gpus(2, 0, ["0"])


def test_a_pools_workers_each_see_their_own_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpus = pool.gpus_of_workers(4, 2)
    assert gpus == ["3", "3", "5", "5"] and pool.gpus_of_workers(4, 0) == []
    workers = pool.start_workers(tmp_path, 4, gpus)
    try:
        seen = [_environ(worker.pid).get("CUDA_VISIBLE_DEVICES") for worker in workers]
    finally:
        pool.stop_workers(workers)
    assert seen == gpus


def _environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with (Linux; read again while it is still empty,
    as it is for an instant right after the process starts)."""
    deadline = time.monotonic() + 10
    while True:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        if raw or time.monotonic() > deadline:
            return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)
        time.sleep(0.05)


def test_a_pool_asked_to_spread_over_gpus_it_does_not_have_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(PromptworthError, match="no GPU is visible here"):
        pool.run_pool(2, ["true"], runs_per_gpu=1)
    assert not list(tmp_path.iterdir())  # no pool folder, no worker
    assert main(["pool", "--size", "2", "--runs-per-gpu", "-1", "--", "true"]) == 2


# ---------------------------------------------------------------------------------------------
# The device a run picks (CUDA's answers set by monkeypatch)


def cuda(monkeypatch, count: int, capability: tuple[int, int] = (9, 0), built: str | None = "12.4") -> None:
    """Make torch answer as a machine with ``count`` GPUs of ``capability`` (0: none)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.version, "cuda", built)


def test_auto_takes_the_first_visible_gpu_where_cuda_is_there_else_the_cpu(monkeypatch):
    cuda(monkeypatch, 0)
    assert runtime.pick_device("auto") == runtime.pick_device("cpu") == torch.device("cpu")
    cuda(monkeypatch, 2)
    assert runtime.pick_device() == runtime.pick_device("cuda") == torch.device("cuda", 0)
    assert runtime.pick_device("cuda:1") == torch.device("cuda", 1)
    assert runtime.pick_device("cpu") == torch.device("cpu")
    assert runtime.describe_device(torch.device("cuda", 1)) == "cuda (NVIDIA Test GPU)"


def test_a_gpu_asked_for_and_absent_is_one_error_that_says_why(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    cuda(monkeypatch, 0, built=None)
    with pytest.raises(PromptworthError, match=r"--device cuda: CUDA is not available: this torch \(.*\) is built without "
                                               r"CUDA: install a CUDA build of torch"):
        runtime.pick_device("cuda")
    cuda(monkeypatch, 0)
    with pytest.raises(PromptworthError, match=r"--device cuda:1: CUDA is not available: torch sees no GPU "
                                               r"\(CUDA_VISIBLE_DEVICES='0,1'; is the NVIDIA driver loaded\? nvidia-smi\)"):
        runtime.pick_device("cuda:1")
    cuda(monkeypatch, 2)
    with pytest.raises(PromptworthError, match=r"--device cuda:2: 2 GPUs visible \(cuda:0 to cuda:1; "
                                               r"CUDA_VISIBLE_DEVICES='0,1'\)"):
        runtime.pick_device("cuda:2")
    with pytest.raises(PromptworthError, match="--device must be"):
        runtime.pick_device("gpu")


@pytest.mark.parametrize("capability, asked, resolved", [
    ((9, 0), "auto", "bf16"), ((8, 0), "auto", "bf16"), ((7, 0), "auto", "fp32"),
    ((7, 5), "fp16", "fp16"), ((9, 0), "fp16", "fp16"), ((9, 0), "fp32", "fp32"), ((8, 6), "bf16", "bf16"),
])
def test_precision_on_a_gpu_follows_its_capability(monkeypatch, capability, asked, resolved):
    cuda(monkeypatch, 1, capability)
    assert runtime.resolve_precision(asked, torch.device("cuda", 0)) == resolved


def test_bf16_on_a_gpu_without_it_and_fp16_on_a_cpu_are_errors(monkeypatch):
    cuda(monkeypatch, 1, (7, 0))
    with pytest.raises(PromptworthError, match=r"precision bf16: this GPU \(NVIDIA Test GPU\) has no native bf16 \(it "
                                               r"came with Ampere\): use precision fp16 or fp32"):
        runtime.resolve_precision("bf16", torch.device("cuda", 0))
    with pytest.raises(PromptworthError, match="precision fp16 is for CUDA GPUs"):
        runtime.resolve_precision("fp16", torch.device("cpu"))
    for fast_bf16, auto in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda fast_bf16=fast_bf16: fast_bf16)
        assert runtime.resolve_precision("auto", torch.device("cpu")) == auto


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", None)])
def test_autocast_casts_to_the_precisions_dtype(precision, dtype):
    layer = torch.nn.Linear(4, 4)
    with runtime.autocast(torch.device("cpu"), precision):
        out = layer(torch.ones(2, 4))
    assert out.dtype == (dtype or torch.float32)


def test_the_optimizer_is_fused_and_torch_fuses_it_on_cuda_too():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = loop.optimizer_for(model, TrainConfig())
    assert optimizer.defaults["fused"] is True
    from torch.optim.optimizer import _get_fused_kernels_supported_devices  # noqa: PLC0415 - torch's own list

    assert {"cpu", "cuda"} <= set(_get_fused_kernels_supported_devices())


def test_a_trained_embeddings_step_count_lives_on_its_device():
    # the fused kernel reads the step count on the weight's device: a CUDA kernel cannot read a CPU tensor
    weight = torch.nn.Parameter(torch.zeros(6, 2, device="meta"))
    assert SparseRows(weight, betas=(0.9, 0.999), eps=1e-8).steps.device == weight.device


# ---------------------------------------------------------------------------------------------
# fp16: loss scaling (a CPU's GradScaler runs the very logic a GPU's does)


def _step(scaler: torch.amp.GradScaler | None, max_grad_norm: float = 1.0) -> tuple[torch.nn.Linear, float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    config = TrainConfig(max_grad_norm=max_grad_norm, learning_rate=0.1)
    optimizer = loop.optimizer_for(model, config)
    run_engine = engine.RunEngine(config, {}, None, scaler)
    loss = model(torch.randn(4, 8)).pow(2).sum() * 50  # large: clipping bites
    run_engine.backward(loss)
    run_engine.step(optimizer, list(model.parameters()))
    return model, scaler.get_scale() if scaler is not None else 1.0


def test_a_scaled_step_is_the_unscaled_step_clipping_included():
    plain, _ = _step(None)
    scaled, scale = _step(torch.amp.GradScaler("cpu", init_scale=2.0**12))
    assert scale == 2.0**12
    for a, b in zip(plain.parameters(), scaled.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_step_whose_scaled_gradients_overflow_is_skipped_and_the_scale_shrinks():
    torch.manual_seed(0)
    before = [p.detach().clone() for p in torch.nn.Linear(8, 2).parameters()]
    model, scale = _step(torch.amp.GradScaler("cpu", init_scale=2.0**127))  # 2^127 x the loss overflows fp32
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert scale == 2.0**126


def test_fp16_turns_off_the_levers_that_need_the_fused_kernels_grad_scale():
    from promptworth.backbones import load
    from promptworth.data.tasks import get_task
    from promptworth.methods.build import build_method

    backbone = load.open_backbone(str(tiny_model("llama")))
    config = TrainConfig(engine="v3", max_length=32)
    for precision, clip, embedding, scaled in (("fp32", "in_optimizer", "touched_rows", False),
                                                ("fp16", "separate_pass", "dense", True)):
        method = build_method("prompt", get_task("SST-2"), backbone, 32)
        run_engine = engine.set_up(method.load_model(), method, config, precision)
        assert (run_engine.levers["grad_clip"], run_engine.levers["embedding_update"]) == (clip, embedding)
        assert (run_engine.scaler is not None, run_engine.rows is None) == (scaled, scaled)


# ---------------------------------------------------------------------------------------------
# A run: --device on the command line, the record


def _train(split: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--max-steps", "2", "--eval-every", "0",
            "--precision", "fp32", "--threads", "1", "--test-limit", "8", "--no-progress", *extra]


def test_a_run_on_the_cpu_says_so_and_a_gpu_asked_for_here_is_an_error_before_anything_loads(tmp_path, monkeypatch,
                                                                                              capsys):
    monkeypatch.chdir(tmp_path)
    split = sentiment_split(tmp_path / "32-1")
    assert main(_train(split, tmp_path / "cpu.json", "--device", "cpu")) == 0
    record = json.loads((tmp_path / "cpu.json").read_text())
    assert record["device"].startswith("cpu (") and "gpu_peak_gb" not in record["timing"]
    cuda(monkeypatch, 0, built=None)
    assert main(_train(split, tmp_path / "cuda.json", "--device", "cuda")) == 2
    assert "promptworth: error: --device cuda: CUDA is not available: this torch" in capsys.readouterr().err
    assert not (tmp_path / "cuda.json").exists()
    assert main(_train(split, tmp_path / "bad.json", "--device", "gpu")) == 2
    assert "promptworth: error: --device must be" in capsys.readouterr().err


def test_a_study_that_asks_for_gpus_trains_its_runs_with_device_cuda(tmp_path):
    config = copy.deepcopy(TINY)
    config["splits"]["data_seeds"] = [1]
    gpt2 = "resources/models/tiny-gpt2"
    config.update(model=["resources/models/tiny-llama", gpt2], by_model={gpt2: {"resources": {"gpus": 1}}},
                  results_dir="results", tasks=["SST-2"])
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trains = [job for job in result.stdout.split("\nrule ") if job.startswith("train:")]
    assert len(trains) == 8
    for job in trains:
        on_gpu = "--model resources/models/tiny-gpt2 " in job
        assert (" --device cuda " in job) == on_gpu and ("gpus=1" in job) == on_gpu, job
    # the tiny variant runs on any machine: it asks for no GPU
    fast = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1",
                           "-n", "-p", "--configfile", str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PROMPTWORTH_FAST": "1"})
    assert fast.returncode == 0, fast.stderr
    assert "promptworth train" in fast.stdout and "--device" not in fast.stdout


# ---------------------------------------------------------------------------------------------
# The GPU check, tiny, on the CPU


def _finite(value, where="") -> list[str]:
    """Where ``value`` holds a number that is not finite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where]
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _finite(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [bad for index, item in enumerate(value) for bad in _finite(item, f"{where}[{index}]")]
    return []


@pytest.mark.slow
def test_the_gpu_check_runs_tiny_on_the_cpu(tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PROMPTWORTH_DATA": str(data_dir)}
    env.pop("PROMPTWORTH_FAST", None)
    script = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")]
    bundle, out = tmp_path / "bundle", tmp_path / "gpu_check.json"
    prepared = subprocess.run([*script, "prepare", "--tiny", "--bundle", str(bundle)], capture_output=True, text=True,
                              env=env, timeout=600)
    assert prepared.returncode == 0, prepared.stderr
    content = json.loads((bundle / "check.json").read_text())
    assert content["tiny"] and [run["method"] for run in content["runs"]] == ["prompt", "head"]
    assert all(content["splits_match_records"].values())  # the very splits the default study's records trained on
    assert (bundle / "tokenizer" / "tokenizer.json").is_file()
    # a GPU asked for on this CPU: one clear error, nothing written
    refused = subprocess.run([*script, "run", "--bundle", str(bundle), "--device", "cuda", "--out", str(out)],
                             capture_output=True, text=True, env=env, timeout=600)
    if not torch.cuda.is_available():
        assert refused.returncode == 2 and "CUDA is not available" in refused.stderr and not out.exists()
    done = subprocess.run([*script, "run", "--bundle", str(bundle), "--device", "cpu", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["ran_on_gpu"] and result["device"].startswith("cpu (") and result["tiny"]
    assert {"versions", "model", "replay", "step", "share", "methods", "wall_s", "git_commit"} <= set(result)
    assert not _finite(result)
    replay = result["replay"]
    assert [run["method"] for run in replay["runs"]] == ["prompt", "head"]
    assert all(run["steps"] >= 1 and run["train_s"] > 0 and run["eval_s"] > 0 for run in replay["runs"])
    assert replay["totals"]["cpu"]["train_s"] > 0 and replay["cpu_study"]["wall_s"] > 0
    variants = {(v["engine"], v["precision"]): v for v in result["step"]["variants"]}
    assert "is for CUDA GPUs" in variants["v3", "fp16"]["skipped"]  # fp16 is refused on a CPU
    assert variants["v4", "auto"]["levers"]["training_batches"] == "packed"
    assert variants["v5", "auto"]["levers"]["attention"] == "eager_by_sequence"
    assert all(v["step_s"] > 0 and v["mfu"] > 0 for key, v in variants.items() if key != ("v3", "fp16"))
    assert result["step"]["cpu"]["step_s"] > 0 and result["step"]["speedup_vs_cpu"] > 0
    assert [r["at_once"] for r in result["share"]["rounds"]] == [1, 2]
    assert all(len(r["runs"]) == r["at_once"] and r["steps_per_s"] > 0 for r in result["share"]["rounds"])
    statuses = {m["method"]: m["status"] for m in result["methods"]}
    assert statuses["prompt"] == statuses["head"] == statuses["prefix"] == "ok" and statuses["setfit"] == "skipped"
    assert "failed" not in statuses.values(), result["methods"]
    # in-context learning cannot fit a demonstration beside the tiny tokenizer's long rows in 64 tokens: it says so
    assert statuses["icl"] == "refused"
