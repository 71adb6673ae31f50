# Backbones the workflow builds itself.


rule convert_model:
    output:
        directory(SHORT_NAMES[SMOLLM2]),
    log:
        "resources/logs/convert_model.log",
    conda:
        "../envs/promptworth.yaml"
    shell:
        "promptworth convert-model --out {output:q} > {log:q} 2>&1"


rule tiny_model:
    output:
        directory(f"{MODELS_DIR}/tiny-{{kind}}"),
    log:
        "resources/logs/tiny_model_{kind}.log",
    conda:
        "../envs/promptworth.yaml"
    shell:
        "promptworth tiny-model --kind {wildcards.kind:q} --out {output:q} > {log:q} 2>&1"
