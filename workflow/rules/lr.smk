# The lr_grid: a method's learning rate chosen from a small grid on dev (LM-BFF's practice). Per
# model, task and method of the grid, one pilot run per rate, pilot split and train seed (the train rule
# itself, at the grid's rate), then one selection file (promptworth select-lr) that every run of
# the method above size 0 trains at (promptworth train --learning-rate-from) and cites. A
# selection file that exists is reused.


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

    rule select_lr:
        input:
            lambda wc: pilot_files(wc.model, wc.task, wc.method),
        output:
            lr_file("{model}", "{task}", "{method}"),
        log:
            f"{RESULTS}/logs/select_lr/{{model}}/{{task}}/{{method}}.log",
        conda:
            "../envs/promptworth.yaml"
        params:
            size=lambda wc: STUDY.lr_grid.size,
            rates=lambda wc: [rate_label(r) for r in STUDY.lr_grid.rates[wc.method]],
        shell:
            "promptworth select-lr {input:q} --task {wildcards.task:q} --method {wildcards.method:q} "
            "--size {params.size:q} --rates {params.rates:q} --out {output:q} > {log:q} 2>&1"
