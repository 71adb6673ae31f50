# The lr_grid: a method's learning rate chosen from a small grid on dev (LM-BFF's practice). Per
# model, task, method of the grid and pilot size (its size band), one pilot run per rate, pilot
# split and train seed (the train rule itself, at the grid's rate), then one selection file
# (promptworth select-lr) that every run of the method above size 0 in that band trains at
# (promptworth train --learning-rate-from) and cites. A grid that extends at its edge first
# chooses over the grid alone (checkpoint select_lr_grid); where that choice is at an edge, the
# pilots at the rate beyond it run too, and select_lr chooses over the extended grid. A selection
# file that exists is reused.


if not STUDY.runs_dir:

    use rule train as lr_grid_train with:
        input:
            unpack(run_inputs),
        output:
            pilot_file(*PILOT_WILDCARDS),
        log:
            pilot_path("logs/lr-grid", ".log", *PILOT_WILDCARDS),
        benchmark:
            pilot_path("benchmarks/lr-grid", ".tsv", *PILOT_WILDCARDS)
        params:
            training=pilot_training_args,
            lr=[],
            # <results>/lr-grid: every model's pilot records (progress counts them)
            runs=lambda wc, output: str(Path(output[0]).parents[4]),
            total=lambda wc, output: len(PILOTS),
            what=lambda wc, output: "pilot runs of the lr_grid",

    if STUDY.lr_grid is not None and STUDY.lr_grid.extend_at_edge:

        checkpoint select_lr_grid:
            input:
                lambda wc: pilot_files(wc.model, wc.task, wc.method, lr_band(wc)),
            output:
                lr_pattern(grid_only=True),
            log:
                lr_log("select_lr_grid"),
            # a light job, like select_lr (Snakefile's localrules)
            localrule: True
            conda:
                "../envs/promptworth.yaml"
            params:
                size=lr_band,
                rates=lambda wc: [rate_label(r) for r in STUDY.lr_grid.rates[wc.method]],
            shell:
                "promptworth select-lr {input:q} --task {wildcards.task:q} --method {wildcards.method:q} "
                "--size {params.size:q} --rates {params.rates:q} --out {output:q} > {log:q} 2>&1"

    rule select_lr:
        input:
            selection_inputs,
        output:
            lr_pattern(),
        log:
            lr_log("select_lr"),
        conda:
            "../envs/promptworth.yaml"
        params:
            size=lr_band,
            rates=lambda wc: [rate_label(r) for r in STUDY.lr_grid.rates[wc.method]],
        shell:
            # the flags of a grid that extends at its edge or has several pilot sizes are the study's,
            # fixed when the workflow is read (a grid of one pilot size keeps its jobs' params and command)
            "promptworth select-lr {input:q} --task {wildcards.task:q} --method {wildcards.method:q} "
            "--size {params.size:q} --rates {params.rates:q} "
            + select_lr_flags()
            + "--out {output:q} > {log:q} 2>&1"
