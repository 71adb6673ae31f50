# One training run per (task, method, size, data seed, train seed).


def train_inputs(wildcards):
    inputs = {"split": split_dir(wildcards.task, wildcards.size, wildcards.data_seed) + "/manifest.json"}
    if model_dir():
        inputs["model"] = model_dir()
    return inputs


# With runs_dir the analysis reads existing records and nothing may train (a record older than
# its regenerated split would otherwise be retrained).
if not STUDY.runs_dir:

    rule train:
        input:
            unpack(train_inputs),
        output:
            f"{RESULTS}/runs/{MODEL}/{{task}}/{{method}}/{{size}}-{{data_seed}}-{{train_seed}}.json",
        log:
            f"{RESULTS}/logs/train/{MODEL}/{{task}}/{{method}}/{{size}}-{{data_seed}}-{{train_seed}}.log",
        params:
            model=model_dir() or STUDY.model,
            split_dir=lambda wc, input: str(Path(input.split).parent),
            template=lambda wc: f"--template {STUDY.templates[wc.task]}" if wc.task in STUDY.templates else "",
            training=training_flags(),
            total=len(RUNS),
        threads: STUDY.resources.get("threads", 2)
        resources:
            mem_mb=STUDY.resources.get("mem_mb", 5000),
            # minutes; a run retried after hitting its time limit gets more time on each attempt
            runtime=lambda wildcards, attempt: STUDY.resources.get("runtime", 60) * attempt,
            # the SLURM plugin's sbatch reads `gpu`, the srun inside the job `gpus`
            gpu=STUDY.resources.get("gpus", 0),
            gpus=STUDY.resources.get("gpus", 0),
        shell:
            "promptworth train --task {wildcards.task} --method {wildcards.method} "
            "--split-dir {params.split_dir} --model {params.model} --seed {wildcards.train_seed} "
            "--data-seed {wildcards.data_seed} {params.template} {params.training} --threads {threads} --no-progress "
            "--out {output} > {log} 2>&1 && "
            f"promptworth progress {RESULTS}/runs/{MODEL} --total {{params.total}}"


rule runs:
    """Every training run of the study (a target: `snakemake runs`)."""
    input:
        run_files(),
