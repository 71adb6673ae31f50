"""The method registry: parts, inline definitions, per-method training settings, and method
names defined in one place (no torch needed)."""

from __future__ import annotations

import dataclasses

import json
import re
from pathlib import Path

import pytest
import yaml

from promptworth.analysis import lmbff as published
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.methods import registry, specs as method_specs
from promptworth.study import load, planning

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _config(**changes):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.pop("data_dir", None)
    return {**config, **changes}


def test_every_builtin_is_a_valid_combination_of_parts():
    names = [spec.name for spec in method_specs.BUILTINS]
    assert names[:3] == ["prompt", "head", "null"] and len(set(names)) == len(names)
    for spec in method_specs.BUILTINS:
        assert re.fullmatch(method_specs.NAME_PATTERN, spec.name)
        # the registry adds the paper; the parts alone make the same method
        made = method_specs.make_spec(spec.name, spec.objective, spec.tuning, spec.options, extras=spec.extras,
                                      template=spec.template)
        assert dataclasses.replace(made, paper=spec.paper) == spec
    # prompt, head and null are unchanged: every weight trains, TrainConfig's own defaults
    for name in ("prompt", "head", "null"):
        spec = method_specs.builtin_methods()[name]
        assert spec.tuning == "full" and spec.training_defaults() == {} and spec.objective == name


def test_option_names_of_tunings_and_extras_never_collide():
    # one mapping holds a method's options, its tuning's and its extras' alike
    tuning_names = {o.name for t in registry.TUNINGS.values() for o in t.options}
    extra_names = [o.name for e in registry.EXTRAS.values() for o in e.options]
    assert not tuning_names & set(extra_names) and len(extra_names) == len(set(extra_names))


def test_lightweight_tunings_default_to_larger_learning_rates():
    from promptworth.training.settings import TrainConfig

    for name in ("prompt-lora", "head-lora", "prompt-bitfit", "head-probe", "softprompt"):
        defaults = method_specs.builtin_methods()[name].training_defaults()
        assert defaults["learning_rate"] >= 10 * TrainConfig().learning_rate
        assert method_specs.builtin_methods()[name].tuning_spec.source


def test_a_study_defines_a_method_inline_and_overrides_training_per_method():
    config = _config(
        methods=["prompt", "head", {"name": "prompt-lora-r4", "objective": "prompt", "tuning": "lora", "options": {"r": 4}},
                 "head-probe"],
        training={**_config()["training"], "learning_rate": 2e-5},
        training_by_method={"head-probe": {"learning_rate": 0.05}},
    )
    plan = load.load_study(config, SCHEMA)
    assert plan.methods == ("prompt", "head", "prompt-lora-r4", "head-probe")
    assert plan.method("prompt-lora-r4").options == {"r": 4}
    assert plan.method_args("prompt-lora-r4") == ["--objective", "prompt", "--tuning", "lora", "--option", "r=4"]
    assert plan.method_args("prompt") == []
    assert plan.training_for("prompt") == plan.training  # a built-in without defaults: the study's settings
    assert plan.training_for("prompt-lora-r4")["learning_rate"] == 2e-3  # the tuning's default beats `training`
    assert plan.training_for("head-probe")["learning_rate"] == 0.05  # training_by_method beats both
    assert {r.method for r in planning.plan(plan)} == set(plan.methods)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"methods": ["prompt", "head", "lora"]}, "config: methods: unknown method 'lora'; known methods: prompt, head, null"),
        ({"methods": ["prompt", "Head"]}, "config.methods[1]: 'Head' does not match"),
        ({"methods": ["prompt", "head", {"name": "x", "objective": "prompt", "tuning": "lora", "options": {"r": 0}}]},
         "config: methods[2]: method x: option r must be an integer >= 1, got 0"),
        ({"methods": ["prompt", "head", {"name": "head", "objective": "prompt"}]}, "head is a built-in method"),
        ({"methods": ["prompt", "head", {"name": "x", "objective": "prompt", "colour": "red"}]}, "Additional properties"),
        ({"training_by_method": {"head-lora": {"learning_rate": 1e-3}}}, "training_by_method names method 'head-lora', which the study does not run"),
        ({"training_by_method": {"prompt": {"learning_rate": -1}}}, "config.training_by_method.prompt.learning_rate"),
        ({"comparisons": ["prompt:head-lora"]}, "names method 'head-lora', which is not in methods"),
    ],
)
def test_bad_methods_in_a_study_are_one_clear_error(changes, message):
    with pytest.raises(PromptworthError, match=re.escape(message)):
        load.load_study(_config(**changes), SCHEMA)


def test_a_null_objective_needs_null_words():
    config = _config(tasks=["COPA"], methods=["prompt", "head", {"name": "null-lora", "objective": "null", "tuning": "lora"}],
                     splits={"kind": "ladder", "sizes": [10], "data_seeds": [1], "dev_size": 10})
    with pytest.raises(PromptworthError, match="method null-lora needs null_words, which task COPA has none of"):
        load.load_study(config, SCHEMA)


def test_method_names_are_not_repeated_in_the_schema_or_the_workflow():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))

    def enums(node):
        if isinstance(node, dict):
            yield from ([node["enum"]] if "enum" in node else [])
            for value in node.values():
                yield from enums(value)
        elif isinstance(node, list):
            for value in node:
                yield from enums(value)

    assert not any("prompt" in enum or "head" in enum for enum in enums(schema))
    common = (REPO / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8")
    assert "method=NAME_PATTERN" in common
    new_names = [spec.name for spec in method_specs.BUILTINS if "-" in spec.name]
    # lmbff.py maps a paper's table rows to our methods: names there must be built-ins
    assert {row.method for row in published.LMBFF_ROWS} - {""} <= set(method_specs.builtin_methods())
    for path in (REPO / "src" / "promptworth").rglob("*.py"):
        if path.name not in ("specs.py", "lmbff.py"):
            text = path.read_text(encoding="utf-8")
            assert not [n for n in new_names if f'"{n}"' in text], path


def test_methods_verb_lists_every_builtin(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == [spec.name for spec in method_specs.BUILTINS]
    lora = next(r for r in rows if r["method"] == "prompt-lora")
    assert lora["objective"] == "prompt" and lora["tuning"] == "lora" and lora["options"]["r"] == 8
    assert lora["training"] == {"learning_rate": 2e-3} and lora["strategy"] == "fixed-prompt LM tuning"


def test_the_registry_names_each_content_free_input_of_calibration():
    from promptworth.methods.extras.calibrate import CONTENT_FREE
    from promptworth.methods.registry import EXTRAS

    assert f"({', '.join(repr(s) for s in CONTENT_FREE)}:" in EXTRAS["calibrate"].does
