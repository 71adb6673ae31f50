"""A method's spec -> the objective's object, set up for a task and a backbone."""

from __future__ import annotations

from promptworth.backbones import load
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.objectives.base import Method, MethodParts
from promptworth.methods.objectives.head import HeadMethod
from promptworth.methods.objectives.majority import MajorityMethod
from promptworth.methods.objectives.prompt import PromptMethod
from promptworth.methods.objectives.setfit import SetFitMethod
from promptworth.methods.parts import load as load_behaviour
from promptworth.methods.registry import EXTRAS
from promptworth.methods.specs import MethodSpec, resolve
from promptworth.methods.templates import Chosen


# The objectives' classes (the parts' names: promptworth.methods.registry.OBJECTIVES).
OBJECTIVE_CLASSES: dict[str, type[Method]] = {
    "prompt": PromptMethod, "head": HeadMethod, "null": PromptMethod, "misleading": PromptMethod, "majority": MajorityMethod,
    "setfit": SetFitMethod,
}


def build_method(
    method: str | MethodSpec, task: TaskSpec, backbone: load.Backbone, max_length: int,
    template_name: str | None = None, chosen: Chosen | None = None,
) -> Method:
    """The method (a built-in's name, or a spec) set up for a task and backbone; a clear error for
    unknown names. ``chosen``: the label words or template a search chose (prompt objectives); a
    method of a search extra built without it uses the task's own (the search's starting point).

    ``template_name`` is ignored by methods without a template (``head``), so one workflow rule
    can pass a task's template to every method; a method with a template of its own
    (``MethodSpec.template``) reads that one (another ``template_name`` is an error).
    """
    spec = resolve(method) if isinstance(method, str) else method
    template_name = spec.run_template(template_name)
    cls = OBJECTIVE_CLASSES[spec.objective]
    if chosen is not None and not issubclass(cls, PromptMethod):
        raise PromptworthError(f"method {spec.name}: objective {spec.objective} has no template or label words to search")
    parts = method_parts(spec)
    if chosen is None:
        return cls(task, backbone, max_length, parts, template_name)
    return cls(task, backbone, max_length, parts, template_name, chosen)


def method_parts(spec: MethodSpec) -> MethodParts:
    """The behaviours of a method's tuning and extras, as the registry names them; the extras in the
    registry's order (whatever order the method lists them in), so that their checks run in one order."""
    extras = tuple(load_behaviour(EXTRAS[name].behaviour)() for name in EXTRAS
                   if name in spec.extras and EXTRAS[name].behaviour)
    return MethodParts(spec, load_behaviour(spec.tuning_spec.behaviour)(), extras)
