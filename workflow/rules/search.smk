# LM-BFF's searches: the label words or template of a search method (prompt-autowords,
# prompt-autotemplate), one result file per run of such a method, which its training run applies
# (promptworth train --search) and its record cites. A result file that exists is reused.


if not STUDY.runs_dir:

    rule search:
        input:
            unpack(run_inputs),
        output:
            search_file(*RUN_WILDCARDS),
        log:
            run_path("logs/search", ".log", *RUN_WILDCARDS),
        conda:
            "../envs/promptworth.yaml"
        threads: lambda wildcards: run_resources(wildcards)["threads"]
        resources:
            mem_mb=lambda wildcards: run_resources(wildcards)["mem_mb"],
            # minutes: a search fine-tunes a few candidates, each a whole run
            runtime=lambda wc, attempt: run_resources(wc)["runtime"] * attempt,
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
            device=lambda wc, output: device_args(wc),
        shell:
            "promptworth search --task {wildcards.task:q} {params.task_files:q} --method {wildcards.method:q} "
            "--split-dir {params.split_dir:q} --model {params.model:q} {params.load:q} --seed {wildcards.train_seed:q} "
            "{params.template:q} {params.training:q} --threads {threads} {params.device:q} --no-progress "
            "--out {output:q} > {log:q} 2>&1"
