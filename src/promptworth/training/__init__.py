"""Stage 2, training: backbones, prompts, methods built from an objective and a tuning, the training loop."""
