# Splits: nested data-size ladders, or LM-BFF's exact K-shot splits.


rule split:
    output:
        f"{RESULTS}/splits/{{task}}/{{size}}-{{data_seed}}/manifest.json",
    log:
        f"{RESULTS}/logs/split/{{task}}/{{size}}-{{data_seed}}.log",
    params:
        data_dir=f"--data-dir {STUDY.data_dir}" if STUDY.data_dir else "",
        dev=(
            f"--dev-policy {STUDY.splits.dev_policy}"
            + (f" --dev-size {STUDY.splits.dev_size}" if STUDY.splits.dev_size else "")
        ),
        test_limit=f"--test-limit {STUDY.splits.test_limit}" if STUDY.splits.test_limit else "",
    shell:
        "promptworth split --task {wildcards.task} --sizes {wildcards.size} "
        "--data-seed {wildcards.data_seed} {params.dev} {params.test_limit} {params.data_dir} "
        f"--out {RESULTS}/splits/{{wildcards.task}} > {{log}} 2>&1"


rule kshot:
    output:
        f"{RESULTS}/kshot/{{task}}/{{size}}-{{data_seed}}/manifest.json",
    log:
        f"{RESULTS}/logs/kshot/{{task}}/{{size}}-{{data_seed}}.log",
    params:
        data_dir=f"--data-dir {STUDY.data_dir}" if STUDY.data_dir else "",
    shell:
        "promptworth kshot --tasks {wildcards.task} --k {wildcards.size} --seeds {wildcards.data_seed} "
        f"{{params.data_dir}} --out {RESULTS}/kshot > {{log}} 2>&1"
