"""A training request: everything a run is told (torch-free: a pool's client builds it and sends it to a
worker as JSON, :meth:`RunRequest.to_json`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from promptworth.backbones.registry import SMOLLM2, LoadOptions
from promptworth.methods.specs import MethodSpec, builtin_methods, make_spec
from promptworth.training.settings import TrainConfig
from promptworth.training.watch import PROGRESS_EVERY_S


def model_for(method: MethodSpec, model: str | None = None) -> str:
    """The model a run of ``method`` trains: ``model`` as given, else the method's own backbone
    (SetFit's), else SmolLM2."""
    return model or method.backbone or SMOLLM2


@dataclass
class RunRequest:
    task: str
    method: str | MethodSpec  # a built-in's name, or a method defined from parts
    split_dir: Path
    model: str
    seed: int
    config: TrainConfig = field(default_factory=TrainConfig)
    model_options: LoadOptions = LoadOptions()  # the weights' dtype, trust_remote_code
    template: str | None = None
    data_seed: int | None = None
    test_limit: int | None = None
    threads: int = 0
    device: str = "auto"  # --device: auto, cpu, cuda or cuda:N (promptworth.training.devices)
    progress: bool = True
    # seconds between progress lines where no terminal shows a bar (promptworth.training.watch; 0: every step)
    progress_every: float = PROGRESS_EVERY_S
    # when the process of this run started (POSIX time); None: this process's own start. A
    # pool's worker sets it to its client's start (see promptworth.training.pool)
    started_at: float | None = None
    # the result file of a search (promptworth search) that a search method applies
    search: Path | None = None
    # the lr_grid's selection file (promptworth select-lr): the run trains at the rate it chose
    lr_selection: Path | None = None
    # task files whose tasks join the built-in ones (promptworth.data.task_files): ``task`` may be one of theirs
    task_files: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The request as JSON values: paths as text, the training settings and model options by name,
        the method as a built-in's name or its definition from parts."""
        return {
            **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("method", "config", "model_options")},
            "model_options": dataclasses.asdict(self.model_options),
            "task_files": [str(path) for path in self.task_files],
            "method": _method_json(self.method),
            "config": {**dataclasses.asdict(self.config), "budgets": list(self.config.budgets)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRequest:
        """The request :meth:`to_json` wrote."""
        paths = {name: Path(data[name]) if data[name] is not None else None for name in ("split_dir", "search", "lr_selection")}
        config = TrainConfig(**{**data["config"], "budgets": tuple(data["config"]["budgets"])})
        task_files = tuple(Path(path) for path in data["task_files"])
        return cls(**{**data, **paths, "task_files": task_files, "method": _method_from_json(data["method"]),
                      "config": config, "model_options": LoadOptions(**data["model_options"])})


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _method_json(method: str | MethodSpec) -> dict[str, Any]:
    if isinstance(method, str) or builtin_methods().get(method.name) == method:
        return {"builtin": method if isinstance(method, str) else method.name}
    return {"defined": {"name": method.name, "objective": method.objective, "tuning": method.tuning,
                        "options": dict(method.options), "extras": list(method.extras), "template": method.template}}


def _method_from_json(data: Mapping[str, Any]) -> MethodSpec:
    if "builtin" in data:
        return builtin_methods()[data["builtin"]]
    defined = data["defined"]
    return make_spec(defined["name"], defined["objective"], defined["tuning"], defined["options"],
                     extras=defined["extras"], template=defined.get("template"))
