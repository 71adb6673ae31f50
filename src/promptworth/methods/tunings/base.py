"""A tuning's behaviour: what it does to a loaded model (which parameters train, what is added),
and the helpers the tunings share. Each tuning is one module of this package and one entry of
:data:`promptworth.methods.registry.TUNINGS` naming its class (``behaviour``).

:func:`prepare` runs once, right after the method has loaded its model (and a new head has been
initialised from the train seed): the tuning adds its parameters (LoRA's updates, BitFit's missing
biases) and sets ``requires_grad`` of every parameter. The training loop then trains exactly the
parameters that require a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from promptworth.errors import PromptworthError


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"trainable": self.trainable, "total": self.total}


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Parameters of ``model``, each counted once (tied weights too)."""
    params = list(model.parameters())  # unique: a tied weight appears once
    return ParameterCount(trainable=sum(p.numel() for p in params if p.requires_grad),
                          total=sum(p.numel() for p in params))


def head_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters outside the backbone (``base_model``): a sequence classifier's new
    head, or a language model's output layer (without its tied embedding)."""
    base = {id(p) for p in model.base_model.parameters()}
    return {name for name, p in model.named_parameters() if id(p) not in base}


def peft_package() -> Any:
    """The PEFT package (LoRA, P-tuning's prompt encoder), or a clear error without it."""
    try:
        import peft
    except ImportError:
        raise PromptworthError("this tuning needs the package peft: pip install -c constraints.txt peft") from None
    return peft


def set_trainable(model: torch.nn.Module, trainable: Callable[[str], bool]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))


def new_head(model: torch.nn.Module, objective: str) -> set[str]:
    """What trains besides a tuning's own parameters: the new head of the head objective; a
    language model's own output layer stays as pretrained."""
    return head_names(model) if objective == "head" else set()


def initial_tokens(model: torch.nn.Module, options: Mapping[str, Any], prompt_ids: Sequence[int]) -> torch.Tensor:
    """The ``tokens`` real tokens a soft prompt or a prefix starts from: the template's words,
    cycled (``init: template``, where the method has a template), else random vocabulary tokens
    drawn from the train seed."""
    n = options["tokens"]
    if options["init"] == "template" and prompt_ids:
        return torch.tensor([prompt_ids[i % len(prompt_ids)] for i in range(n)])
    return torch.randint(model.get_input_embeddings().weight.shape[0], (n,))


class TuningBehaviour:
    """What a tuning does to a loaded model. ``apply`` is its one job; the other hooks have a
    do-nothing default: options that depend on the model, the positions it puts before the input,
    and how the backbone's hidden states are read with what it added."""

    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        """Add the tuning's parameters to ``model`` and set which parameters train."""
        raise NotImplementedError

    def resolve_options(self, options: Mapping[str, Any], config: Any, where: str) -> dict[str, Any]:
        """Options with the defaults that depend on the model filled in, checked against it."""
        return dict(options)

    def input_vectors(self, options: Mapping[str, Any]) -> int:
        """Vectors the tuning places before every sequence (a soft prompt's): they go through every layer."""
        return 0

    def prefix_positions(self, options: Mapping[str, Any]) -> int:
        """Key/value positions the tuning adds at every layer (a prefix's)."""
        return 0

    def hidden_states(self, model: torch.nn.Module, base: torch.nn.Module,
                      inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The backbone's last hidden states of ``inputs``."""
        return base(**inputs).last_hidden_state


def prepare(tuning: TuningBehaviour, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
            prompt_ids: Sequence[int] = ()) -> ParameterCount:
    """Apply ``tuning`` to ``model`` in place; the parameters that then train and all of them.
    ``prompt_ids``: the template's own tokens (a soft prompt may start from them)."""
    tuning.apply(model, options, objective, prompt_ids)
    return count_parameters(model)
