# Analysis: one tidy table of all runs, data advantages, tables and figures, and the HTML report.


rule aggregate:
    input:
        run_files(),
    output:
        report(f"{RESULTS}/runs.csv", caption="../report/runs.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        # with runs_dir its folder, so that aggregate names the files that are not the study's
        runs=lambda wc, input: [STUDY.runs_dir] if STUDY.runs_dir else list(input),
        # every record must be what the study asks for (promptworth.study.reuse)
        study=json.dumps(STUDY_CONFIG),
    shell:
        "promptworth aggregate {params.runs:q} --study {params.study:q} --out {output:q} > {log:q} 2>&1"


rule advantage:
    """The data advantage of one method over another, per model and task, as JSON."""
    input:
        f"{RESULTS}/runs.csv",
    output:
        f"{RESULTS}/advantage/{{treatment}}-vs-{{baseline}}.json",
    log:
        f"{RESULTS}/logs/advantage/{{treatment}}-vs-{{baseline}}.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        window_from="{}:{}".format(*STUDY.comparisons[0]),
        # a method with a backbone of its own (SetFit) is compared beside the model it ran in place of
        in_place_of=first_model(),
    shell:
        "promptworth advantage {input:q} --treatment {wildcards.treatment:q} --baseline {wildcards.baseline:q} "
        "--window-from {params.window_from:q} --in-place-of {params.in_place_of:q} --json > {output:q} 2> {log:q}"


rule tables:
    input:
        f"{RESULTS}/runs.csv",
    output:
        advantage=report(
            f"{RESULTS}/tables/advantage.md",
            caption="../report/advantage.rst",
            category="Tables",
        ),
        lmbff=report(
            f"{RESULTS}/tables/lmbff.md",
            caption="../report/lmbff.rst",
            category="Tables",
        ),
        methods=report(
            f"{RESULTS}/tables/methods.md",
            caption="../report/methods_table.rst",
            category="Tables",
        ),
        gaps=report(
            f"{RESULTS}/tables/gaps.md",
            caption="../report/gaps.rst",
            category="Tables",
        ),
        sensitivity=report(
            f"{RESULTS}/tables/sensitivity.md",
            caption="../report/sensitivity.rst",
            category="Tables",
        ),
        # the train seed's share of the spread: only where some runs have a second train seed
        train_seeds=report(
            [f"{RESULTS}/tables/train_seeds.md"] if train_seed_rows() else [],
            caption="../report/train_seeds.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        comparisons=[f"{t}:{b}" for t, b in STUDY.comparisons],
        # The first comparison's curves set the score window of all (as in Le Scao & Rush's table).
        window_from="{}:{}".format(*STUDY.comparisons[0]),
        in_place_of=first_model(),
        out_dir=lambda wildcards, output: str(Path(output.advantage).parent),
    shell:
        "promptworth tables {input:q} --out-dir {params.out_dir:q} --comparisons {params.comparisons:q} "
        "--window-from {params.window_from:q} --in-place-of {params.in_place_of:q} > {log:q} 2>&1"


# From what the records keep since issue 30 (common.smk's RECORD_TABLES): two methods compared row by
# row on the test rows both scored (the gap with intervals over seeds and over seeds and rows, McNemar
# per pair of runs); whether the runs kept the protocol; each method's score against its training FLOPs.
if RECORD_TABLES:

    rule paired:
        input:
            run_files(),
        output:
            table=report(
                f"{RESULTS}/tables/paired.md",
                caption="../report/paired.rst",
                category="Tables",
            ),
            csv=f"{RESULTS}/tables/paired.csv",
        log:
            f"{RESULTS}/logs/paired.log",
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        params:
            # as aggregate reads them: the study's records only, each what the study asks for
            runs=lambda wc, input: [STUDY.runs_dir] if STUDY.runs_dir else list(input),
            study=json.dumps(STUDY_CONFIG),
            comparisons=[f"{t}:{b}" for t, b in STUDY.comparisons],
            in_place_of=first_model(),
            out_dir=lambda wildcards, output: str(Path(output.table).parent),
        shell:
            "promptworth paired {params.runs:q} --study {params.study:q} --out-dir {params.out_dir:q} "
            "--comparisons {params.comparisons:q} --in-place-of {params.in_place_of:q} > {log:q} 2>&1"

    rule protocol:
        input:
            run_files(),
        output:
            table=report(
                f"{RESULTS}/tables/protocol.md",
                caption="../report/protocol.rst",
                category="Tables",
            ),
            csv=f"{RESULTS}/tables/protocol.csv",
        log:
            f"{RESULTS}/logs/protocol.log",
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        params:
            runs=lambda wc, input: [STUDY.runs_dir] if STUDY.runs_dir else list(input),
            study=json.dumps(STUDY_CONFIG),
            out_dir=lambda wildcards, output: str(Path(output.table).parent),
        shell:
            "promptworth protocol {params.runs:q} --study {params.study:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"

    rule cost:
        input:
            run_files(),
        output:
            table=report(
                f"{RESULTS}/tables/cost.md",
                caption="../report/cost_table.rst",
                category="Tables",
            ),
            csv=f"{RESULTS}/tables/cost.csv",
            figure=report(
                f"{RESULTS}/figures/cost.png",
                caption="../report/cost.rst",
                category="Figures",
            ),
        log:
            f"{RESULTS}/logs/cost.log",
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        params:
            runs=lambda wc, input: [STUDY.runs_dir] if STUDY.runs_dir else list(input),
            study=json.dumps(STUDY_CONFIG),
            in_place_of=first_model(),
            tables_dir=lambda wildcards, output: str(Path(output.table).parent),
            figures_dir=lambda wildcards, output: str(Path(output.figure).parent),
        shell:
            "promptworth flops {params.runs:q} --study {params.study:q} --tables-dir {params.tables_dir:q} "
            "--figures-dir {params.figures_dir:q} --in-place-of {params.in_place_of:q} > {log:q} 2>&1"


rule figures:
    input:
        f"{RESULTS}/runs.csv",
    output:
        overview=report(
            f"{RESULTS}/figures/overview.png",
            caption="../report/overview.rst",
            category="Figures",
        ),
        methods=report(
            f"{RESULTS}/figures/methods.png",
            caption="../report/methods.rst",
            category="Figures",
        ),
        per_task=report(
            expand(f"{RESULTS}/figures/{{task}}.png", task=STUDY.tasks),
            caption="../report/task.rst",
            category="Figures",
        ),
        # the advantage against the model: a study of several models only
        scale=report(
            [f"{RESULTS}/figures/scale.png"] if len(STUDY.models) > 1 else [],
            caption="../report/scale.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/figures.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        treatment=STUDY.comparisons[0][0],
        baseline=STUDY.comparisons[0][1],
        in_place_of=first_model(),
        out_dir=lambda wildcards, output: str(Path(output.overview).parent),
    shell:
        "promptworth figures {input:q} --out-dir {params.out_dir:q} --treatment {params.treatment:q} "
        "--baseline {params.baseline:q} --in-place-of {params.in_place_of:q} > {log:q} 2>&1"


# The data advantage at each step budget the runs record (training.budgets), and at convergence.
if STUDY.budgets():

    rule budgets:
        input:
            f"{RESULTS}/runs.csv",
        output:
            table=report(
                f"{RESULTS}/tables/advantage_by_budget.md",
                caption="../report/budgets_table.rst",
                category="Tables",
            ),
            csv=f"{RESULTS}/tables/advantage_by_budget.csv",
            scores=f"{RESULTS}/tables/scores_by_budget.csv",
            figure=report(
                f"{RESULTS}/figures/budgets.png",
                caption="../report/budgets.rst",
                category="Figures",
            ),
        log:
            f"{RESULTS}/logs/budgets.log",
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        params:
            comparisons=[f"{t}:{b}" for t, b in STUDY.comparisons],
            window_from="{}:{}".format(*STUDY.comparisons[0]),
            in_place_of=first_model(),
            tables_dir=lambda wildcards, output: str(Path(output.table).parent),
            figures_dir=lambda wildcards, output: str(Path(output.figure).parent),
        shell:
            "promptworth budgets {input:q} --tables-dir {params.tables_dir:q} "
            "--figures-dir {params.figures_dir:q} --comparisons {params.comparisons:q} "
            "--window-from {params.window_from:q} --in-place-of {params.in_place_of:q} > {log:q} 2>&1"


# LM-BFF's Table 3 layout with their published numbers: for studies on LM-BFF's K-shot splits.
if STUDY.splits.kind == "kshot":

    rule lmbff_table:
        input:
            f"{RESULTS}/runs.csv",
        output:
            table=report(
                f"{RESULTS}/paper/lmbff.md",
                caption="../report/lmbff_paper.rst",
                category="Tables",
            ),
            figure=report(
                f"{RESULTS}/paper/lmbff.png",
                caption="../report/lmbff_paper.rst",
                category="Figures",
            ),
        log:
            f"{RESULTS}/logs/lmbff_table.log",
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        params:
            out_dir=lambda wildcards, output: str(Path(output.table).parent),
        shell:
            "promptworth lmbff-table {input:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


# What each training run cost, from Snakemake's benchmarks of the train jobs. Only a study that
# trains has them: with runs_dir there is no train rule, and no costs table.
if not STUDY.runs_dir:
    BENCHMARKED = benchmarked_runs()

    rule costs:
        input:
            runs=[run_file(*run) for run in BENCHMARKED],
            benchmarks=[benchmark_file(*run) for run in BENCHMARKED],
        output:
            report(
                f"{RESULTS}/tables/costs.csv",
                caption="../report/costs.rst",
                category="Tables",
            ),
        log:
            f"{RESULTS}/logs/costs.log",
        # a light job, like the other analysis rules (Snakefile's localrules)
        localrule: True
        conda:
            "../envs/promptworth.yaml"
        shell:
            "promptworth costs --runs {input.runs:q} --benchmarks {input.benchmarks:q} "
            "--out {output:q} > {log:q} 2>&1"
