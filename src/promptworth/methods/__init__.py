"""Stage 3, the methods: the torch-free registry of objectives x tunings x extras (parts, registry, specs), the
template language and label words, and the objectives, tunings and extras that turn rows into scores and a loss."""
