"""A new tuning is one module plus one registry entry, a new extra one object plus one entry: here
both come from a test file alone (tests/toy_parts.py), and a method made of them trains through the
command line like any other. Nothing under src/ is touched."""

from __future__ import annotations

import json

import pytest
import toy_parts
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.methods import registry
from promptworth.methods.parts import Extra, Tuning, load

NORMS = Tuning("norms", "the layer norms only; a new head too", registry.TRAINED_OBJECTIVES, unchanged_at_start=True,
               behaviour="toy_parts:Norms")
SHOUT = Extra("shout", "every text field upper-cased", registry.PROMPT_OBJECTIVES, behaviour="toy_parts:Shout")


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The two entries added to the registry for one test; the rows Shout encoded."""
    monkeypatch.setitem(registry.TUNINGS, "norms", NORMS)
    monkeypatch.setitem(registry.EXTRAS, "shout", SHOUT)
    shouted: list[str] = []
    encodings = toy_parts.Shout.encodings

    def spy(self, method, row):
        shouted.append(row["text_a"])
        return encodings(self, method, row)

    monkeypatch.setattr(toy_parts.Shout, "encodings", spy)
    return shouted


def test_a_tuning_and_an_extra_from_a_test_file_alone(toy_registry, tmp_path, capsys):
    split = sentiment_split(tmp_path / "splits" / "32-1")
    out = tmp_path / "record.json"
    argv = ["train", "--task", "SST-2", "--method", "prompt-norms-shout", "--objective", "prompt", "--tuning", "norms",
            "--extra", "shout", "--split-dir", str(split), "--model", str(tiny_model("llama")), "--seed", "1",
            "--max-steps", "2", "--eval-every", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["method_parts"] == {"objective": "prompt", "tuning": "norms", "options": {}, "extras": ["shout"]}
    assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"]
    assert record["best_step"] in (1, 2) and record["hyperparameters"]["total_steps"] == 2
    assert toy_registry and all(text == text.lower() for text in toy_registry)  # rows reach the extra as they are
    capsys.readouterr()
    # not built-ins: `promptworth methods` does not list them, `train --help` offers them
    assert main(["methods", "--json"]) == 0
    listed = {row["method"] for row in json.loads(capsys.readouterr().out)}
    assert "prompt-norms-shout" not in listed
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "norms" in capsys.readouterr().out


def test_only_the_norms_train(toy_registry):
    import torch

    model = torch.nn.Sequential()
    model.add_module("layer", torch.nn.Linear(2, 2))
    model.add_module("final_norm", torch.nn.LayerNorm(2))
    model.base_model = model  # what new_head reads: here every parameter is the backbone's
    load(NORMS.behaviour)().apply(model, {}, "prompt", [])
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["final_norm.weight", "final_norm.bias"]


def test_every_builtin_behaviour_loads_and_lives_in_the_methods_stage():
    from promptworth.methods.extras.base import ExtraBehaviour
    from promptworth.methods.tunings.base import TuningBehaviour

    for part, base in [*((t, TuningBehaviour) for t in registry.TUNINGS.values()),
                       *((e, ExtraBehaviour) for e in registry.EXTRAS.values() if e.behaviour)]:
        assert part.behaviour.startswith("promptworth.methods."), part.name
        assert issubclass(load(part.behaviour), base), part.name
