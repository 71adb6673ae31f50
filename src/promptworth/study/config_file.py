"""A study's config file: read as plain YAML (YTE templates refused), validated against the schema (workflow/schemas/config.schema.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jsonschema
import yaml

from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs


def _is_strict_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON Schema counts 16.0 as an integer; a size or seed of 16.0 would name other files ("16.0-1")
# than the ones its rules make, so the config's integers must be written as integers.
_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


# YTE, the template engine Snakemake applies to a config file that starts with this key, runs the
# Python in the file; a study config is plain YAML.
YTE_KEY = "__use_yte__"


def schema_file() -> Path:
    """The config schema of the workflow (``workflow/schemas/config.schema.yaml`` of the checkout)."""
    from promptworth.paths import project_root

    return project_root() / "workflow" / "schemas" / "config.schema.yaml"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A study config file, read as plain YAML (never run): one error for a file that cannot be
    read, is not YAML or not a mapping, or asks for YTE templating (which would run its code)."""
    where = f"config file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptworthError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise PromptworthError(f"{where}: nested too deeply to be a study config") from None
    if not isinstance(config, dict):
        raise PromptworthError(f"{where}: a study config is a mapping of keys (config/README.md), not "
                               f"{type(config).__name__}")
    refuse_yte(config, where)
    return config


def refuse_yte(config: Any, where: str) -> None:
    """A config that asks for YTE templating is refused: YTE evaluates the Python in its keys and
    values (``?if ...``, ``?...``), and a study config must not run code."""
    if isinstance(config, dict) and YTE_KEY in config:
        raise PromptworthError(f"{where}: it asks for YTE templating ({YTE_KEY}), which runs the Python written in "
                               "the file; a study config is plain YAML: remove the key and the templates")


def snakemake_configfiles(command: Sequence[str]) -> list[str]:
    """The config files a Snakemake command line names (``--configfile(s) A B``, ``--configfile=A``)."""
    found: list[str] = []
    taking = False
    for word in command:
        name, eq, value = word.partition("=")
        if name in ("--configfile", "--configfiles"):
            taking = not eq
            found += [value] if eq else []
        elif taking and not word.startswith("-"):
            found.append(word)
        else:
            taking = False
    return found


def check_configfiles(command: Sequence[str]) -> None:
    """Read every config file a Snakemake command line names as plain YAML before Snakemake does
    (:func:`read_config_file`): Snakemake itself would evaluate a YTE config, running its code."""
    for path in snakemake_configfiles(command):
        read_config_file(path)


def validate_config(config: dict[str, Any], schema_path: Path) -> None:
    """Check ``config`` against the JSON schema; raise with the most relevant violation."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    # a method's name has one definition, the registry's
    name = method_specs.NAME_PATTERN
    schema["$defs"]["method_name"]["pattern"] = f"^{name}$"
    schema["$defs"]["comparison"]["pattern"] = f"^{name}:{name}$"
    validator = _StrictValidator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        if error.parent is not None and error.parent.validator in ("oneOf", "anyOf"):
            error = error.parent
        if error.validator in ("oneOf", "anyOf") and error.context:
            # A value that fits none of several alternatives: say what each one wanted.
            error.message = " or ".join(sorted({sub.message for sub in error.context}))
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise PromptworthError(f"config{where or ' (top level)'}: {error.message}")
