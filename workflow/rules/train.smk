# One training run per (model, task, method, size, data seed, train seed).


# With runs_dir the analysis reads existing records: nothing may train, not even when forced.
if not STUDY.runs_dir:

    rule train:
        input:
            unpack(train_inputs),
        output:
            run_file(*RUN_WILDCARDS),
        log:
            train_log(*RUN_WILDCARDS),
        benchmark:
            benchmark_file(*RUN_WILDCARDS)
        conda:
            "../envs/promptworth.yaml"
        threads: lambda wildcards: run_resources(wildcards)["threads"]
        resources:
            mem_mb=lambda wildcards: run_resources(wildcards)["mem_mb"],
            # minutes; a run retried after hitting its time limit gets more time on each attempt
            runtime=lambda wc, attempt: run_resources(wc)["runtime"] * attempt,
            # the SLURM plugin's sbatch reads `gpu`, the srun inside the job `gpus`
            gpu=lambda wildcards: run_resources(wildcards)["gpus"],
            gpus=lambda wildcards: run_resources(wildcards)["gpus"],
        params:
            model=model_arg,
            # its by_model dtype and trust_remote_code (a function of the output: see model_load_args)
            load=model_load_args,
            split_dir=split_dir_of,
            task_files=task_files_args,
            template=template_args,
            training=method_training_args,
            # a search method applies its search's result file (rule search)
            search=lambda wc, input: (
                ["--search", input.search] if searches(wc.method) else []
            ),
            # a method of the lr_grid trains at the rate it chose (rule select_lr)
            lr=lr_args,
            # derived (a function of the output), as `total` below: where a run trains is no reason to train it again
            device=lambda wc, output: device_args(wc),
            test_limit=(
                ["--test-limit", STUDY.splits.train_test_limit]
                if STUDY.splits.train_test_limit
                else []
            ),
            runs=lambda wc, output: runs_folder(output[0]),
            # derived (a function of the output): Snakemake's params trigger skips it, so adding
            # runs to a study does not make its finished records look changed
            total=lambda wc, output: len(RUNS),
            # how the progress line names them (the pilots' rule names its own)
            what=lambda wc, output: "training runs",
        # no terminal: the run writes a progress line to its log every 30 s (docs/training.md)
        shell:
            "promptworth train --task {wildcards.task:q} {params.task_files:q} --method {wildcards.method:q} "
            "--split-dir {params.split_dir:q} --model {params.model:q} {params.load:q} --seed {wildcards.train_seed:q} "
            "--data-seed {wildcards.data_seed:q} {params.template:q} {params.training:q} {params.test_limit:q} "
            "{params.search:q} {params.lr:q} "
            "--threads {threads} {params.device:q} --out {output:q} > {log:q} 2>&1 && "
            "promptworth progress {params.runs:q} --total {params.total} --what {params.what:q}"


rule runs:
    """Every training run of the study (a target: `snakemake runs`)."""
    input:
        run_files(),


rule prepare:
    """The models and every split the runs read (a target: `snakemake prepare`). Built in a run of
    its own before resuming a study, since inputs a run creates would make every record downstream
    of them rerun, ancient or not."""
    input:
        model_dirs(),
        *sorted(
            {
                split_manifest(r.task, r.size, r.data_seed, r.method)
                for r in [*RUNS, *PILOTS]
            }
        ),
