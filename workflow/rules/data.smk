# Splits: nested data-size ladders, or LM-BFF's exact K-shot splits.
# Every value that comes from the config reaches the shell as a parameter quoted with :q.


rule split:
    input:
        task_inputs,
    output:
        f"{RESULTS}/splits/{{task}}/{{size}}-{{data_seed}}/manifest.json",
    log:
        f"{RESULTS}/logs/split/{{task}}/{{size}}-{{data_seed}}.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        data_dir=data_dir_args(),
        task_files=task_files_args,
        dev=["--dev-policy", STUDY.splits.dev_policy]
        + (["--dev-size", STUDY.splits.dev_size] if STUDY.splits.dev_size else []),
        test_limit=(
            ["--test-limit", STUDY.splits.test_limit]
            if STUDY.splits.test_limit
            else []
        ),
        out=lambda wildcards: f"{RESULTS}/splits/{wildcards.task}",
    shell:
        "promptworth split --task {wildcards.task:q} --sizes {wildcards.size:q} "
        "--data-seed {wildcards.data_seed:q} {params.dev:q} {params.test_limit:q} {params.data_dir:q} "
        "{params.task_files:q} --out-dir {params.out:q} > {log:q} 2>&1"


# The splits of a method whose dev policy is its own (by_method), beside the study's: the same
# sizes and seeds under another dev policy, in <results>/splits-<policy>/.
use rule split as split_by_policy with:
    output:
        f"{RESULTS}/splits-{{policy}}/{{task}}/{{size}}-{{data_seed}}/manifest.json",
    log:
        f"{RESULTS}/logs/split-{{policy}}/{{task}}/{{size}}-{{data_seed}}.log",
    params:
        data_dir=data_dir_args(),
        task_files=task_files_args,
        dev=lambda wildcards: ["--dev-policy", wildcards.policy]
        + (
            ["--dev-size", STUDY.splits.dev_size]
            if wildcards.policy in FIXED_DEV
            else []
        ),
        test_limit=(
            ["--test-limit", STUDY.splits.test_limit]
            if STUDY.splits.test_limit
            else []
        ),
        out=lambda wildcards: f"{RESULTS}/splits-{wildcards.policy}/{wildcards.task}",


rule kshot:
    output:
        f"{RESULTS}/kshot/{{task}}/{{size}}-{{data_seed}}/manifest.json",
    log:
        f"{RESULTS}/logs/kshot/{{task}}/{{size}}-{{data_seed}}.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        data_dir=data_dir_args(),
        # size "all": the full-data setting, with the study's K-shot dev and test
        k=lambda wildcards: (
            ["--k", STUDY.splits.k, "--full"]
            if wildcards.size == "all"
            else ["--k", wildcards.size]
        ),
        # the folder of every task's splits: <out-dir>/<task>/<size>-<data_seed>/manifest.json
        out=lambda wildcards, output: str(Path(output[0]).parents[2]),
    shell:
        "promptworth kshot --tasks {wildcards.task:q} {params.k:q} --seeds {wildcards.data_seed:q} "
        "{params.data_dir:q} --out-dir {params.out:q} > {log:q} 2>&1"
