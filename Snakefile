# promptworth: how many data points is a prompt worth?
# Rules stay thin: each calls one `promptworth` verb. Config: config/config.yaml (schema in
# workflow/schemas/config.schema.yaml). Run with `make study`, or
#   snakemake --cores 2 --configfile config/config.yaml --workflow-profile workflow/profiles/local
from snakemake.utils import min_version

min_version("9.0")


# The default study unless --configfile names another (which then stands alone: no keys of the
# default leak into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/lr.smk"
include: "workflow/rules/analysis.smk"


# Before the first job (not in a dry run): what the study will do and, from its finished runs, how
# long (promptworth.study.estimate; `promptworth plan --reference` estimates from another study's).
onstart:
    print(
        study_summary(
            STUDY,
            estimate_here(STUDY, runs_at_once(), train_threads(), REUSE.stale),
            REUSE.stale,
        ),
        file=sys.stderr,
    )


localrules:
    all,
    runs,
    prepare,
    split,
    kshot,
    tiny_model,
    convert_model,
    prefetch,
    select_lr,
    aggregate,
    advantage,
    tables,
    figures,


rule all:
    default_target: True
    input:
        study_outputs(),
        # the records too: Snakemake makes a missing file only where a target needs it, and the
        # tables made from a deleted record would otherwise look up to date
        run_files(),
