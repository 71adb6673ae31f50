"""The training engine (promptworth.training.engine): v3's levers give the same record twice, a kept
frozen feature is the one v2 computes again, clipping inside the optimizer step is clipping, the
record names its engine and levers, a study reuses no record of another engine, v4's packed
training batches train the run padded ones train, where the packed reading holds, and v5's attention
sequence by sequence reads a packed row as the padded batch."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.methods.frozen_features import dropout_free
from promptworth.training import engine, loop, packed_attention
from promptworth.training.cpu import cpu_has_fast_bf16
from promptworth.training.settings import TrainConfig
from promptworth.training.sparse_rows import SparseRows

# What differs between two runs of the same request besides their results: when and how fast.
NOT_RESULTS = {"timing", "git_commit"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


def train(split: Path, out: Path, method: str, engine_name: str, *extra: str) -> dict:
    argv = ["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "3", "--out", str(out), "--max-steps", "8", "--eval-every", "2",
            "--learning-rate", "1e-2", "--no-progress", "--engine", engine_name, *extra]
    assert main(argv) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def results(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in NOT_RESULTS}


@pytest.mark.parametrize("method", ["prompt", "head", "head-probe"])
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.skipif(
    not cpu_has_fast_bf16(), reason="bf16 is refused on a CPU without fast bf16"))])
def test_v3_gives_the_same_record_twice(split, tmp_path, method, precision):
    first, second = (train(split, tmp_path / f"{name}.json", method, "v3", "--precision", precision) for name in "ab")
    assert results(first) == results(second)
    assert first["levers"]["attention"] == "eager" and first["levers"]["grad_clip"] == "in_optimizer"


def test_the_record_names_its_engine_and_what_each_lever_did(split, tmp_path, monkeypatch):
    old = train(split, tmp_path / "v2.json", "head-probe", "v2", "--precision", "fp32")
    new = train(split, tmp_path / "v3.json", "head-probe", "v3", "--precision", "fp32")
    assert old["hyperparameters"]["engine"] == "v2" and new["hyperparameters"]["engine"] == "v3"
    assert old["levers"] == {"attention": "sdpa", "grad_clip": "separate_pass", "frozen_features": "recomputed",
                             "embedding_update": "none"}
    assert new["levers"] == {"attention": "eager", "grad_clip": "in_optimizer", "frozen_features": "kept",
                             "embedding_update": "none"}
    # the kept features are computed once: the run does (and counts) less work
    assert new["timing"]["flops"]["train"] < old["timing"]["flops"]["train"]
    assert new["timing"]["flops"]["eval"] < old["timing"]["flops"]["eval"]
    # full fine-tuning has no frozen features but trains the embedding; a longer run than eager
    # attention pays for keeps SDPA
    monkeypatch.setitem(engine.LEVERS, "v3", dataclasses.replace(engine.LEVERS["v3"], eager_up_to=63))
    head = train(split, tmp_path / "head.json", "head", "v3", "--precision", "fp32", "--max-length", "64")
    assert head["levers"] == {"attention": "sdpa", "grad_clip": "in_optimizer", "frozen_features": "none",
                              "embedding_update": "touched_rows"}
    assert train(split, tmp_path / "dense.json", "prompt", "v2")["levers"]["embedding_update"] == "dense"
    # weight decay moves every row every step: the embedding is updated dense
    decayed = train(split, tmp_path / "decayed.json", "prompt", "v3", "--weight-decay", "0.01")
    assert decayed["levers"]["embedding_update"] == "dense"
    unclipped = train(split, tmp_path / "unclipped.json", "head", "v3", "--max-grad-norm", "0")
    assert unclipped["levers"]["grad_clip"] == "none"


def test_kept_probe_features_give_the_record_of_recomputed_ones(split, tmp_path, monkeypatch):
    """Only the feature lever differs: in fp32 the record is v2's, bit for bit, but the FLOPs."""
    recomputed = train(split, tmp_path / "recomputed.json", "head-probe", "v2", "--precision", "fp32")
    monkeypatch.setitem(engine.LEVERS, "v3", engine.Levers(eager_up_to=0, clip_in_optimizer=False,
                                                           keep_frozen_features=True, sparse_embedding=False))
    kept = train(split, tmp_path / "kept.json", "head-probe", "v3", "--precision", "fp32")
    assert kept["levers"]["frozen_features"] == "kept" and kept["levers"]["attention"] == "sdpa"
    differ = {key for key in results(kept) if kept[key] != recomputed[key]}
    assert differ == {"hyperparameters", "levers"}
    assert {**kept["hyperparameters"], "engine": "v2"} == recomputed["hyperparameters"]
    assert kept["dev_curve"] == recomputed["dev_curve"] and kept["train_loss"] == recomputed["train_loss"]


def test_a_backbone_that_drops_or_trains_keeps_no_features(split, tmp_path):
    from promptworth.backbones import load

    roberta = load.load_model(load.resolve_model(str(tiny_model("roberta"))), "sequence_classification", num_labels=2)
    assert not dropout_free(roberta.train())
    llama = load.load_model(load.resolve_model(str(tiny_model("llama"))), "sequence_classification", num_labels=2)
    assert dropout_free(llama)
    llama.config.attention_dropout = 0.1  # a rate, not a module
    assert not dropout_free(llama)
    lora = train(split, tmp_path / "lora.json", "head-lora", "v3", "--precision", "fp32")
    assert lora["levers"]["frozen_features"] == "none"


def _clipped_step(clip_in_optimizer: bool, max_norm: float) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    config = TrainConfig(learning_rate=0.1, max_grad_norm=max_norm, engine="v3" if clip_in_optimizer else "v2")
    optimizer = loop.optimizer_for(model, config)
    params = list(model.parameters())
    for _ in range(3):
        loss = model(torch.randn(8, 16)).pow(2).sum() * 50  # gradients far above max_norm
        loss.backward()
        engine.RunEngine(config, {}).step(optimizer, params)
        optimizer.zero_grad(set_to_none=True)
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clipping_inside_the_optimizer_step_is_clipping(max_norm):
    """The fused kernel's grad_scale divides by 1 / coefficient where a pass multiplies by it: the
    same step to the last bits (clipped); the very same step where nothing is clipped (coefficient 1)."""
    separate, inside = _clipped_step(False, max_norm), _clipped_step(True, max_norm)
    for a, b in zip(separate, inside):
        if max_norm < 1:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(a, b)
    assert not torch.equal(_clipped_step(True, 0.5)[0], _clipped_step(True, 1e6)[0])  # it did clip


def test_a_study_reuses_no_record_of_another_engine(tmp_path, monkeypatch, capsys):
    """A published study's records (made before the engine setting: v2) are not what a study that
    asks for engine v3 wants: the workflow trains them again, aggregate refuses them, naming the key."""
    from tiny_study import REPO

    from promptworth.study.config_file import schema_file
    from promptworth.study.load import load_study
    from promptworth.study.planning import plan
    from promptworth.study.reuse import reuse

    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(results_dir="reports/default-study")
    asks_v2 = load_study(copy.deepcopy(config), schema_file())
    assert reuse(asks_v2).stale == {}  # absent means v2: the published records stay reusable
    config["training"] = {**config.get("training", {}), "engine": "v3"}
    study = load_study(config, schema_file())
    records = [Path(study.run_file(run)) for run in plan(study) if Path(study.run_file(run)).is_file()]
    stale = reuse(study).stale
    assert records and {str(path) for path in records} <= set(stale)
    why = "hyperparameters.engine is absent in the record (its default 'v2'), the study asks for 'v3'"
    assert all(why in reason or "learning-rate selection" in reason for reason in stale.values())
    assert any(why in reason for reason in stale.values())
    configfile = tmp_path / "v3.yaml"
    configfile.write_text(yaml.safe_dump(config), encoding="utf-8")
    capsys.readouterr()
    assert main(["aggregate", *map(str, records), "--study", str(configfile), "--out", str(tmp_path / "runs.csv")]) == 2
    assert "hyperparameters.engine" in capsys.readouterr().err
    assert not (tmp_path / "runs.csv").exists()


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_adamw_on_the_touched_rows_is_adamw_on_the_table(max_norm):
    """The rows' optimizer gives the dense fused AdamW's table bit for bit: rows read twice in a batch,
    rows read once and never again (they still move: momentum), rows never read (they stay)."""
    torch.manual_seed(0)
    table = torch.randn(50, 8)
    dense_weight, rows_weight = torch.nn.Parameter(table.clone()), torch.nn.Parameter(table.clone())
    dense = torch.optim.AdamW([dense_weight], lr=0.01, weight_decay=0.0, fused=True)
    rows = SparseRows(rows_weight, betas=(0.9, 0.999), eps=1e-8)
    batches = [torch.tensor([3, 7, 3, 11]), torch.tensor([7, 20]), torch.tensor([30, 31, 30]), torch.tensor([3])]
    for ids in batches:
        upstream = torch.randn(len(ids), 8)
        for weight in (dense_weight, rows_weight):
            torch.nn.functional.embedding(ids, weight, sparse=weight is rows_weight).backward(upstream)
        scale = None
        if max_norm:
            scale = torch.clamp(max_norm / (dense_weight.grad.norm() + 1e-6), max=1.0).reciprocal()
        dense.grad_scale = scale
        dense.step()
        dense.zero_grad(set_to_none=True)
        found = rows.gradient()
        rows.step(*found, lr=0.01, grad_scale=scale)
        assert rows_weight.grad is None
    assert torch.equal(dense_weight.detach(), rows_weight.detach())
    untouched = [i for i in range(50) if i not in {3, 7, 11, 20, 30, 31}]
    assert torch.equal(rows_weight.detach()[untouched], table[untouched])
    assert not torch.equal(rows_weight.detach()[11], table[11])


def test_bf16_is_refused_on_a_cpu_without_fast_bf16_and_auto_is_fp32_there(monkeypatch):
    from promptworth.errors import PromptworthError
    from promptworth.training import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    assert runtime.resolve_precision("auto", cpu) == "fp32" and runtime.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(PromptworthError, match="precision bf16 needs a CPU with fast bf16"):
        runtime.resolve_precision("bf16", cpu)
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert runtime.resolve_precision("auto", cpu) == runtime.resolve_precision("bf16", cpu) == "bf16"


# ---------------------------------------------------------------------------------------------
# v4: training batches packed without padding


def test_pack_lays_a_padded_batch_s_sequences_side_by_side():
    from promptworth.methods.features import base_batch, flat_index, model_inputs, pack
    from promptworth.methods.features import Feature

    features = [Feature([[5, 6, 7]], 1.0), Feature([[8]], 0.0), Feature([[9, 10]], 1.0)]
    padded = base_batch(features, pad_id=0)
    packed = pack(padded)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1]]
    assert packed["sequence_starts"].tolist() == [0, 3, 4] and "attention_mask" not in packed
    assert packed["n_tokens"] == padded["n_tokens"] == 6 and torch.equal(packed["labels"], padded["labels"])
    sequences, positions = torch.tensor([0, 1, 2, 2]), torch.tensor([2, 0, 0, 1])
    flat_padded = padded["input_ids"].reshape(-1)[flat_index(padded, sequences, positions)]
    flat_packed = packed["input_ids"].reshape(-1)[flat_index(packed, sequences, positions)]
    assert flat_padded.tolist() == flat_packed.tolist() == [7, 8, 9, 10]
    assert model_inputs(packed)["use_cache"] is False and "attention_mask" not in model_inputs(packed)


def _tiny_causal(model_type: str) -> torch.nn.Module:
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    if model_type == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape)).eval()
    return Gemma3ForCausalLM(Gemma3TextConfig(**shape, sliding_window=4, query_pre_attn_scalar=8)).eval()


@pytest.mark.parametrize("model_type", sorted(engine.PACKABLE_MODEL_TYPES))
@pytest.mark.parametrize("attention", ["eager", "sdpa", packed_attention.NAME])
def test_a_packable_model_reads_a_packed_row_as_its_padded_sequences(model_type, attention):
    """Each sequence of the packed row attends to itself only: its hidden states are the padded
    batch's (Gemma-3's sliding window, shorter than the sequences here, included), whether
    transformers masks the whole row (eager, SDPA) or v5 attends sequence by sequence."""
    from promptworth.methods.features import Feature, base_batch, flat_index, model_inputs, pack

    model = _tiny_causal(model_type)
    assert model.config.model_type == model_type
    model.set_attn_implementation(packed_attention.register() if attention == packed_attention.NAME else attention)
    lengths = [7, 3, 12, 1, 9]
    generator = torch.Generator().manual_seed(1)
    features = [Feature([torch.randint(1, 64, (n,), generator=generator).tolist()], 0.0) for n in lengths]
    padded = base_batch(features, pad_id=0)
    packed = pack(padded)
    sequences = torch.tensor([i for i, n in enumerate(lengths) for _ in range(n)])
    positions = torch.tensor([p for n in lengths for p in range(n)])
    with torch.no_grad():
        states = [model.model(**model_inputs(batch)).last_hidden_state for batch in (padded, packed)]
    read = [s.reshape(-1, s.shape[-1])[flat_index(b, sequences, positions)] for s, b in zip(states, (padded, packed))]
    torch.testing.assert_close(read[1], read[0], rtol=1e-4, atol=1e-5)
    # without the restarting positions the same row is one long sequence: not the padded batch's states
    whole = model.model(input_ids=packed["input_ids"], use_cache=False).last_hidden_state.reshape(-1, 32)
    assert not torch.allclose(whole[flat_index(packed, sequences, positions)], read[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["prompt", "head", "prompt-lora"])
def test_packed_batches_train_the_run_padded_ones_train(split, tmp_path, method):
    """Only the packing lever differs (v4 against v3), then only the packed row's attention (v5
    against v4): in fp32 the same dev curve and test predictions, the training loss to rounding,
    the same FLOPs (the real tokens')."""
    padded = train(split, tmp_path / "v3.json", method, "v3", "--precision", "fp32")
    packed = train(split, tmp_path / "v4.json", method, "v4", "--precision", "fp32")
    by_sequence = train(split, tmp_path / "v5.json", method, "v5", "--precision", "fp32")
    assert packed["hyperparameters"]["engine"] == "v4" and "training_batches" not in padded["levers"]
    assert packed["levers"] == {**padded["levers"], "training_batches": "packed"}
    assert by_sequence["levers"] == {**packed["levers"], "attention": packed_attention.NAME}
    for record in (packed, by_sequence):
        assert [p["dev_score"] for p in record["dev_curve"]] == [p["dev_score"] for p in padded["dev_curve"]]
        assert record["predictions"] == padded["predictions"] and record["best_step"] == padded["best_step"]
        assert record["train_loss"] == pytest.approx(padded["train_loss"], rel=1e-4)
        assert record["timing"]["flops"] == padded["timing"]["flops"]


@pytest.mark.parametrize("method, model, batches", [
    ("softprompt", "llama", "padded"),      # vectors before the input
    ("prefix", "llama", "padded"),          # a prefix's positions
    ("head-probe", "llama", "padded"),      # the kept features' batches
    ("prompt", "gpt2", "padded"),           # a model type whose packed reading is not tested
    ("prompt", "roberta", "padded"),        # a masked LM
    ("zeroshot", "llama", "none"),          # takes no step
])
def test_v4_packs_only_where_the_packed_reading_holds(split, tmp_path, method, model, batches):
    """v4 and v5 pack alike; v5 attends sequence by sequence only where it packs."""
    for engine_name in ("v4", "v5"):
        argv = ["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model",
                str(tiny_model(model)), "--seed", "3", "--out", str(tmp_path / "run.json"), "--max-steps", "2",
                "--eval-every", "2", "--no-progress", "--engine", engine_name, "--precision", "fp32"]
        assert main(argv) == 0
        levers = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["levers"]
        assert levers["training_batches"] == batches
        assert (levers["attention"] == packed_attention.NAME) == (engine_name == "v5" and batches == "packed")


def test_the_packed_row_s_sequences_are_where_its_positions_restart():
    assert packed_attention.sequence_lengths(torch.tensor([[0, 1, 2, 0, 0, 1, 2, 3]])) == [3, 1, 4]
    assert packed_attention.sequence_lengths(torch.tensor([[0, 1, 2]])) == [3]


def test_attention_by_sequence_keeps_eager_s_masks_on_other_batches():
    """A batch of several rows without a padding mask is still causal under v5's attention (its
    mask is eager's), and a padded batch takes eager attention: the same logits as eager's."""
    model = _tiny_causal("llama")
    input_ids = torch.randint(1, 64, (3, 6), generator=torch.Generator().manual_seed(2))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    logits = {}
    for name in ("eager", packed_attention.register()):
        model.set_attn_implementation(name)
        with torch.no_grad():
            logits[name] = (model(input_ids=input_ids).logits, model(input_ids=input_ids, attention_mask=attention_mask).logits)
    for by_sequence, eager in zip(logits[packed_attention.NAME], logits["eager"]):
        torch.testing.assert_close(by_sequence, eager, rtol=0, atol=0)


def test_attention_by_sequence_is_a_lever_over_packed_eager_rows():
    with pytest.raises(ValueError, match="needs pack_batches"):
        dataclasses.replace(engine.LEVERS["v3"], attend_by_sequence=True)
