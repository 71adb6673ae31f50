"""Stage 2, the backbones: which pretrained models there are and their quirks (registry, architecture), how a
``--model`` value is found (resolve), converted (convert) and loaded (load); their FLOPs; tiny test models."""
