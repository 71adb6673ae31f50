"""Stage 5, a study: its config (read, validated, checked), the plan of its runs and pilots and how long they will
take, whether a record on disk is the run it asks for, its tiny variant, and a hard-killed Snakemake's lock.
Torch-free: the workflow imports it."""
