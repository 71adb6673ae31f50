"""What the schema cannot say of a study: its methods, tasks, folders, sizes, seeds and comparisons fit together."""

from __future__ import annotations

from pathlib import Path

from promptworth.data.splits import ALL, DEV_POLICIES, FIXED_DEV, TRAIN_SIZED_DEV, ZERO_SHOT, check_seed, no_dev_at_zero
from promptworth.data.tasks import TaskSpec, get_task
from promptworth.errors import PromptworthError
from promptworth.methods import registry
from promptworth.backbones.resolve import hub_model, model_label
from promptworth.study.config import LrGrid, StudyConfig, check_label
from promptworth.study.planning import pilots, plan, stages
from promptworth.study.stage import FILTERS, REST
from promptworth.training.settings import config_from_mapping


def check_study(study: StudyConfig) -> None:
    """What the schema cannot say: names exist, splits can be drawn, comparisons are run (each
    check below in turn, the first problem an error)."""
    _check_method_names(study)
    _check_tasks(study)
    _check_folders(study)
    _check_kshot(study)
    _check_size_zero(study)
    _check_by_size(study)
    _check_ladder(study)
    _check_by_method(study)
    if study.splits.kind == "ladder":
        _check_sizes_fit_the_pools(study)
    _check_seeds_and_training(study)
    if study.lr_grid is not None:
        _check_lr_grid(study, study.lr_grid)
    _check_comparisons(study)
    check_models(study)
    _check_stages(study)


def _check_method_names(study: StudyConfig) -> None:
    """Every method a list names is defined, and none twice in methods."""
    if len(set(study.methods)) != len(study.methods):
        raise PromptworthError("config: methods names a method twice")
    for where, names in (("methods", study.methods), *((f"methods_by_task.{t}", m) for t, m in study.methods_by_task.items()),
                         *((f"by_size.{s}.methods", b.methods) for s, b in study.by_size.items())):
        for method in names:
            try:
                study.method(method)
            except PromptworthError as exc:
                raise PromptworthError(f"config: {where}: {exc}") from None


def _check_tasks(study: StudyConfig) -> None:
    """Each task suits the splits, its methods and its template; task-keyed settings name tasks of the study."""
    for name in study.tasks:
        task = get_task(name, study.defined_tasks)
        if task.source is not None:
            _check_own_task(task)
        if study.splits.kind == "kshot" and task.family != "lmbff":
            raise PromptworthError(f"config: splits.kind kshot is LM-BFF's sampler; {name} is not an LM-BFF task")
        for method in sorted({m for size in study.splits.sizes_for(name) for m in study.methods_for(name, size)}):
            spec = study.method(method)
            words = registry.WORDS_KEYS.get(spec.objective)
            if words is not None and words != "label_words" and not getattr(task, words):
                raise PromptworthError(f"config: method {method} needs {words}, which task {name} has none of")
            if spec.template is not None and spec.template not in {**task.templates, **task.control_templates}:
                raise PromptworthError(f"config: method {method} reads template {spec.template!r}, which task {name} has "
                                       f"not (its templates: {', '.join([*task.templates, *task.control_templates])})")
        template = study.templates.get(name)
        if template is not None and template not in task.templates:
            raise PromptworthError(
                f"config: templates.{name} is {template!r}, not one of {name}'s templates {list(task.templates)}"
            )
    for key in ("templates", "methods_by_task"):
        for name in getattr(study, key):
            if name not in study.tasks:
                raise PromptworthError(f"config: {key} names task {name!r}, which is not in tasks")


def _check_own_task(task: TaskSpec) -> None:
    """A task file's templates parse and its words make verbalizers (the built-in tasks' are tested)."""
    from promptworth.methods.templates import parse_template
    from promptworth.methods.verbalizers import build_verbalizer

    try:
        for name, source in {**task.templates, **task.control_templates}.items():
            unknown = [field for field in parse_template(source).fields if field not in task.text_fields]
            if unknown:
                raise PromptworthError(f"template {name} names the field {unknown[0]!r}, which its fields do not map "
                                       f"(its fields: {', '.join(task.text_fields)})")
        for key in ("label_words", "null_words", "misleading_words"):
            if getattr(task, key):
                build_verbalizer(task.labels, getattr(task, key), key)
    except PromptworthError as exc:
        raise PromptworthError(f"config: task {task.name} (task file {task.source.task_file}): {exc}") from None  # type: ignore[union-attr]


def _check_folders(study: StudyConfig) -> None:
    """The folders the study reads are folders; its results folder can be one."""
    if study.data_dir is not None and not Path(study.data_dir).expanduser().is_dir():
        raise PromptworthError(f"config: data_dir {study.data_dir!r} is not a folder")
    if study.runs_dir is not None and not Path(study.runs_dir).expanduser().is_dir():
        raise PromptworthError(f"config: runs_dir {study.runs_dir!r} is not a folder")
    results = Path(study.results_dir).expanduser()
    for folder in (results, *results.parents):
        if folder.exists() and not folder.is_dir():
            raise PromptworthError(f"config: results_dir {study.results_dir!r}: {folder} is a file, not a folder")


def _check_kshot(study: StudyConfig) -> None:
    """A kshot study's sizes are K and 'all'."""
    splits = study.splits
    if splits.kind == "kshot":
        for size in splits.sizes:
            if size not in (splits.k, ALL):
                raise PromptworthError(f"config: splits.sizes of a kshot study are K ({splits.k}) and 'all' "
                                       f"(the full-data setting), got {size!r}")
        if splits.sizes_by_task:
            raise PromptworthError("config: splits.sizes_by_task is for ladders; a kshot study's sizes are splits.sizes")


def _check_by_size(study: StudyConfig) -> None:
    """by_size names sizes the study trains at, with valid seeds and training settings."""
    splits = study.splits
    for size, settings in study.by_size.items():
        if not any(size == str(s) for task in study.tasks for s in splits.sizes_for(task)):
            raise PromptworthError(f"config: by_size names size {size!r}, which the study does not train at")
        for seed in settings.data_seeds:
            check_seed(seed, f"config: by_size.{size}.data_seeds item {seed!r}: a seed")
        for method in settings.methods or study.methods:
            try:
                config_from_mapping(study.training_for(method, size))
            except PromptworthError as exc:
                raise PromptworthError(f"config: by_size.{size}.training: {exc}") from None


def _check_ladder(study: StudyConfig) -> None:
    """A ladder's sizes exist for each task and its dev policy can be drawn."""
    splits = study.splits
    if splits.kind == "ladder":
        for name in study.tasks:
            if not splits.sizes_for(name):
                raise PromptworthError(f"config: splits.sizes is empty for task {name}")
        for name in splits.sizes_by_task:
            if name not in study.tasks:
                raise PromptworthError(f"config: splits.sizes_by_task names task {name!r}, which is not in tasks")
        if splits.dev_policy not in DEV_POLICIES:
            raise PromptworthError(f"config: unknown splits.dev_policy {splits.dev_policy!r}")
        if splits.dev_policy in FIXED_DEV and splits.dev_size is None:
            raise PromptworthError(f"config: splits.dev_policy {splits.dev_policy} needs splits.dev_size")
        if splits.dev_policy in TRAIN_SIZED_DEV and any(ALL in splits.sizes_for(t) for t in study.tasks):
            raise PromptworthError(f"config: splits.dev_policy {splits.dev_policy} cannot be used with size 'all'")
        if splits.dev_policy in TRAIN_SIZED_DEV and any(ZERO_SHOT in splits.sizes_for(t) for t in study.tasks):
            raise PromptworthError(f"config: splits.dev_policy: {no_dev_at_zero(splits.dev_policy)}")


def _check_stages(study: StudyConfig) -> None:
    """Each stage has a name of its own, names only what the study's runs have, and takes some run
    that no stage before it took."""
    names = [stage.name for stage in study.stages]
    for name in names:
        if name == REST:
            raise PromptworthError(f"config: stages: {REST!r} is the stage of the runs no stage takes; name yours otherwise")
        if names.count(name) > 1:
            raise PromptworthError(f"config: stages: two stages are named {name!r}")
    runs = plan(study)
    for stage in study.stages:
        for key in FILTERS:
            has = list(dict.fromkeys(getattr(run, key[:-1]) for run in runs))
            for value in getattr(stage, key):
                if value not in has:
                    raise PromptworthError(f"config: stages.{stage.name}.{key} names {value!r}, which no run of the "
                                           f"study has (its runs': {', '.join(map(str, has))})")
    taking = {name for name, _ in stages(study)}
    for name in names:
        if name not in taking:
            raise PromptworthError(f"config: stages.{name} takes no run: the stages before it take each of its runs")


def _check_by_method(study: StudyConfig) -> None:
    """by_method names methods the study runs, sizes and seeds it draws, and a dev policy its splits
    can be drawn with at every size the method runs at; it leaves the method some runs."""
    runs, seeds = study.methods_run(), set(study.splits.data_seeds).union(*(b.data_seeds for b in study.by_size.values()))
    for method, settings in study.by_method.items():
        where = f"config: by_method.{method}"
        if method not in runs:
            raise PromptworthError(f"{where}: the study does not run method {method!r}")
        for size in settings.sizes:
            if not any(str(size) == str(s) for task in study.tasks for s in study.splits.sizes_for(task)):
                raise PromptworthError(f"{where}.sizes names size {size!r}, which the study does not train at")
        for seed in settings.data_seeds:
            if seed not in seeds:
                raise PromptworthError(f"{where}.data_seeds names data seed {seed!r}, which the study does not draw")
        drawn = {seed for task in study.tasks for seed in study.train_seeds_for(task)}
        for seed in settings.train_seeds:
            if seed not in drawn:
                raise PromptworthError(f"{where}.train_seeds names train seed {seed!r}, which the study does not train with")
        policy = settings.dev_policy
        if policy is not None:
            if study.splits.kind != "ladder":
                raise PromptworthError(f"{where}.dev_policy: a dev policy is a ladder's; a kshot study's splits are LM-BFF's")
            if policy not in DEV_POLICIES:
                raise PromptworthError(f"{where}.dev_policy: unknown dev policy {policy!r}")
            if policy in FIXED_DEV and study.splits.dev_size is None:
                raise PromptworthError(f"{where}.dev_policy {policy} needs splits.dev_size")
            sizes = {size for task in study.tasks for size in study.splits.sizes_for(task)
                     if method in study.methods_for(task, size)}
            if policy in TRAIN_SIZED_DEV and ALL in sizes:
                raise PromptworthError(f"{where}.dev_policy {policy} cannot be used with size 'all': set by_method.{method}.sizes")
            if policy in TRAIN_SIZED_DEV and ZERO_SHOT in sizes:
                raise PromptworthError(f"{where}.dev_policy: {no_dev_at_zero(policy)} (set by_method.{method}.sizes)")
        if not any(method in study.methods_for(task, size, None, seed) for task in study.tasks
                   for size in study.splits.sizes_for(task) for seed in study.data_seeds_for(size)):
            raise PromptworthError(f"{where} leaves method {method!r} no runs (none of its sizes and data seeds is drawn "
                                   "where it runs)")


def _check_seeds_and_training(study: StudyConfig) -> None:
    """Seeds and training settings, the study's and each method's, are valid."""
    splits = study.splits
    by_task = [(f"train_seeds_by_task.{task}", seeds) for task, seeds in study.train_seeds_by_task.items()]
    for key, seeds in (("splits.data_seeds", splits.data_seeds), ("train_seeds", study.train_seeds), *by_task):
        for seed in seeds:
            check_seed(seed, f"config: {key} item {seed!r}: a seed")
    for task in study.train_seeds_by_task:
        if task not in study.tasks:
            raise PromptworthError(f"config: train_seeds_by_task names task {task!r}, which is not in tasks")
    try:
        config_from_mapping(study.training)
    except PromptworthError as exc:
        raise PromptworthError(f"config: training: {exc}") from None
    runs = study.methods_run()
    for method in study.training_by_method:
        if method not in runs:
            raise PromptworthError(f"config: training_by_method names method {method!r}, which the study does not run")
        try:
            config_from_mapping(study.training_for(method))
        except PromptworthError as exc:
            raise PromptworthError(f"config: training_by_method.{method}: {exc}") from None


def _check_comparisons(study: StudyConfig) -> None:
    """Each comparison sets two different methods of the study against each other."""
    for treatment, baseline in study.comparisons:
        if treatment == baseline:
            raise PromptworthError(f"config: comparison {treatment}:{baseline} compares a method with itself")
        for method in (treatment, baseline):
            if method not in study.methods:
                raise PromptworthError(f"config: comparison {treatment}:{baseline} names method {method!r}, which is not in methods")


def check_models(study: StudyConfig) -> None:
    """What ``model`` and ``by_model`` must agree on: each model has a folder of its own (and a hub
    model its revision), by_model names models, tasks and methods of the study, and what it leaves
    out leaves every model, task and compared method some runs."""
    labels: dict[str, str] = {}
    for model in study.models:
        check_label(model)
        try:
            hub_model(model)  # a hub id names its revision
        except PromptworthError as exc:
            raise PromptworthError(f"config: {exc}") from None
        other = labels.setdefault(model_label(model), model)
        if other != model:
            raise PromptworthError(f"config: model names {other!r} and {model!r}, whose runs would share the "
                                   f"folder {model_label(model)!r}")
    run_somewhere = study.methods_run()
    for model, settings in study.by_model.items():
        if model not in study.models:
            raise PromptworthError(f"config: by_model names model {model!r}, which is not in model")
        for task in settings.tasks:
            if task not in study.tasks:
                raise PromptworthError(f"config: by_model.{model}.tasks names task {task!r}, which is not in tasks")
        for method in settings.methods:
            if method not in run_somewhere:
                raise PromptworthError(f"config: by_model.{model}.methods names method {method!r}, which the study "
                                       "does not run")
        for key, seeds in (("data_seeds", settings.data_seeds), ("train_seeds", settings.train_seeds)):
            for seed in seeds:
                check_seed(seed, f"config: by_model.{model}.{key} item {seed!r}: a seed")
    runs = plan(study)
    for model in study.models:
        if not any(run.model == model_label(model) for run in runs):
            raise PromptworthError(f"config: by_model.{model} leaves model {model!r} no runs (none of its methods "
                                   "is run on its tasks, or each runs on a backbone of its own, as setfit)")
    for task in study.tasks:
        if not any(run.task == task for run in runs):
            raise PromptworthError(f"config: by_model leaves task {task!r} to no model")
    for treatment, baseline in study.comparisons:
        for method in (treatment, baseline):
            if not any(run.method == method for run in runs):
                raise PromptworthError(f"config: comparison {treatment}:{baseline}: method {method!r} is run on no "
                                       "task (by_model, methods_by_task or by_size leave it out)")


def _check_lr_grid(study: StudyConfig, grid: LrGrid) -> None:
    """The grid's methods train, and only the grid sets their rate; its pilots can be drawn."""
    for method, rates in grid.rates.items():
        where = f"config: lr_grid.rates.{method}"
        try:
            spec = study.method(method)
        except PromptworthError as exc:
            raise PromptworthError(f"{where}: {exc}") from None
        if not spec.tuning_spec.steps:
            raise PromptworthError(f"{where}: method {method} takes no training step: it has no learning rate to choose")
        if registry.search_kind(spec) is not None:
            raise PromptworthError(f"{where}: method {method} applies a search's result; its pilot runs would need "
                                   "searches of their own, which the grid does not make")
        if not any(study.takes_chosen_rate(task, method) for task in study.tasks):
            raise PromptworthError(f"{where}: the study does not train method {method} (at a size above 0)")
        if "learning_rate" in study.training_by_method.get(method, {}):
            raise PromptworthError(f"config: training_by_method.{method}.learning_rate: the lr_grid chooses {method}'s "
                                   "learning rate; set one or the other")
        for size, settings in study.by_size.items():
            if "learning_rate" in settings.training and method in (settings.methods or study.methods):
                raise PromptworthError(f"config: by_size.{size}.training.learning_rate: the lr_grid chooses {method}'s "
                                       "learning rate; set one or the other")
        for rate in rates:
            for size in grid.sizes:
                try:
                    config_from_mapping(study.pilot_training(method, rate, size))
                except PromptworthError as exc:
                    raise PromptworthError(f"{where}: {exc}") from None
    splits = study.splits
    for size in grid.sizes:
        if splits.kind == "kshot" and size not in (splits.k, ALL):
            raise PromptworthError(f"config: lr_grid.size of a kshot study is K ({splits.k}) or 'all', got {size!r}")
        if size == ALL and splits.kind == "ladder" and splits.dev_policy in TRAIN_SIZED_DEV:
            raise PromptworthError(f"config: lr_grid.size 'all' cannot be drawn under splits.dev_policy {splits.dev_policy}")
    _check_true_few_shot_pilots(study)
    for key, seeds in (("data_seeds", grid.data_seeds), ("train_seeds", grid.train_seeds)):
        for seed in seeds:
            check_seed(seed, f"config: lr_grid.{key} item {seed!r}: a seed")


def _check_true_few_shot_pilots(study: StudyConfig) -> None:
    """A method whose dev set is as large as its training set (true few-shot selection) chooses its
    rate from pilots on its own splits (``split_folder``) no larger than its runs': a pilot that read
    more examples than a run would let the rate see more than the run may."""
    for pilot in pilots(study):
        policy = study.dev_policy_for(pilot.method)
        if policy not in TRAIN_SIZED_DEV:
            continue
        sizes = [s for s in study.splits.sizes_for(pilot.task) if pilot.method in study.methods_for(pilot.task, s)]
        if pilot.size == ALL or all(s != ALL and pilot.size > s for s in sizes):
            raise PromptworthError(
                f"config: lr_grid: method {pilot.method} selects on a dev set as large as its training set (dev policy "
                f"{policy}), but its pilot runs on {pilot.task} train on {pilot.size} examples, more than any of its runs "
                f"({', '.join(map(str, sizes))}): leave it out of lr_grid.rates (it trains at its set rate) or pilot "
                "at one of its sizes")


def _check_sizes_fit_the_pools(study: StudyConfig) -> None:
    """Every size of a ladder (and the lr_grid's pilot size) can be drawn from its task's pool,
    where the data mirror at hand holds the pool (else the split job says so, once it has it)."""
    from promptworth.data.sources import resolve_data_dir
    from promptworth.data.splits import size_problem
    from promptworth.data.rows import load_rows

    try:
        root = resolve_data_dir(study.data_dir)
    except PromptworthError:
        return  # checked above (data_dir), or no mirror yet: the split job downloads it
    splits, grid_pilots = study.splits, pilots(study)
    for name in study.tasks:
        task = get_task(name, study.defined_tasks)
        if task.source is not None and task.source.hub is not None:
            continue  # a hub dataset: its split job downloads it
        if task.source is None and (task.pool is None or not (root / task.dir / task.file_name("pool")).is_file()):
            continue
        pool_size = len(load_rows(task, "pool", root))
        sizes = [*splits.sizes_for(name), *(study.lr_grid.sizes if study.lr_grid is not None else [])]
        drawn = {(splits.dev_policy, size): "splits" for size in sizes}
        for method, settings in study.by_method.items():  # a method's own dev policy: its runs' sizes and its pilots'
            if settings.dev_policy is not None:
                own = [size for size in splits.sizes_for(name) if method in study.methods_for(name, size)]
                own += [pilot.size for pilot in grid_pilots if (pilot.task, pilot.method) == (name, method)]
                for size in own:
                    drawn.setdefault((settings.dev_policy, size), f"by_method.{method}: splits")
        for (policy, size), what in drawn.items():
            problem = size_problem(pool_size, policy, splits.dev_size, size)
            if problem is not None:
                raise PromptworthError(f"config: {what} of {name}: {problem}")


def _check_size_zero(study: StudyConfig) -> None:
    """Size 0, the zero-shot point, runs only methods that predict untrained: ``by_size.0`` may
    name no other, and every task with size 0 must run at least one."""
    settings = study.by_size.get(str(ZERO_SHOT))
    for method in settings.methods if settings is not None else ():
        problem = study.method(method).size_zero_problem()
        if problem is not None:
            raise PromptworthError(f"config: by_size.0.methods: method {method} cannot run at size 0: {problem}")
    for task in study.tasks:
        if ZERO_SHOT in study.splits.sizes_for(task) and not study.methods_for(task, ZERO_SHOT):
            names = study.methods_for(task)
            reasons = "; ".join(f"{name}: {study.method(name).size_zero_problem()}" for name in names)
            raise PromptworthError(
                f"config: task {task} has size 0 (the zero-shot point), but none of its methods runs untrained "
                f"({reasons}); size 0 needs a prompt method whose tuning starts as the pretrained model "
                "(e.g. prompt, prompt-lora, prompt-bitfit)")
